"""Every torchvision classification model, and a handful of timm ones, through every analysis: random weights, the
smallest input each model takes, and one time budget for the file (the cheapest models first, so a slow machine
skips the largest, saying so). Per model: the Probe, activations at the first, middle and last layer, a slider move
in the FeatureMaps panel, saliency and Grad-CAM, 3 dream steps and CKA of 4 images."""
import gc
import os
import time

import numpy as np
import pytest
import torch
import torchvision.models as tvm

import cnnwidgets as cw
from cnnwidgets.analyses import attribution as A
from cnnwidgets.analyses import cka
from cnnwidgets.analyses import dream as D
from cnnwidgets.hooks import hook_count
from cnnwidgets.widgets.featuremaps import FeatureMaps

#: seconds for the whole table; models past it are skipped (and say so). CNNW_TABLE_BUDGET=100000 runs them all.
BUDGET_S = float(os.environ.get("CNNW_TABLE_BUDGET", 170))
SIZES = (32, 64, 96, 128, 224)  #: input sizes tried, smallest first
#: models left out, and why
SKIP = {
    "vit_h_14": "ViT-H/14: 633M parameters, 2.5 GB of random weights and 1 TFLOP per forward at its fixed 518 px",
    "regnet_y_128gf": "RegNetY-128GF: 645M parameters (2.6 GB) and minutes of weight initialisation on 2 cores",
    "vit_l_16": "ViT-L/16 runs only at 224 px: 62 GFLOPs per forward, ~40 s of this table on 2 cores "
                "(vit_l_32 covers ViT-L)",
}
_START = [None]


def _ops(name):
    return tvm.get_model_weights(name).DEFAULT.meta.get("_ops", 0.0)


TORCHVISION = sorted(tvm.list_models(module=tvm), key=_ops)
TIMM = ["resnet18", "convnext_atto", "efficientnet_b0", "vit_tiny_patch16_224", "swin_tiny_patch4_window7_224",
        "deit_tiny_distilled_patch16_224"]


def budget_left():
    if _START[0] is None:
        _START[0] = time.perf_counter()
    return BUDGET_S - (time.perf_counter() - _START[0])


@pytest.fixture(scope="module")
def images():
    return [cw.sample_image(n) for n in ("chelsea", "coffee", "astronaut", "rocket")]


def smallest_probe(model):
    last = None
    for s in SIZES:
        try:
            return cw.Probe(model, device="cpu", input_size=s)
        except RuntimeError as e:
            last = e
    raise last


def exercise(model, images, expect_blocks=None):
    """Every analysis on ``model``; returns the probe."""
    torch.manual_seed(0)
    for m in model.modules():  # torchvision's ViT (and some heads) start at zero: make the class scores depend on x
        if isinstance(m, torch.nn.Linear) and m.weight.abs().max() == 0:
            torch.nn.init.normal_(m.weight, std=0.02)
    p = smallest_probe(model)
    assert len(p.layers) >= 1
    if expect_blocks:
        assert sum(l.reshape is not None for l in p.layers) >= expect_blocks
    first, mid, last = p.layers[0], p.layers[len(p.layers) // 2], p.layers[-1]
    acts = p.activations(images[0], [first.name, mid.name, last.name])
    for l in (first, mid, last):
        assert acts[l.name].shape == (1, *l.shape) and torch.isfinite(acts[l.name]).all(), l.label
    fm = FeatureMaps(p, images[0])
    before = fm.grid_image.value
    fm.slider.value = last.name
    assert fm.layer == last.name and fm.grid_image.value != before
    fm.close()  # a panel's widgets stay registered (and hold the model) until closed
    for method in ("saliency", "gradcam"):
        a = A.attribute(p, images[0], method, target=1)
        assert a.map.shape == tuple(p.transform.input_size) and np.isfinite(a.raw).all(), method
    step = D.run(p, D.channel(mid.name, 0), steps=3)
    assert np.isfinite(step.objective) and step.image.shape[0] == 1
    names = [first.name, mid.name, last.name]
    r = cka.layer_similarity(p, images, names, estimator="biased")
    assert r.matrix.shape == (3, 3) and np.isfinite(r.matrix).all()
    assert hook_count(model) == 0
    return p


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_model(name, images):
    if name in SKIP:
        pytest.skip(SKIP[name])
    if budget_left() < 0:
        pytest.skip(f"this file's time budget ({BUDGET_S:.0f} s) is spent; {name} is among the costliest models "
                    f"({_ops(name):.1f} GFLOPs at 224 px)")
    model = cw.load_model(name, pretrained=False)
    try:
        blocks = 12 if name.startswith("vit_b") else (4 if name.startswith("swin") else None)
        p = exercise(model, images, blocks)
        if name in ("vit_b_16", "swin_t"):
            kinds = {l.reshape.kind for l in p.layers if l.reshape is not None}
            assert kinds == ({"tokens"} if name == "vit_b_16" else {"channels_last"})
    finally:
        del model
        gc.collect()


@pytest.mark.parametrize("name", TIMM)
def test_timm_model(name, images):
    pytest.importorskip("timm", reason="timm is an optional dependency (the dev extra installs it)")
    if budget_left() < -60:
        pytest.skip(f"this file's time budget ({BUDGET_S:.0f} s, and a minute for timm) is spent")
    model = cw.load_model(f"timm:{name}", pretrained=False)
    try:
        assert model.cnnwidgets_info.name == f"timm:{name}" and model.cnnwidgets_info.classes[0] == "tench"
        blocks = 12 if ("vit" in name or "deit" in name) else (4 if "swin" in name else None)
        p = exercise(model, images, blocks)
        if "deit" in name:
            assert p.layers[-1].reshape.extra == 2  # class and distillation tokens set aside
    finally:
        del model
        gc.collect()
