"""FeatureMaps on a vision transformer in JupyterLab: the layer slider walks ViT-B/16's encoder blocks, by keyboard."""
import json

import pytest

from browser import printed_repr as _value, wait_change as _wait_change

GRID_IMG = ".cnnw-grid image"


@pytest.mark.browser
def test_featuremaps_slider_walks_the_encoder_blocks_of_a_vit(lab):
    nb = lab.run_notebook([
        "import torch, cnnwidgets as cw\ntorch.manual_seed(0)\n"
        "p = cw.Probe(cw.load_model('vit_b_16', pretrained=False), device='cpu')\n"
        "fm = cw.FeatureMaps(p, cw.sample_image('chelsea'), layer='encoder.layers.encoder_layer_0')\nfm",
    ], name="featuremaps-vit")
    page = nb.page
    nb.wait_for(GRID_IMG, timeout=90_000, state="attached")
    href = lambda: page.locator(GRID_IMG).first.get_attribute("href")  # noqa: E731
    label = lambda: page.locator(".cnnw-layer-label").first.inner_text()  # noqa: E731
    assert "encoder_layer_0" in label() and "768×14×14" in label() and "class token" in label()
    nb.scroll_to(".cnnw-featuremaps")
    nb.screenshot("featuremaps-vit-block0", selector=".cnnw-featuremaps")

    handle = page.locator(".cnnw-layer-slider .noUi-handle").first
    seen = []
    for step in range(3):  # three presses of the right arrow: blocks 1, 2, 3, each a new grid
        before = href()
        handle.click()
        page.keyboard.press("ArrowRight")
        _wait_change(href, before, timeout=30.0)
        seen.append(json.loads(_value(nb, "fm.layer").replace("'", '"')))
    assert seen == [f"encoder.layers.encoder_layer_{i}" for i in (1, 2, 3)]
    text = label()
    assert "encoder_layer_3" in text and "EncoderBlock" in text and "layer 5 of 13" in text and "conv" not in text
    page.locator(".cnnw-featuremaps").first.evaluate("(e) => e.scrollIntoView({block: 'start'})")  # (cells ran below)
    nb.screenshot("featuremaps-vit-block3")  # the viewport: the panel is taller than it (768 patch filters)
