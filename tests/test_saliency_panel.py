"""The Saliency panel without a browser: what it shows after each control, errors in its Message,
figure()/save(). Runs in the foreground (synchronously: a control's change computes before it returns; the
first map is computed by join(), as when the panel is displayed) on 64 px inputs to stay fast."""
import numpy as np
import pytest
import torch
import traitlets
import ipywidgets as W

import cnnwidgets as cw
from cnnwidgets import hooks, render


@pytest.fixture(scope="module")
def probe():
    return cw.Probe(cw.load_model(), device="cpu", input_size=64)


@pytest.fixture(scope="module")
def panel(probe):
    p = cw.Saliency(probe, cw.sample_image("chelsea"), mode="foreground")
    assert p.result is None  # shown first, computed after: nothing ran in the constructor
    p.join()
    return p


def shown(img_widget):
    return render.decode(img_widget.value)


def test_panel_shows_the_top1_map(panel, probe):
    top = cw.attribution.top_classes(probe, cw.sample_image("chelsea"))
    assert panel.target == top[0][0] and panel.result.target == top[0][0]
    assert panel.result.method == "saliency" and panel.method == "saliency"
    assert shown(panel.map.map_view).shape == (224, 224, 3)  # enlarged to a readable tile
    assert top[0][1] in panel.map.caption.value and "Vanilla gradient" in panel.map.caption.value
    assert [b.description.split(" · ")[0] for b in panel.top_buttons] == [n for _, n, _ in top]
    assert panel.top_buttons[0].button_style == "primary"
    assert panel.map.bar_top.value and "0" in panel.map.bar_bottom.value  # colour-bar labels
    assert hooks.hook_count(probe.model) == 0


def test_method_class_and_search_change_the_map(panel, probe):
    before = panel.map.map_view.value
    panel.method_select.value = "gradcam"  # the dropdown drives the trait
    assert panel.method == "gradcam" and panel.result.method == "gradcam"
    assert panel.result.layer == panel.layer == cw.attribution.default_cam_layer(probe).name
    assert panel.map.map_view.value != before and "Grad-CAM" in panel.map.caption.value
    before = panel.map.map_view.value
    panel.top_buttons[2].click()
    assert panel.target == panel.top5[2][0] == panel.result.target
    assert panel.map.map_view.value != before and panel.top_buttons[2].button_style == "primary"
    panel.search.value = "zebra"
    assert panel.target == 340 and panel.result.target_name == "zebra"
    assert all(b.button_style == "" for b in panel.top_buttons)
    panel.layer = probe.layers[-4].name
    assert panel.result.layer == probe.layers[-4].name and panel.opts.layer.value == panel.layer
    panel.method = "saliency"
    assert panel.method_select.value == "saliency"


def test_bad_input_shows_in_the_message(panel):
    t = panel.target
    panel.target = 1000
    assert "out of range" in panel.message.value and panel.target == t
    panel.search.value = "qqqqxz"
    assert "No class matches" in panel.message.value and panel.target == t
    panel.set_image(torch.rand(1, 1, 3, 8, 8))
    assert "Error" in panel.message.value and panel.target == t


def test_display_controls(panel):
    panel.opts["integrated_gradients"]["steps"].value = 8  # another method's option: nothing recomputed yet
    panel.method = "integrated_gradients"
    assert panel.result.options["steps"] == 8
    panel.display.sign.value = "signed"
    assert panel.map.bar_mid.value.endswith("0</small>") and panel.map.bar_bottom.value.startswith("<small>-")
    assert "red: pushes the score up" in panel.map.legend.value
    panel.display.opacity.value = 0.0  # the map fully transparent: the grayscale image
    gray = shown(panel.map.map_view)
    assert np.allclose(gray[..., 0], gray[..., 1], atol=1)
    panel.display.opacity.value = 1.0
    colour = shown(panel.map.map_view)
    assert not np.allclose(colour, gray, atol=3)
    panel.display.cmap.value = "gray"
    g = shown(panel.map.map_view)
    assert np.array_equal(g[..., 0], g[..., 2])
    panel.display.cmap.value, panel.display.sign.value, panel.display.opacity.value = "auto", "abs", 0.6
    panel.method = "saliency"


def test_traits_link(panel):
    box = W.IntText()
    link = traitlets.link((panel, "target"), (box, "value"))
    try:
        box.value = 281
        assert panel.result.target == 281
        panel.top_buttons[0].click()
        assert box.value == panel.top5[0][0]
    finally:
        link.unlink()


def test_compare_models_and_all_methods(probe, tmp_path):
    resnet = cw.Probe(cw.load_model("resnet18", pretrained=False), device="cpu", input_size=64)
    s = cw.Saliency(probe, cw.sample_image("coffee"), compare=[resnet], method="gradcam", mode="foreground")
    s.join()
    steps = s.opts["integrated_gradients"]["steps"]
    steps.value = 15
    assert "press Compute" not in s.message.value
    s.method = "integrated_gradients"
    steps.value = 10
    assert "press Compute" in s.message.value and s.result.options["steps"] == 15
    s.compute_button.click()
    assert s.result.options["steps"] == 10
    s.method = "gradcam"
    s.compare_tab.run.start()
    assert [a.model for a in s.compare_results] == [probe.name, resnet.name]
    assert len(s.compare_tab.grid.box.children) == 2 and s.compare_results[1].layer == "layer4"
    o = s.opts
    o["smoothgrad"]["samples"].value, steps.value, o["lime"]["samples"].value, o["occlusion"]["window"].value = 5, 5, 50, 48
    o["occlusion"]["stride"].value = 48
    s.all_tab.run.start()
    methods = list(cw.attribution.METHODS)
    assert list(s.all_results) == methods and len(s.all_tab.grid.box.children) == len(methods)
    assert "input_x_gradient" in methods and "Input × Gradient" in s.all_tab.grid.box.children[2].children[0].value
    assert not any(a.partial for a in s.all_results.values()) and "All methods: done, 8 / 8 methods" in s.message.value
    assert {a.target for a in s.all_results.values()} == {s.target}
    for view in ("map", "all", "compare"):
        path = s.save(tmp_path / f"{view}.png", dpi=50, view=view)
        assert render.decode(open(path, "rb").read()).shape[0] > 50
    assert hooks.hook_count(probe.model) == 0 and hooks.hook_count(resnet.model) == 0


def test_sanity_view_leaves_the_users_model(panel, probe, tmp_path):
    w = probe.model._fc.weight.clone()
    panel.sanity_tab.levels.value = 2
    panel.sanity_tab.run.start()
    steps = panel.sanity_steps
    assert [s.step for s in steps] == [0, 1, 2] and len(panel.sanity_tab.grid.box.children) == 3
    assert steps[0].info["spearman"] == 1.0 and steps[-1].info["spearman"] < 0.9
    assert "ρ = 1.00" in panel.sanity_tab.grid.box.children[0].children[0].value
    assert torch.equal(probe.model._fc.weight, w) and hooks.hook_count(probe.model) == 0
    panel.save(tmp_path / "sanity.png", dpi=50, view="sanity")


def test_model_without_class_scores_is_refused():
    fcn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1))
    with pytest.raises(ValueError, match="class scores"):
        cw.Saliency(cw.Probe(fcn, device="cpu", input_size=32))
