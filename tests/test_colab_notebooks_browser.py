"""The quickstart and the homework as on Colab, in a real browser: Colab's stack (.venv-colab: ipywidgets 7.7.1,
widgetsnbextension 3.6.10, bqplot 0.12.47, notebook 6.5.7, ipykernel 6.17.1) in the classic Notebook 6.5, the kernel
importing ``google.colab`` at startup (tests/colab_stub.py). Each notebook runs as shipped (Run All, the install cell
included; ``CNNWIDGETS_QUICK=1``): its widgets render, and its dream, started from the Start button, streams frames
in the foreground (Colab's mode: a cell run meanwhile waits) and stops on Stop."""
from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

import pytest

from browser import DREAM, DREAM_FRAME as FRAME, DREAM_PROGRESS as PROGRESS
from browser_classic import ClassicNotebook
from colab_stub import calls, colab_env

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.browser, pytest.mark.colab]

#: bqplot 0.12 logs this while a figure is drawn before it has its size; harmless (tests/test_colab_browser.py)
BENIGN_CONSOLE = re.compile(r"^Error: <\w+> attribute (width|height): A negative value is not valid")


class ColabClassic(ClassicNotebook):
    """The classic Notebook of .venv-colab whose kernels believe they run on Colab."""

    def __init__(self):
        self.colab_root = Path(tempfile.mkdtemp(prefix="cnnwidgets-colab-"))
        super().__init__()

    def _env(self) -> dict:
        env = colab_env(self.colab_root, Path(self.python), env=super()._env())
        env["CNNWIDGETS_QUICK"] = "1"
        return env


@pytest.fixture(scope="module")
def colab():
    nbs = ColabClassic()
    try:
        yield nbs
    finally:
        nbs.close()


@pytest.mark.parametrize("name, figures", [("quickstart", 5), ("homework", 0)])
def test_notebook_as_on_colab_renders_and_its_dream_streams_and_stops(colab, name, figures):
    t0 = time.monotonic()
    before = len(calls(colab.colab_root))
    nb = colab.run_notebook(REPO / "notebooks" / f"{name}.ipynb", name=f"colab-{name}", timeout=300)
    page = nb.page
    ran = time.monotonic() - t0
    nb.check_widgets()
    assert nb.widget_views() >= 2
    if figures:
        page.wait_for_function("(n) => [...document.querySelectorAll('.bqplot.figure')].filter(f => "
                               "f.querySelector('rect.bar, path.line, rect.heatmapcell, .dot, image')).length >= n",
                               arg=figures, timeout=60_000)
    assert len(calls(colab.colab_root)) == before + 1  # import cnnwidgets asked for the widget manager, once
    mode = "".join(o.get("text", "") for o in nb.run_cell("from cnnwidgets.runner import default_mode; "
                                                          "print(default_mode())"))
    assert mode.strip() == "foreground", mode
    nb.scroll_top()
    nb.screenshot(f"colab-{name}-top")

    # a long dream, so that Stop comes before its end (the notebook's own is short under CNNWIDGETS_QUICK)
    nb.run_cell("import cnnwidgets as cw\n[v for v in Out.values() if isinstance(v, cw.Dream)][0].steps_slider.value = 2000")
    dream = page.locator(DREAM).first
    dream.scroll_into_view_if_needed()
    first = page.evaluate(FRAME)
    dream.locator("button:has-text('Start')").first.click()
    page.wait_for_function(f"() => {{ const m = ({PROGRESS})().match(/^(\\d+) \\//); return m && +m[1] >= 3; }}",
                           timeout=60_000)
    queued = nb.run_cell("print('after the dream')", wait=False)  # Colab's foreground: this cell waits
    frames = {page.evaluate(FRAME)}
    deadline = time.monotonic() + 20
    while len(frames) < 3 and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        frames.add(page.evaluate(FRAME))
    assert len(frames - {first}) >= 2, "the dream's picture did not change while it ran"
    assert nb.cell_count(queued) in ("*", None), "a cell ran during the foreground dream"
    dream.locator("button:has-text('Stop')").first.click()
    page.wait_for_function(f"() => ({PROGRESS})().startsWith('stopped at')", timeout=10_000)
    text = page.evaluate(PROGRESS)
    m = re.match(r"stopped at (\d+) / (\d+) steps", text)
    assert m and int(m.group(1)) < int(m.group(2)), text
    nb.wait_cells({queued}, timeout=60)
    assert "after the dream" in "".join(o.get("text", "") for o in nb.outputs(queued))
    nb.screenshot(f"colab-{name}-dream-stopped", selector=DREAM)
    assert not nb.js_errors, nb.js_errors
    bad = [e for e in nb.console_errors if not BENIGN_CONSOLE.match(e)]
    assert not bad, bad[:5]
    print(f"{name} as on Colab: ran in {ran:.0f} s, dream {text}; {time.monotonic() - t0:.0f} s in all")
