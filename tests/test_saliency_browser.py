"""The Saliency panel in JupyterLab in a real (headless) Chromium: it renders, and switching the
method (the dropdown) and the class (a top-5 button) changes the map that is shown."""
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


@pytest.mark.browser
def test_saliency_panel_method_and_class_change_the_map(lab):
    nb = lab.run_notebook(SETUP, name="saliency")
    page = nb.page
    nb.wait_for(".cnnw-saliency-map", timeout=60_000)
    first = wait_new_map(page, None)
    caption = page.locator(".cnnw-saliency-caption").first
    page.wait_for_function("() => document.querySelector('.cnnw-saliency-caption').innerText.includes('explaining')",
                           timeout=120_000)
    assert "Vanilla gradient" in caption.inner_text()
    nb.screenshot("saliency-panel")

    # the method, chosen in the dropdown in the page
    page.locator(".cnnw-saliency-method select").select_option(label="Grad-CAM")
    second = wait_new_map(page, first)
    page.wait_for_function("() => document.querySelector('.cnnw-saliency-caption').innerText.includes('Grad-CAM')",
                           timeout=60_000)
    assert "Grad-CAM" in caption.inner_text()
    nb.screenshot("saliency-gradcam")

    # the class: a real click on the third of the top-5 buttons
    button = page.locator("button.jupyter-button", has_text="·").nth(2)
    name = button.inner_text().split("·")[0].strip()
    button.click()
    third = wait_new_map(page, second)
    page.wait_for_function("(n) => document.querySelector('.cnnw-saliency-caption').innerText.includes(n)",
                           arg=name, timeout=60_000)
    assert third != second and name in caption.inner_text()
    nb.screenshot("saliency-class")
    nb.run_cell("assert sal.method == 'gradcam' and sal.result.target_name == %r, (sal.method, sal.result.target_name)"
                % name)
    nb.run_cell("from cnnwidgets import hooks; assert hooks.hook_count(probe.model) == 0")

    # the sanity check: real clicks on its tab and its Start button; tiles appear with ρ
    page.get_by_text("Sanity check", exact=True).first.click()
    nb.run_cell("sal.sanity_steps_count.value = 2")
    page.locator("button.jupyter-button:visible", has_text="Start").first.click()
    page.wait_for_function("() => [...document.querySelectorAll('.widget-html')].filter("
                           "e => e.innerText.includes('ρ =')).length >= 3", timeout=180_000)
    nb.screenshot("saliency-sanity")
    nb.run_cell("sal.sanity_run.join(60); assert [s.step for s in sal.sanity_steps] == [0, 1, 2], sal.sanity_steps")
