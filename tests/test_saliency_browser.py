"""The Saliency panel in JupyterLab in a real (headless) Chromium: it renders; switching the method (the dropdown)
and the class (a top-5 button) changes the map; a progressive method dims the old map and shows a progress bar,
then partial maps, then the final one; Stop stops it; the All methods tab has every registered method."""
import pytest

SETUP = [
    "import cnnwidgets as cw",
    "probe = cw.Probe(cw.load_model(), device='cpu')",
    "sal = cw.Saliency(probe, cw.sample_image('chelsea'))\nsal",
]


def map_src(page):
    return page.locator(".cnnw-saliency-map").first.get_attribute("src")


def wait_new_map(page, old, timeout=120_000):
    page.wait_for_function(
        "(old) => { const m = document.querySelector('.cnnw-saliency-map');"
        " return m && m.getAttribute('src') && m.getAttribute('src') !== old && m.naturalWidth > 0; }",
        arg=old, timeout=timeout)
    return map_src(page)


def wait_text(page, selector, text, timeout=120_000):
    page.wait_for_function("([s, t]) => { const e = document.querySelector(s); return e && e.innerText.includes(t); }",
                           arg=[selector, text], timeout=timeout)


@pytest.mark.browser
def test_saliency_panel_method_and_class_change_the_map(lab):
    nb = lab.run_notebook(SETUP, name="saliency")
    page = nb.page
    nb.wait_for(".cnnw-saliency-map", timeout=60_000)
    first = wait_new_map(page, None)
    caption = page.locator(".cnnw-saliency-caption").first
    wait_text(page, ".cnnw-saliency-caption", "explaining")
    assert "Vanilla gradient" in caption.inner_text()
    nb.screenshot("saliency-panel")

    # the method, chosen in the dropdown in the page
    page.locator(".cnnw-saliency-method select").select_option(label="Grad-CAM")
    second = wait_new_map(page, first)
    wait_text(page, ".cnnw-saliency-caption", "Grad-CAM", 60_000)
    nb.screenshot("saliency-gradcam")

    # the class: a real click on the third of the top-5 buttons
    button = page.locator("button.jupyter-button", has_text="·").nth(2)
    name = button.inner_text().split("·")[0].strip()
    button.click()
    third = wait_new_map(page, second)
    wait_text(page, ".cnnw-saliency-caption", name, 60_000)
    assert third != second and name in caption.inner_text()
    nb.screenshot("saliency-class")
    nb.run_cell("assert sal.method == 'gradcam' and sal.result.target_name == %r, (sal.method, sal.result.target_name)"
                % name)
    nb.run_cell("from cnnwidgets import hooks; assert hooks.hook_count(probe.model) == 0")

    # the sanity check: real clicks on its tab and its Start button; tiles appear with ρ
    page.get_by_text("Sanity check", exact=True).first.click()
    nb.run_cell("sal.sanity_tab.levels.value = 2")
    page.locator("button.jupyter-button:visible", has_text="Start").first.click()
    page.wait_for_function("() => [...document.querySelectorAll('.widget-html')].filter("
                           "e => e.innerText.includes('ρ =') && !e.innerText.includes('ρ = …')).length >= 3",
                           timeout=180_000)
    nb.screenshot("saliency-sanity")
    nb.run_cell("sal.sanity_tab.run.join(60); assert [s.step for s in sal.sanity_steps] == [0, 1, 2], sal.sanity_steps")


@pytest.mark.browser
def test_a_progressive_map_streams_stops_and_all_methods_has_the_new_method(lab):
    nb = lab.run_notebook(SETUP, name="saliency-progressive")
    page = nb.page
    nb.wait_for(".cnnw-saliency-map", timeout=60_000)
    wait_new_map(page, None)
    wait_text(page, ".cnnw-saliency-caption", "explaining")

    # LIME: until it has as many samples as superpixels, the old map stays dimmed under a moving progress bar
    page.locator(".cnnw-saliency-method select").select_option(label="LIME (superpixels)")
    page.wait_for_function(
        "() => { const m = document.querySelector('.cnnw-saliency-map');"
        " const busy = [...document.querySelectorAll('.widget-html')].some(e => /[1-9]\\d* \\/ 200 samples ·/.test(e.innerText));"
        " return m.classList.contains('cnnw-stale') && busy; }", timeout=60_000)
    assert "Vanilla gradient" in page.locator(".cnnw-saliency-caption").first.inner_text()
    nb.screenshot("saliency-progressive-dimmed")
    wait_text(page, ".cnnw-saliency-caption", "partial:", 120_000)  # then partial maps replace it as they come
    assert not page.locator(".cnnw-saliency-map").first.evaluate("m => m.classList.contains('cnnw-stale')")
    nb.screenshot("saliency-progressive-partial")
    wait_text(page, ".cnnw-saliency-message", "done, 200 / 200 samples", 180_000)
    assert "partial" not in page.locator(".cnnw-saliency-caption").first.inner_text()
    nb.screenshot("saliency-progressive-final")
    nb.run_cell("assert sal.result.method == 'lime' and not sal.result.partial, sal.result.progress")

    # Stop: a real click stops SmoothGrad within about a second; its partial map stays, and says so
    nb.run_cell("sal.opts['smoothgrad']['samples'].value = 200")
    page.locator(".cnnw-saliency-method select").select_option(label="SmoothGrad")
    wait_text(page, ".cnnw-saliency-caption", "SmoothGrad", 60_000)
    page.locator("button.jupyter-button:visible", has_text="Stop").first.click()
    wait_text(page, ".cnnw-saliency-message", "SmoothGrad: stopped at", 5_000)
    assert "partial:" in page.locator(".cnnw-saliency-caption").first.inner_text()
    nb.screenshot("saliency-stopped")

    # All methods: every registered method, Input × Gradient among them
    nb.run_cell("o = sal.opts; o['smoothgrad']['samples'].value = 10; o['integrated_gradients']['steps'].value = 10\n"
                "o['lime']['samples'].value = 100; o['occlusion']['window'].value = 56; o['occlusion']['stride'].value = 28")
    page.get_by_text("All methods", exact=True).first.click()
    page.locator("button.jupyter-button:visible", has_text="Start").first.click()
    wait_text(page, ".cnnw-saliency-message", "All methods: done, 8 / 8 methods", 300_000)
    heads = page.locator(".widget-html:visible").all_inner_texts()
    assert any("Input × Gradient" in h for h in heads) and any(h.startswith("LIME") for h in heads)
    nb.screenshot("saliency-all-methods")
    nb.run_cell("assert list(sal.all_results) == list(cw.attribution.METHODS) and 'input_x_gradient' in sal.all_results")
