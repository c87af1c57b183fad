"""Train and watch, in JupyterLab in a real browser: notebooks/train_and_watch.ipynb run as a user runs it ("Run All"),
with its short schedule. While the training cell is still running, the Monitor's loss curve and feature-map image
(in the cell above it) change again and again: the kernel's widget updates reach the page during the cell."""
import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "train_and_watch.ipynb"

_JS_READ = """([path, shown, training]) => {
  const p = (%s)(path);
  const node = p.content.widgets[shown].node;
  const fig = node.querySelector('.bqplot');            // the first chart: the loss
  const line = fig ? fig.querySelector('path.line') : null;
  const img = node.querySelector('img');                // the feature maps
  const head = node.querySelector('.widget-html-content');
  const cell = p.content.widgets[training];
  const prompt = cell.node.querySelector('.jp-InputArea-prompt');
  return {d: line ? line.getAttribute('d') : null, src: img ? img.getAttribute('src') : null,
          header: head ? head.textContent : null, running: !!prompt && prompt.textContent.includes('*'),
          done: cell.model.executionCount !== null && !(prompt && prompt.textContent.includes('*')),
          errors: Array.from(node.querySelectorAll('.jupyter-widgets-error-widget')).length};
}"""


@pytest.mark.browser
def test_the_panels_move_while_the_training_cell_runs(lab):
    from browser import _JS_PANEL

    cells = ['import os, torch; os.environ["CNNWIDGETS_QUICK"] = "1"  # the short schedule (10 s of training)\n'
             'torch.set_num_threads(1)  # the test machine is shared: no thread waits on a busy core']
    cells += [c.source if c.cell_type == "code" else dict(c) for c in nbformat.read(str(NOTEBOOK), as_version=4).cells]
    code = [i for i, c in enumerate(cells) if isinstance(c, str)]
    shown = next(i for i in code if cells[i].startswith("monitor = cw.Monitor"))
    training = next(i for i in code if "monitor.step(loss=loss)" in cells[i])
    nb = lab.open_notebook(lab.write_notebook(cells, "train-and-watch"))
    try:
        nb.page.evaluate("""(path) => { const p = (%s)(path); window.jupyterapp.shell.activateById(p.id);
                            window.jupyterapp.commands.execute('notebook:run-all-cells'); }""" % _JS_PANEL.strip(), nb.path)
        read = lambda: nb.page.evaluate(_JS_READ % _JS_PANEL.strip(), [nb.path, shown, training])  # noqa: E731
        seen_d, seen_src, headers = [], [], []
        deadline = time.monotonic() + 240
        started, polls = False, 0
        while time.monotonic() < deadline:
            got = read()
            if got["running"]:
                started = True
                polls += 1
                if got["d"] and (not seen_d or got["d"] != seen_d[-1]):
                    seen_d.append(got["d"])
                if got["src"] and (not seen_src or got["src"] != seen_src[-1]):
                    seen_src.append(got["src"])
                if got["header"] and (not headers or got["header"] != headers[-1]):
                    headers.append(got["header"])
                if len(headers) == 6:
                    nb.screenshot("monitor-while-training", selector=f".jp-Cell:nth-child({shown + 1})")
            elif started and got["done"]:
                break  # the training cell has finished
            time.sleep(0.1)
        nb._wait_done(set(code), 240, "train_and_watch")  # the rest of the notebook, and any error with its traceback
        assert started, "the training cell was never seen running"
        # while the cell ran: the loss curve and the feature maps changed at least three times each
        assert not got["errors"], "a widget of the Monitor failed to render"
        assert len(seen_d) >= 4, f"loss curve drawn {len(seen_d)} times during training ({polls} looks); headers: {headers}"
        assert len(seen_src) >= 4, f"feature maps shown {len(seen_src)} times during training ({polls} looks); {headers}"
        assert "step 0" not in headers[-1] and "loss" in headers[-1]
        text = nb.outputs_text()
        assert "test accuracy" in text and "Checkpoints" in text and "run.npz" in text
        nb.check_widgets()
        nb.page.locator(".jp-Cell").nth(shown).scroll_into_view_if_needed()
        nb.screenshot("monitor-after-training", selector=f".jp-Cell:nth-child({shown + 1})")
        nb.page.locator(".jp-Cell").nth(shown).locator(".bqplot").last.scroll_into_view_if_needed()
        nb.screenshot("monitor-cka")  # the page, scrolled to the CKA map and its scale
        last = max(code)
        nb.page.locator(".jp-Cell").nth(last).scroll_into_view_if_needed()
        nb.screenshot("monitor-checkpoints", selector=f".jp-Cell:nth-child({last + 1})")
        assert not nb.js_errors, nb.js_errors
    finally:
        nb.close()
