"""FeatureMaps and Histogram in JupyterLab, driven by real keyboard and mouse input in headless Chromium."""
import json

import pytest

from browser import printed_repr as _value, wait_change as _wait_change

GRID_IMG = ".cnnw-grid image"  # the bqplot Image mark's SVG <image> (its href is a blob of the PNG)
BIG_IMG = "img.cnnw-big"


@pytest.mark.browser
def test_featuremaps_slider_click_and_histogram_bars(lab):
    nb = lab.run_notebook([
        "import cnnwidgets as cw\np = cw.Probe(cw.load_model())\n"
        "fm = cw.FeatureMaps(p, cw.sample_image('chelsea'), layer=p.layers[4].name)\nfm",
    ], name="featuremaps")
    page = nb.page
    grid = nb.wait_for(GRID_IMG, timeout=60_000, state="attached")
    nb.wait_for(BIG_IMG, timeout=30_000)
    href = lambda: page.locator(GRID_IMG).first.get_attribute("href")  # noqa: E731
    src = lambda: page.locator(BIG_IMG).first.get_attribute("src")  # noqa: E731
    assert href() and href().startswith("blob:")
    nb.scroll_to(".cnnw-featuremaps")
    nb.screenshot("featuremaps-panel", selector=".cnnw-featuremaps")

    # 1. the layer slider, by keyboard: focus its handle and press the right arrow twice
    before = href()
    handle = page.locator(".cnnw-layer-slider .noUi-handle").first
    handle.click()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    _wait_change(href, before)
    layer = json.loads(_value(nb, "fm.layer").replace("'", '"'))
    assert layer == json.loads(_value(nb, "p.layers[6].name").replace("'", '"'))
    label = page.locator(".cnnw-layer-label").first.inner_text()
    assert layer in label and "×" in label and "7 of 49" in label  # position, name · type · shape

    # 2. a real click on the third tile of the grid selects that channel and redraws the large view
    before_big = src()
    cols, th, tw = json.loads(_value(nb, "[fm.plan.cols(0), *fm.plan.tile_hw]"))
    w_px = int(_value(nb, "fm._grid_rgb.shape[1]"))
    assert _value(nb, "fm.channel") == "0"
    page.locator(GRID_IMG).first.scroll_into_view_if_needed()  # (running a cell scrolls the notebook)
    box = page.locator(GRID_IMG).first.bounding_box()
    scale = box["width"] / w_px
    page.mouse.click(box["x"] + (2 * (tw + 1) + tw / 2) * scale, box["y"] + (th / 2) * scale)
    _wait_change(src, before_big)
    assert _value(nb, "fm.channel") == _value(nb, "int(fm.visible_channels[2])")
    nb.screenshot("featuremaps-clicked", selector=".cnnw-featuremaps")

    # 3. a large layer: pages with a clear indicator
    nb.run_cell("fm.layer = p.layers[-1].name")
    page.wait_for_function("() => document.body.innerText.includes('channels 1–256 of 1280')", timeout=20_000)
    before = href()
    page.locator(".cnnw-featuremaps button", has_text="next").first.click()
    _wait_change(href, before)
    assert "channels 257–512 of 1280" in page.locator(".cnnw-featuremaps").first.inner_text()
    nb.screenshot("featuremaps-paged", selector=".cnnw-featuremaps")

    # 4. a Linear layer: one bar per unit
    nb.run_cell("fm.layer = '_fc'")
    units = page.locator(".cnnw-units rect.bar")
    page.wait_for_function("() => document.querySelectorAll('.cnnw-units rect.bar').length === 1000", timeout=30_000)
    heights = units.evaluate_all("(els) => els.map(e => parseFloat(e.getAttribute('height') || '0'))")
    assert sum(h > 0 for h in heights) > 900
    nb.scroll_to(".cnnw-featuremaps")
    nb.screenshot("featuremaps-linear", selector=".cnnw-featuremaps")

    # 5. the histogram panel draws bars
    nb.run_cell("h = cw.Histogram(p, cw.sample_image('chelsea'))\nh")
    nb.wait_for(".cnnw-histogram", timeout=60_000)
    for cls in ("weights", "activations", "selected"):
        bars = page.locator(f".cnnw-hist-{cls} rect.bar")
        bars.first.wait_for(state="attached", timeout=30_000)
        heights = bars.evaluate_all("(els) => els.map(e => parseFloat(e.getAttribute('height') || '0'))")
        assert len(heights) == 50 and sum(h > 0 for h in heights) > 5, (cls, heights[:10])
    page.set_viewport_size({"width": 1280, "height": 1700})  # the whole panel in one picture
    nb.scroll_to(".cnnw-histogram")
    nb.screenshot("histogram-panel", selector=".cnnw-histogram")
    page.set_viewport_size({"width": 1280, "height": 1000})
    # a header click sorts the table
    page.locator(".cnnw-histogram button", has_text="std").first.click()
    page.wait_for_function("() => [...document.querySelectorAll('.cnnw-histogram button')].some(b => b.innerText.includes('std ▼'))",
                           timeout=20_000)
    assert _value(nb, "(h.sort_by, h.descending)") == repr(("std", True))
    assert _value(nb, "cw.hooks.hook_count(p.model)") == "0"
