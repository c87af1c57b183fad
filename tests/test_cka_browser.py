"""CKAHeatmap in JupyterLab in headless Chromium: the heatmap renders, hovering shows the value, and a
real mouse click on a cell shows that pair's feature maps and sets the ``selected`` trait
(layers mode: GridHeatMap cells; channels mode: the canvas HeatMap under its click overlay)."""
import json

import pytest

BLOCKS = ["_blocks.0", "_blocks.2", "_blocks.4", "_blocks.7", "_blocks.10", "_blocks.15"]
SETUP = [
    "import cnnwidgets as cw\np = cw.Probe(cw.load_model(), device='cpu')\nimgs = cw.sample_batch(16)",
    f"hm = cw.CKAHeatmap(p, imgs, layers={BLOCKS!r}, batch_size=8)\nhm",
    "assert hm.controls.join(240) and hm.result is not None and hm.result.final, hm.controls.state",
]


def _value(nb, expr):
    out = nb.run_cell(f"import json as _j; print(_j.dumps({expr}))")
    return json.loads("".join(o.get("text", "") for o in out if o.get("output_type") == "stream"))


def _src(page, cls, nth=0):
    return page.locator(f"img.{cls}").nth(nth).get_attribute("src")


@pytest.mark.browser
def test_cka_heatmap_click_shows_the_pair(lab):
    nb = lab.run_notebook(SETUP, name="cka")
    page = nb.page
    cells = page.locator(".cnnw-cka-figure rect.heatmapcell")
    page.wait_for_function("() => document.querySelectorAll('.cnnw-cka-figure rect.heatmapcell').length === 36",
                           timeout=60_000)
    labels = page.evaluate("() => [...document.querySelectorAll('.cnnw-cka-figure .tick text')].map(t => t.textContent)")
    nb.scroll_to(".cnnw-cka")
    nb.screenshot("cka-layers", selector=".cnnw-cka")
    assert "block0" in labels and "block15" in labels, labels  # readable layer names on the axes
    assert page.locator(".cnnw-cka-figure .colorbar, .cnnw-cka-figure .ColorBar").count() >= 1

    # hover: the value under the pointer
    cell = cells.nth(1 * 6 + 4)
    cell.scroll_into_view_if_needed()
    box = cell.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("() => document.querySelector('.cnnw-cka-hover').innerText.includes('CKA')", timeout=20_000)

    # a real click on row 1, column 4
    assert page.evaluate("() => document.querySelector('img.cnnw-cka-map-a').naturalWidth") == 0  # nothing shown yet
    empty = _src(page, "cnnw-cka-map-a")
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("(old) => { const m = document.querySelector('img.cnnw-cka-map-a');"
                           " return m && m.getAttribute('src') !== old && m.naturalWidth > 0; }", arg=empty, timeout=30_000)
    assert _value(nb, "list(hm.selected)") == [BLOCKS[1], BLOCKS[4]]
    assert _value(nb, "[hm.layer_a, hm.layer_b]") == [BLOCKS[1], BLOCKS[4]]
    title = page.locator(".cnnw-cka-pair").first.inner_text()
    assert "block2" in title and "block10" in title and "CKA" in title
    first_a = _src(page, "cnnw-cka-map-a")
    nb.scroll_to(".cnnw-cka")
    nb.screenshot("cka-layers-clicked", selector=".cnnw-cka")

    # another click: the maps change
    cell = cells.nth(5 * 6 + 0)
    cell.scroll_into_view_if_needed()
    box = cell.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function("(old) => { const m = document.querySelector('img.cnnw-cka-map-a');"
                           " return m && m.getAttribute('src') !== old; }", arg=first_a, timeout=30_000)
    assert _value(nb, "list(hm.selected)") == [BLOCKS[5], BLOCKS[0]]
    nb.run_cell("from cnnwidgets import hooks; assert hooks.hook_count(p.model) == 0")


@pytest.mark.browser
def test_cka_channels_heatmap_canvas_click(lab):
    nb = lab.run_notebook([
        "import cnnwidgets as cw\np = cw.Probe(cw.load_model(), device='cpu')",
        "hc = cw.CKAHeatmap(p, cw.sample_batch(24), mode='channels', layer='_blocks.15', batch_size=12)\nhc",
        "assert hc.controls.join(240) and hc.result is not None and hc.result.final, hc.controls.state",
    ], name="cka-channels")
    page = nb.page
    nb.wait_for(".cnnw-cka-figure image.heatmap", timeout=60_000, state="attached")
    nb.scroll_to(".cnnw-cka")
    nb.screenshot("cka-channels", selector=".cnnw-cka")
    overlay = page.locator(".cnnw-cka-figure image").last  # the transparent click layer, on top
    box = overlay.bounding_box()
    # 320 x 320 cells: aim at displayed row 40, column 250
    x = box["x"] + (250 + 0.5) / 320 * box["width"]
    y = box["y"] + (40 + 0.5) / 320 * box["height"]
    page.mouse.click(x, y)
    page.wait_for_function("() => { const m = document.querySelector('img.cnnw-cka-map-b');"
                           " return m && m.getAttribute('src') && m.naturalWidth > 0; }", timeout=30_000)
    row, col = _value(nb, "[int(s.rsplit(':', 1)[1]) for s in hc.selected]")
    order = _value(nb, "[int(i) for i in hc.order]")
    assert abs(order.index(row) - 40) <= 1 and abs(order.index(col) - 250) <= 1
    assert _value(nb, "hc.channel") == row
    nb.scroll_to(".cnnw-cka")
    nb.screenshot("cka-channels-clicked", selector=".cnnw-cka")
