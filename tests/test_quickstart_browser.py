"""The quickstart notebook, run in JupyterLab in a real (headless) Chromium."""
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.browser
def test_quickstart_runs_in_the_browser_and_shows_its_outputs(lab):
    nb = lab.run_notebook(QUICKSTART, name="quickstart")  # raises with the traceback if any cell errors
    text = nb.outputs_text()
    assert "Probe(efficientnet_lite0" in text
    assert "_blocks.3._project_conv" in text  # the layer list, with names
    assert any(cat in text for cat in ("tabby", "tiger cat", "Egyptian cat"))
    assert "hooks on the model: 0" in text
    # the two pictures (the cat as the model sees it, the feature-map mosaic) are rendered widgets
    images = nb.page.locator(".jp-OutputArea-output img.widget-image")
    images.nth(1).wait_for(state="visible", timeout=30_000)
    assert images.count() >= 2
    sizes = [images.nth(i).evaluate("(img) => [img.naturalWidth, img.naturalHeight]") for i in range(2)]
    assert sizes[0] == [224, 224]
    assert sizes[1][0] > 600  # the mosaic of 96 maps
    # the panels below render too: bqplot charts (histograms, CKA, embedding) and the Explorer's tabs
    nb.page.wait_for_function("() => document.querySelectorAll('.bqplot.figure').length >= 5", timeout=60_000)
    tabs = nb.page.locator(".jupyter-widgets .lm-TabBar-tab")
    tabs.nth(5).wait_for(state="attached", timeout=60_000)
    assert "Saliency" in " ".join(tabs.all_inner_texts())
    nb.scroll_top()
    nb.screenshot("quickstart-top")
    images.nth(1).scroll_into_view_if_needed()
    nb.screenshot("quickstart-activations")
