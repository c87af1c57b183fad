"""The browser harness itself: widgets render in JupyterLab, cells run in the .venv kernel, errors surface."""
import sys

import pytest

from browser import CellError


@pytest.mark.browser
def test_widgets_render_and_errors_raise_with_their_traceback(lab):
    nb = lab.run_notebook([
        "import sys; print(sys.executable)",
        "import ipywidgets as W\nW.IntSlider(value=3, description='slider')",
        "import bqplot.pyplot as plt\nfig = plt.figure(title='bqplot renders'); plt.plot([1, 2, 3], [1, 4, 9]); fig",
    ], name="harness")
    assert sys.executable in nb.outputs_text() or sys.prefix in nb.outputs_text()
    nb.wait_for(".widget-slider", timeout=30_000)
    line = nb.wait_for(".bqplot .mark path, .bqplot path.line", timeout=30_000, state="attached")
    assert line is not None
    assert nb.run_cell("print(40 + 2)")[0]["text"] == "42\n"
    nb.screenshot("harness-widgets")
    with pytest.raises(CellError, match="(?s)ZeroDivisionError.*1 / 0"):
        nb.run_cell("1 / 0")
    with pytest.raises(TimeoutError, match="still not executed"):
        nb.run_cell("import time; time.sleep(20)", timeout=2)
    nb.close()


@pytest.mark.browser
def test_an_error_in_run_all_names_the_cell(lab):
    with pytest.raises(CellError, match=r"(?s)cell \[1\].*NameError.*undefined_name"):
        lab.run_notebook(["x = 1", "undefined_name + x", "print('never runs')"], name="harness-error")


@pytest.mark.browser
def test_a_widget_that_cannot_render_is_an_error(lab):
    code = """import ipywidgets as W
from traitlets import Unicode

class Broken(W.DOMWidget):
    _model_module = Unicode("no-such-module").tag(sync=True)
    _view_module = Unicode("no-such-module").tag(sync=True)
    _model_name = Unicode("NoModel").tag(sync=True)
    _view_name = Unicode("NoView").tag(sync=True)

Broken()"""
    with pytest.raises(CellError, match="failed to render"):
        lab.run_notebook([code], name="harness-broken-widget")
