"""Train and watch in the Colab-like setting (ipywidgets 7.7.1, bqplot 0.12.47, classic Notebook 6.5, from
``.venv-colab``; tests/browser_classic.py): Colab shows widget updates only from the running cell's kernel messages,
and the Monitor's loss curve and feature maps still change again and again while a foreground training loop runs."""
from __future__ import annotations

import time

import pytest

from test_colab_browser import BENIGN_CONSOLE, ON_COLAB

pytestmark = [pytest.mark.browser, pytest.mark.colab]

SETUP = ON_COLAB + '''
import torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(1)  # 2 cores shared with the browser and the server
from sklearn.datasets import load_digits
import ipywidgets, bqplot, cnnwidgets as cw
print(ipywidgets.__version__, bqplot.__version__)
digits = load_digits()
x = F.interpolate(torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16, size=(28, 28), mode="bilinear")
y = torch.tensor(digits.target)

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.cnn = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(16 * 7 * 7, 10)
    def forward(self, x):
        return self.fc(self.cnn(x).flatten(1))

torch.manual_seed(0)
model = Net()
probe = cw.Probe(model, input_size=28, mean=0, std=1)
'''

TRAIN = '''import time
opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
model.train()
start = time.time()
while time.time() - start < 10:
    i = torch.randint(0, len(x), (64,))
    loss = F.cross_entropy(model(x[i]), y[i])
    opt.zero_grad(); loss.backward(); opt.step()
    monitor.step(loss=loss)
monitor.finish()
print("trained", len(monitor.history), "snapshots")'''

_JS_READ = """(i) => {
  const el = Jupyter.notebook.get_cell(i).output_area.element[0];
  const fig = el.querySelector('.bqplot');
  const line = fig ? fig.querySelector('path.line') : null;
  const img = el.querySelector('img.widget-image');
  return {d: line ? line.getAttribute('d') : null, src: img ? img.getAttribute('src') : null};
}"""


@pytest.fixture(scope="module")
def classic():
    from browser_classic import ClassicNotebook

    nbs = ClassicNotebook()
    try:
        yield nbs
    finally:
        nbs.close()


def test_the_panels_move_while_a_foreground_loop_trains(classic):
    nb = classic.run_notebook([SETUP, "monitor = cw.Monitor(probe, image=x[1500], images=x[1500:1564])\nmonitor"],
                              name="colab-monitor", timeout=300)
    try:
        assert "7.7.1 0.12.47" in nb.outputs_text()
        index = nb.run_cell(TRAIN, wait=False)
        seen_d, seen_src = [], []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and nb.cell_count(index) in ("*", None):
            got = nb.page.evaluate(_JS_READ, 1)
            if got["d"] and (not seen_d or got["d"] != seen_d[-1]):
                seen_d.append(got["d"])
            if got["src"] and (not seen_src or got["src"] != seen_src[-1]):
                seen_src.append(got["src"])
            time.sleep(0.1)
        nb.wait_cells({index}, timeout=120)
        assert "trained" in nb.outputs_text()
        assert len(seen_d) >= 4, f"loss curve drawn {len(seen_d)} times while the cell ran"
        assert len(seen_src) >= 4, f"feature maps shown {len(seen_src)} times while the cell ran"
        assert not nb.js_errors, f"uncaught JavaScript errors: {nb.js_errors}\n{nb.js_stacks}"
        bad = [e for e in nb.console_errors if not BENIGN_CONSOLE.match(e)]
        assert not bad, f"console errors: {bad[:5]}"
        nb.check_widgets()
        nb.output_of(1).scroll_into_view_if_needed()
        nb.screenshot("colab-monitor", selector='[data-cnnw-cell="1"]')
    finally:
        nb.close()
