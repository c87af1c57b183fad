"""The Explorer in JupyterLab: tabs render their panels, and a layer picked in one tab reaches the others."""
import pytest


@pytest.mark.browser
def test_explorer_tabs_render_and_stay_linked(lab):
    nb = lab.run_notebook([
        "import cnnwidgets as cw\n"
        "probe = cw.Probe(cw.load_model())\n"
        "ex = cw.Explorer(probe, cw.sample_image('chelsea'), panels=['Feature maps', 'Histograms', 'Dream'])\n"
        "ex",
    ], name="explorer")
    page = nb.page
    tabs = page.locator(".jupyter-widgets .lm-TabBar-tab, .jupyter-widgets .p-TabBar-tab")
    tabs.nth(2).wait_for(state="visible", timeout=30_000)
    assert [t.strip() for t in tabs.all_inner_texts()][:3] == ["Feature maps", "Histograms", "Dream"]
    tabs.nth(2).click()  # a real click opens the Dream tab and builds its panel
    page.wait_for_function("() => document.body.innerText.includes('Start')", timeout=60_000)
    nb.run_cell("print('built', sorted(ex.panels))")
    assert "built ['Dream', 'Feature maps']" in nb.outputs_text()
    tabs.nth(0).click()
    nb.run_cell("before = ex.layer; print('before', probe.layers.names.index(before))")
    slider = page.locator(".widget-hslider, .widget-slider").first
    slider.wait_for(state="visible", timeout=30_000)
    slider.locator(".noUi-handle, .ui-slider-handle").first.click()
    for _ in range(6):
        page.keyboard.press("ArrowRight")  # move the Feature maps layer slider with the keyboard
    nb.run_cell("print('moved', probe.layers.names.index(ex.layer) - probe.layers.names.index(before), "
                "'linked', ex.layer == ex.panels['Dream'].layer == ex.panels['Feature maps'].layer)")
    import re

    moved, linked = re.findall(r"moved (-?\d+) linked (\w+)", nb.outputs_text())[-1]
    assert int(moved) >= 1 and linked == "True"  # the slider moved right, and the other tabs followed
    nb.screenshot("explorer")
