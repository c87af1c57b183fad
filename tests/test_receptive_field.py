"""Receptive fields: the box a unit sees, by arithmetic or by gradient, against a brute-force gradient measured on the
model itself (a hook on the user's module here in the test, the model in eval mode, several noise images)."""
import warnings

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import cnnwidgets as cw
from cnnwidgets import hooks
from cnnwidgets.analyses import receptive_field as R

warnings.filterwarnings("ignore", category=UserWarning)


def brute_force_box(model, module, x, y, xx):
    """Bounding box of the input pixels whose gradient of unit (y, xx) of ``module`` (summed over channels and
    images) is nonzero: the model itself, a hook of the test's own."""
    got = {}
    h = module.register_forward_hook(lambda m, i, o: got.__setitem__("out", o))
    try:
        model.eval()
        x = x.clone().requires_grad_(True)
        model(x)
        got["out"][:, :, y, xx].sum().backward()
    finally:
        h.remove()
    g = x.grad.abs().sum((0, 1))
    rows, cols = torch.nonzero(g.sum(1)).flatten(), torch.nonzero(g.sum(0)).flatten()
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def noise(n, size, c=3):
    return torch.rand(n, c, size, size, generator=torch.Generator().manual_seed(1))


def units(shape):
    h, w = shape[1:]
    return [(0, 0), (h // 2, w // 2), (h - 1, w - 1), (min(1, h - 1), w // 3)]


CASES = {
    "vgg11": (lambda: torchvision.models.vgg11(), 96, ["features.0", "features.6", "features.13"]),
    # layer3.0.downsample.0 is a shortcut: the unit sees only the strided 1x1's field, not the block's
    "resnet18": (lambda: torchvision.models.resnet18(), 128, ["layer1.1.conv2", "layer2.0", "layer3.0.downsample.0",
                                                               "layer3.1.conv1"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_arithmetic_equals_brute_force_gradient_on_random_weights(name):
    make, size, layers = CASES[name]
    torch.manual_seed(0)
    model = make()
    probe = cw.Probe(model, input_size=size)
    x = noise(4, size)
    before = hooks.hook_count(model)
    for layer in layers:
        rf = R.receptive_field(probe, layer)
        assert rf.method == "arithmetic", (layer, rf)
        for y, xx in units(probe.layer(layer).shape):
            # (VGG's conv layers alone run the brute force: its classifier comes after them)
            run = model.features if name == "vgg11" else model
            assert rf.box(y, xx) == brute_force_box(run, model.get_submodule(layer), x, y, xx), (layer, y, xx)
    assert hooks.hook_count(model) == before


def test_efficientnet_lite0_explicit_pads_arithmetic_and_measured():
    """The real ImageNet model: its convolutions pad with a ZeroPad2d module (asymmetric in the stem)."""
    model = cw.load_model()
    probe = cw.Probe(model)
    size = probe.transform.input_size[0]
    x = noise(2, size)
    for layer in ["_conv_stem", "_blocks.2._depthwise_conv", "_blocks.5._project_conv"]:
        rf = R.receptive_field(probe, layer)
        assert rf.method == "arithmetic"
        for y, xx in units(probe.layer(layer).shape)[:3]:
            assert rf.box(y, xx) == brute_force_box(model, model.get_submodule(layer), x, y, xx), (layer, y, xx)
    # measured at the centre unit and shifted by the stride: the same box away from the borders
    g = R.receptive_field(probe, "_blocks.5._project_conv", method="gradient")
    a = R.receptive_field(probe, "_blocks.5._project_conv")
    assert g.method == "gradient" and g.stride == a.stride
    assert g.box(10, 12) == a.box(10, 12)


class Upsampler(nn.Module):
    """A model whose geometry is in its forward (an upsampling and a functional pooling): no arithmetic."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 5, padding=2)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.a(x))
        x = nn.functional.max_pool2d(x, 2)
        x = nn.functional.interpolate(x, scale_factor=2.0)
        x = self.b(x)
        return self.head(x.mean((2, 3)))


def test_unclear_geometry_is_measured_by_gradient_and_said():
    torch.manual_seed(0)
    model = Upsampler()
    probe = cw.Probe(model, input_size=32, mean=0, std=1)
    with pytest.raises(ValueError, match="not clear"):
        R.receptive_field(probe, "b", method="arithmetic")
    rf = R.receptive_field(probe, "b")
    assert rf.method == "gradient"
    assert "measured from the gradient" in rf.describe()
    x = noise(4, 32)
    assert rf.box(16, 16) == brute_force_box(model, model.b, x, 16, 16)
    # a fraction of the gradient mass gives a smaller box inside the support
    inner = R.receptive_field(probe, "b", method="gradient", mass=0.5)
    t, l, b, r = inner.box(16, 16)
    T, L, B, Rr = rf.box(16, 16)
    assert T <= t < b <= B and L <= l < r <= Rr and (b - t) < (B - T)
    # a vector layer sees the whole image
    whole = R.receptive_field(probe, "head")
    assert whole.method == "whole image" and whole.box(None, None) == (0, 0, 32, 32)


def test_patch_is_the_crop_and_bad_input_is_said():
    probe = cw.Probe(torchvision.models.resnet18(), input_size=64)
    rf = R.receptive_field(probe, "layer1.0.conv1")  # 19x19 field, stride 4, offset -9
    img = torch.arange(3 * 64 * 64, dtype=torch.float32).reshape(3, 64, 64)
    crop = R.patch(img, rf, 5, 6)
    t, l, b, r = rf.box(5, 6)
    assert (t, l) == (5 * 4 - 9, 6 * 4 - 9) and crop.shape == (3, b - t, r - l)
    assert torch.equal(crop, img[:, t:b, l:r])
    assert R.patch(img, rf, 0, 0).shape[-2:] == (10, 10)  # clipped at the top-left corner
    with pytest.raises(ValueError, match="probe.display"):
        R.patch(torch.zeros(3, 100, 100), rf, 0, 0)
    with pytest.raises(ValueError, match="method must be"):
        R.receptive_field(probe, "layer1.0.conv1", method="exact")
