"""The Colab-like setting, in a real browser: Colab's widget stack (ipywidgets 7.7.1, bqplot 0.12.47, ipykernel 6,
IPython 7.34) in the classic Notebook 6.5 from ``.venv-colab`` (``make install-colab``, made on demand), driven
by headless Chromium (tests/browser_classic.py).

The kernel is told it is on Colab (a ``google.colab`` module in ``sys.modules``, as Colab has), so every panel runs
its long jobs as on Colab: in the foreground (``default_mode()``), widget events handled between steps.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from browser import DREAM, DREAM_PROGRESS as PROGRESS

pytestmark = [pytest.mark.browser, pytest.mark.colab]

# google.colab with the output.enable_custom_widget_manager() that `import cnnwidgets` calls there
ON_COLAB = ("import sys, types; colab = types.ModuleType('google.colab'); colab.output = types.SimpleNamespace("
            "enable_custom_widget_manager=lambda: None); sys.modules.setdefault('google.colab', colab)")
SETUP = (ON_COLAB + "\nimport torch; torch.set_num_threads(1)  # 2 cores shared with the browser and the server\n"
         "import ipywidgets, bqplot, cnnwidgets as cw\nfrom cnnwidgets.runner import default_mode\n"
         "print(ipywidgets.__version__, bqplot.__version__, default_mode())\n"
         "p = cw.Probe(cw.load_model(), device='cpu')\ncat = cw.sample_image('chelsea')")

#: console errors bqplot 0.12 logs while a figure is drawn before it has its size (negative plot area for a moment);
#: harmless, the figure is drawn again at its size. Any other console error fails a test.
BENIGN_CONSOLE = re.compile(r"^Error: <\w+> attribute (width|height): A negative value is not valid")


@pytest.fixture(scope="module")
def classic():
    from browser_classic import ClassicNotebook

    nbs = ClassicNotebook()
    try:
        yield nbs
    finally:
        nbs.close()


def _no_js_errors(nb):
    assert not nb.js_errors, f"uncaught JavaScript errors: {nb.js_errors}\n{nb.js_stacks}"
    bad = [e for e in nb.console_errors if not BENIGN_CONSOLE.match(e)]
    assert not bad, f"console errors: {bad[:5]}"
    nb.check_widgets()


def _text(outputs) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")


# --- 1. every panel renders with ipywidgets 7.7.1 and bqplot 0.12.47, and again after a reload -------------------------
PANELS = {  # name: (code that displays it as the cell's last line, least bqplot figures drawn, least images drawn)
    "featuremaps": ("fm = cw.FeatureMaps(p, cat)\nfm", 0, 1),
    "histogram": ("h = cw.Histogram(p, cat)\nh", 3, 0),
    "cka": ("hm = cw.CKAHeatmap(p, cw.sample_batch(8, size=96), layers=['_blocks.0', '_blocks.4', '_blocks.10', "
            "'_blocks.15'], batch_size=8)\nhm", 1, 0),
    "saliency": ("sal = cw.Saliency(p, cat)\nsal", 0, 1),
    "dream": ("d = cw.Dream(p, layer='_blocks.5._project_conv', channel=3)\nd.size_slider.value = 64; "
              "d.steps_slider.value = 20\nd", 1, 1),
    "embedding": ("x, names = cw.sample_dataset(24, size=96, seed=2)\n"
                  "emb = cw.Embedding(p, x, names, layer=p.layers[20].name)\nemb", 1, 0),
    "imagegrid": ("grid = cw.ImageGrid(x, labels=names, per_page=12, cols=6)\ngrid", 1, 0),
    "explorer": ("ex = cw.Explorer(p, cat, panels=['Feature maps', 'Histograms', 'Dream'])\nex", 0, 1),
}


def test_every_panel_renders_with_colab_widget_versions_and_again_after_a_reload(classic):
    cells = [SETUP] + [code for code, _f, _i in PANELS.values()] + [
        "d.start(); emb.compute(); print('dream', d.runner.state, 'embedding', emb.controls.state, "
        "'cka', hm.controls.state, hm.result is not None and hm.result.final)"]
    t0 = time.monotonic()
    nb = classic.run_notebook(cells, name="colab-panels", timeout=600)
    page = nb.page
    out = nb.outputs_text()
    assert "7.7.1 0.12.47 foreground" in out, out[:300]
    assert "dream done embedding done cka done True" in out, out[-500:]
    page.wait_for_function("() => document.querySelectorAll('.dot').length >= 24", timeout=30_000)

    def look(when: str, shots: bool = True, expect: dict | None = None) -> dict:
        seen = {}
        for i, (name, (code, n_fig, n_img)) in enumerate(PANELS.items(), start=1):
            out = nb.output_of(i)
            out.scroll_into_view_if_needed()
            deadline = time.monotonic() + 30
            while True:  # drawn: its figures have marks, its images have pixels
                figs, imgs = nb.figures(i), nb.images(i)
                drawn = [f for f in figs if f["marks"] > 0 and f["w"] > 50 and f["h"] > 50]
                now = (len(drawn), sum(w > 0 for w in imgs))
                if (now == expect[name]) if expect else (now[0] >= n_fig and now[1] >= n_img):
                    break
                if time.monotonic() > deadline:
                    nb.screenshot(f"colab-{name}-{when}-missing")
                    raise AssertionError(f"{name} ({when}): {now[0]} bqplot figures drawn ({figs}), {now[1]} images "
                                         f"({imgs}); expected {expect[name] if expect else (n_fig, n_img)} at least")
                page.wait_for_timeout(300)
            seen[name] = now
            if shots:
                nb.screenshot(f"colab-{name}" + ("" if when == "first" else f"-{when}"), selector=f'[data-cnnw-cell="{i}"]')
        return seen

    first = look("first")
    assert page.locator("rect.heatmapcell").count() == 16  # the CKA grid, 4 x 4
    assert page.locator(".dot").count() >= 24  # the Embedding, one dot per image
    assert page.locator(".p-TabBar-tab, .lm-TabBar-tab").count() >= 3  # the Explorer's tabs
    _no_js_errors(nb)

    # interactions: a real click on a CKA cell (bqplot 0.12's GridHeatMap selection), on an Embedding point
    cell = page.locator("rect.heatmapcell").nth(1 * 4 + 2)
    cell.scroll_into_view_if_needed()
    box = cell.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    dot = page.locator(".dot").nth(5)
    dot.scroll_into_view_if_needed()
    dot.click(force=True)
    deadline = time.monotonic() + 30
    while True:
        picked = _text(nb.run_cell("print(list(hm.selected), emb.selected)"))
        if "[]" not in picked and "-1" not in picked or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    m = re.match(r"\['_blocks.4', '_blocks.10'\] (\d+)", picked)  # dots are drawn per class: any one of the 24
    assert m and 0 <= int(m.group(1)) < 24, picked
    nb.run_cell("from cnnwidgets.widgets._base import reachable_widgets\nimport json\n"
                "from ipywidgets.widgets.widget import _remove_buffers\n"
                "for w in reachable_widgets(hm):\n    json.dumps(_remove_buffers(w.get_state())[0])")
    clicked = look("clicked", shots=False)
    assert clicked["cka"][1] > first["cka"][1] and clicked["embedding"][1] > first["embedding"][1], clicked  # pair, image
    views = nb.widget_views()

    # a reload (or a second tab): every widget comes back from the kernel
    nb.save()
    classic.reload(nb)
    page.wait_for_function("(n) => document.querySelectorAll('#notebook .output_area .jupyter-widgets').length >= n",
                           arg=views, timeout=60_000)
    look("reloaded", expect=clicked)  # as before the reload: every figure and image drawn again
    _no_js_errors(nb)
    print(f"panels rendered and reloaded in {time.monotonic() - t0:.1f} s: {first}")


# --- 2. foreground mode answers Pause, Resume and Stop at once; a queued cell runs after -------------------------------


def _steps(page) -> int:
    m = re.search(r"(\d+) / \d+ steps", page.evaluate(PROGRESS))
    return int(m.group(1)) if m else -1


def test_foreground_dream_answers_pause_resume_and_stop(classic):
    nb = classic.run_notebook([SETUP,
                               "d = cw.Dream(p, layer='_blocks.5._project_conv', channel=3, run_mode='foreground')\n"
                               "d.size_slider.value = 96; d.steps_slider.value = 2000\nd"], name="colab-dream-fg")
    page = nb.page
    nb.wait_for(DREAM)
    page.locator(f"{DREAM} button:has-text('Start')").first.click()
    page.wait_for_function(f"() => {{ const t = ({PROGRESS})(); return /^\\d+ \\//.test(t) && parseInt(t) >= 20; }}",
                           timeout=60_000)
    # a cell run meanwhile waits: the kernel is busy with the dream (as on Colab)
    queued = nb.run_cell("print('queued cell ran after the dream:', d.runner.state, d.runner.items)", wait=False)

    a = _steps(page)
    page.wait_for_timeout(1000)
    b = _steps(page)
    assert b > a, f"the dream does not move: {a} -> {b}"

    # Pause: the step count stops
    page.locator(f"{DREAM} button:has-text('Pause')").first.click()
    page.locator(f"{DREAM} button:has-text('Resume')").first.wait_for(timeout=5_000)
    page.wait_for_timeout(500)
    p1 = _steps(page)
    page.wait_for_timeout(2000)
    p2 = _steps(page)
    assert p1 == p2, f"paused, yet the steps went on: {p1} -> {p2}"
    assert nb.outputs(queued) == [] and nb.cell_count(queued) in ("*", None), "the queued cell ran during the dream"

    # Resume: it moves again
    page.locator(f"{DREAM} button:has-text('Resume')").first.click()
    page.wait_for_function(f"(n) => {{ const m = ({PROGRESS})().match(/(\\d+) \\//); return m && +m[1] > n + 20; }}",
                           arg=p2, timeout=20_000)

    # Stop: within a second of the click, measured from the page
    before = _steps(page)
    t0 = time.monotonic()
    page.locator(f"{DREAM} button:has-text('Stop')").first.click()
    page.wait_for_function(f"() => ({PROGRESS})().startsWith('stopped at')", timeout=10_000, polling=20)
    stop_s = time.monotonic() - t0
    at = _steps(page)
    nb.screenshot("colab-dream-foreground-stopped", selector=DREAM)
    assert stop_s < 1.0, f"Stop took {stop_s:.2f} s"
    assert at < 2000 and at >= before, (before, at)

    # the queued cell runs now
    nb.wait_cells({queued}, timeout=60)
    text = _text(nb.outputs(queued))
    assert f"queued cell ran after the dream: stopped {at}" in text, text
    page.wait_for_function(f"() => [...document.querySelectorAll('{DREAM} button')]"
                           ".some(b => b.textContent.includes('Start') && !b.disabled)", timeout=10_000)

    # started from a cell instead (d.start(), as a notebook does): Stop ends the run, and so the cell
    started = nb.run_cell("d.start(); print('cell ended:', d.controls.state)", wait=False)
    page.wait_for_function(f"() => {{ const t = ({PROGRESS})(); return /^\\d+ \\//.test(t) && parseInt(t) >= 10; }}",
                           timeout=60_000)
    t0 = time.monotonic()
    page.locator(f"{DREAM} button:has-text('Stop')").first.click()
    page.wait_for_function(f"() => ({PROGRESS})().startsWith('stopped at')", timeout=10_000, polling=20)
    stop_cell_s = time.monotonic() - t0
    nb.wait_cells({started}, timeout=30)
    assert "cell ended: stopped" in _text(nb.outputs(started))
    assert stop_cell_s < 1.0, f"Stop took {stop_cell_s:.2f} s in a run started from a cell"
    _no_js_errors(nb)
    print(f"foreground dream: paused at {p1}, stopped at {at} (from {before}) {stop_s * 1000:.0f} ms after the click; "
          f"started from a cell: stopped {stop_cell_s * 1000:.0f} ms after the click")


def test_foreground_cka_shows_first_and_streams_after(classic):
    """A panel that computes on its own, in the foreground: the widget is on screen while its cell still runs,
    and its result arrives after, batch by batch."""
    nb = classic.run_notebook([SETUP], name="colab-cka-fg")
    page = nb.page
    i = nb.run_cell("hm = cw.CKAHeatmap(p, cw.sample_batch(48, size=128), layers=['_blocks.0', '_blocks.2', '_blocks.4', "
                    "'_blocks.7', '_blocks.10', '_blocks.15'], batch_size=4, run_mode='foreground')\nhm", wait=False)
    out = nb.output_of(i)
    out.locator(".jupyter-widgets").first.wait_for(timeout=60_000)
    shown_while = nb.cell_count(i)
    labels = []
    deadline = time.monotonic() + 240
    while nb.cell_count(i) in ("*", None) and time.monotonic() < deadline:
        t = page.evaluate("(i) => Jupyter.notebook.get_cell(i).output_area.element[0].innerText", i)
        m = re.search(r"(\d+) / (\d+) batch", t)
        if m and (not labels or labels[-1] != m.group(0)):
            labels.append(m.group(0))
        page.wait_for_timeout(100)
    nb.wait_cells({i}, timeout=30)
    assert shown_while == "*", f"the panel appeared only after its cell ended ({shown_while})"
    partial = [l for l in labels if l.split(" / ")[0] != l.split(" / ")[1].split()[0]]
    assert len(partial) >= 2, f"no partial results were shown while it ran: {labels}"
    page.wait_for_function("() => document.querySelectorAll('rect.heatmapcell').length === 36", timeout=30_000)
    done = nb.run_cell("print(hm.controls.state, hm.result.final)")
    assert "done True" in _text(done)
    nb.screenshot("colab-cka-foreground", selector='[data-cnnw-cell="%d"]' % i)
    _no_js_errors(nb)
    print(f"CKA progress seen while its cell ran: {labels}")


# --- 3. the same file uploaded twice is taken twice (ipywidgets 7's FileUpload) ---------------------------------------
def test_uploading_the_same_png_again_is_taken(classic, tmp_path):
    png = tmp_path / "rocket.png"
    nb = classic.run_notebook([SETUP, "fm = cw.FeatureMaps(p, cat)\nseen = []\nfm.input.on_change(lambda img: "
                               "seen.append(getattr(img, 'size', None)))\nfm"], name="colab-upload")
    nb.run_cell(f"cw.sample_image('rocket').resize((120, 90)).save({str(png)!r}); print('saved')")
    page = nb.page
    upload = nb.output_of(1).locator("button", has_text="Upload").first

    def upload_png():
        with page.expect_file_chooser(timeout=10_000) as fc:
            upload.click()  # a real click: ipywidgets 7 empties its <input type=file> on click, then opens it
        fc.value.set_files(str(png))

    def state():
        return _text(nb.run_cell("print(fm.input.name, '|', len(seen), seen[-1:] )"))

    upload_png()
    deadline = time.monotonic() + 30
    while "upload: rocket.png | 1" not in (s := state()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "upload: rocket.png | 1 [(120, 90)]" in s, s
    # back to the cat in the dropdown (a real choice in the page), then the same file again
    nb.output_of(1).locator("select").first.select_option(label="chelsea")
    deadline = time.monotonic() + 30
    while "chelsea | 2" not in (s := state()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "chelsea | 2" in s, s
    upload_png()
    deadline = time.monotonic() + 30
    while "upload: rocket.png | 3" not in (s := state()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "upload: rocket.png | 3 [(120, 90)]" in s, f"the second upload of the same file was not taken: {s}"
    nb.screenshot("colab-featuremaps-reupload", selector='[data-cnnw-cell="1"]')
    _no_js_errors(nb)
