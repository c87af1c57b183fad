"""The Dream panel in JupyterLab, in a real (headless) Chromium: frames stream in, the Stop button stops them."""
import time

import pytest

CANVAS = ".cnnwidgets-dream img.cnnwidgets-dream-canvas"
SETUP = [
    "import cnnwidgets as cw",
    "p = cw.Probe(cw.load_model())",
]


def _srcs(page, seconds: float) -> list[str]:
    """The canvas' img src values seen while polling for ``seconds``."""
    seen = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        src = page.locator(CANVAS).first.get_attribute("src")
        if src and (not seen or seen[-1] != src):
            seen.append(src)
        page.wait_for_timeout(30)
    return seen


@pytest.mark.browser
def test_frames_stream_into_the_page_and_stop_stops_them(lab):
    nb = lab.run_notebook(SETUP + [
        "d = cw.Dream(p, layer='_blocks.5._project_conv', channel=3)\n"
        "d.size_slider.value = 96; d.steps_slider.value = 2000\nd"], name="dream-stream")
    nb.wait_for(CANVAS)
    page = nb.page
    page.locator(".cnnwidgets-dream button:has-text('Start')").first.click()
    seen = _srcs(page, 6.0)
    assert len(set(seen)) >= 5, f"only {len(set(seen))} different frames arrived"
    # the kernel stays usable while the run goes on
    out = nb.run_cell("print('kernel free', d.runner.state, d.runner.items > 0)", timeout=30)
    assert "kernel free running True" in str(out)
    nb.screenshot("dream-streaming")
    page.locator(".cnnwidgets-dream button:has-text('Stop')").first.click()
    page.wait_for_function("() => [...document.querySelectorAll('.cnnwidgets-dream button')]"
                           ".some(b => b.textContent.includes('Start') && !b.disabled)", timeout=30_000)
    page.wait_for_timeout(500)
    after = _srcs(page, 2.0)
    assert len(set(after)) == 1, "frames kept arriving after Stop"
    out = nb.run_cell("print(d.runner.state, d.canvas.format, d.runner.items < 2000)", timeout=30)
    assert "stopped png True" in str(out)


@pytest.mark.browser
def test_regularized_and_naive_screenshots(lab):
    """A regularized run of a few hundred steps, then the naive one, the atlas and DeepDream (for the eye)."""
    nb = lab.run_notebook(SETUP + [
        "import torch; torch.set_num_threads(1)  # 2 shared cores: one thread runs steadier",
        "d = cw.Dream(p, layer='_blocks.8._project_conv', channel=18, run_mode='foreground')\n"
        "d.size_slider.value = 128; d.steps_slider.value = 250\nd",
        "d.start(); print(d.runner.state)",
    ], name="dream-look", timeout=600)
    nb.scroll_to(".cnnwidgets-dream")
    nb.screenshot("dream-regularized", selector=".cnnwidgets-dream")
    nb.run_cell("d.preset = 'naive'; d.start(); print(d.runner.state)", timeout=600)
    nb.screenshot("dream-naive", selector=".cnnwidgets-dream")
    nb.run_cell("d.preset = 'regularized'; d.mode = 'atlas'; d.channel = 0; d.atlas_slider.value = 16; "
                "d.steps_slider.value = 80; d.size_slider.value = 80; d.start(); print(d.runner.state)", timeout=600)
    nb.screenshot("dream-atlas", selector=".cnnwidgets-dream")
    nb.run_cell("d.mode = 'deepdream'; d.objective = 'layer'; d.layer = '_blocks.5._project_conv'; "
                "d.size_slider.value = 160; d.steps_slider.value = 30; d.start(); print(d.runner.state)", timeout=600)
    nb.screenshot("dream-deepdream", selector=".cnnwidgets-dream")
    assert "done" in nb.outputs_text()
