"""The notebook a student writes, in JupyterLab in a real browser: a small CNN defined and trained in the notebook on
scikit-learn's digits (28x28, one channel, classes "0".."9"), then the panels on it."""
import pytest

SETUP = '''
import torch, torch.nn as nn, torch.nn.functional as F
from sklearn.datasets import load_digits
import cnnwidgets as cw

digits = load_digits()
x = F.interpolate(torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16, size=(28, 28), mode="bilinear")
y = torch.tensor(digits.target)
classes = [str(d) for d in range(10)]

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
opt = torch.optim.Adam(model.parameters(), lr=0.01)
for step in range(60):
    i = torch.randint(0, len(x), (64,))
    loss = F.cross_entropy(model(x[i]), y[i])
    opt.zero_grad(); loss.backward(); opt.step()
print(f"loss {loss.item():.2f}")
probe = cw.Probe(model, input_size=28, mean=0, std=1, classes=classes)
probe
'''


@pytest.mark.browser
def test_a_students_small_cnn_on_digits(lab):
    nb = lab.run_notebook([
        SETUP,
        "fm = cw.FeatureMaps(probe, x[0])\nfm",
        "sal = cw.Saliency(probe, x[0])\nsal",
        "d = cw.Dream(probe, layer='cnn.4', channel=3)\nd",
        "emb = cw.Embedding(probe, cw.image_set(x[:300], y[:300], classes), layer='cnn.4')\nemb",
        "emb.compute(); sal.join(60)\n"
        "print('dream size', d.size_slider.value)\n"
        "print('buttons', [b.description for b in sal.top_buttons])\n"
        "print('legend', emb._classes)",
    ], name="student-digits")
    text = nb.outputs_text()
    assert "grayscale 28×28" in text  # the preprocessing, in the Probe's repr
    assert "dream size 28" in text  # the dream follows the model's input size
    assert "legend ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']" in text
    import re

    buttons = text.split("buttons ")[1].splitlines()[0]
    assert len(re.findall(r"'\d · \d+%'", buttons)) == 5, buttons  # the digits' names, not "class 3"
    nb.wait_for(".bqplot .dot", state="attached", timeout=60_000)
    fm_cell = nb.page.locator(".jp-Cell").nth(1)
    fm_cell.scroll_into_view_if_needed()
    nb.screenshot("student-featuremaps", selector=".jp-Cell:nth-child(2)")
    nb.run_cell("d.start(); d.join(120); print('dreamed', d.result.step, d.canvas.format)")
    assert "dreamed" in nb.outputs_text()
    for i, name in ((2, "student-saliency"), (3, "student-dream"), (4, "student-embedding")):
        nb.page.locator(".jp-Cell").nth(i).scroll_into_view_if_needed()
        nb.screenshot(name, selector=f".jp-Cell:nth-child({i + 1})")
    nb.close()
