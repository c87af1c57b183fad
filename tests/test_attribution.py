"""Attribution maps (cnnwidgets.analyses.attribution): correctness against autograd and the axioms,
model left as it was, clear errors. Small inputs (96 px) and few samples keep it fast on a CPU."""
import numpy as np
import pytest
import torch
from torch import nn

import cnnwidgets as cw
from cnnwidgets import hooks
from cnnwidgets.analyses import attribution as A
from cnnwidgets.analyses import attribution_display as D

FAST = {"smoothgrad": {"samples": 4, "batch_size": 4}, "integrated_gradients": {"steps": 8},
        "occlusion": {"window": 32, "stride": 32}, "lime": {"samples": 16, "segments": 12}}


@pytest.fixture(scope="module")
def probe():
    return cw.Probe(cw.load_model(), device="cpu", input_size=96)


@pytest.fixture(scope="module")
def image():
    return cw.sample_image("chelsea")


def state(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()], hooks.hook_count(model))


def logit(probe, x, target):
    with torch.no_grad():
        return float(probe.model(probe.transform.normalize(x))[0, target])


def test_saliency_is_the_homework_map(probe, image):
    a = A.attribute(probe, image, "saliency")
    x = A.pixels(probe, image).clone().requires_grad_()
    assert not probe.model.training  # load_model gives it in eval mode
    out = probe.model(probe.transform.normalize(x))
    assert a.target == int(out[0].argmax())  # default target: the top-1 class
    out[0, a.target].backward()
    expected = x.grad[0].abs().amax(0).numpy()  # |d score / d pixel|, max over colour channels
    assert a.map.shape == (96, 96)
    np.testing.assert_allclose(a.map, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.raw, x.grad[0].numpy(), rtol=1e-4, atol=1e-6)
    assert a.target_name == probe.class_name(a.target) and 0 < a.prob <= 1


@pytest.mark.parametrize("baseline", ["black", "blurred"])
def test_integrated_gradients_completeness(probe, image, baseline):
    a = A.attribute(probe, image, "integrated_gradients", baseline=baseline, steps=64, batch_size=32)
    x = A.pixels(probe, image)
    diff = logit(probe, x, a.target) - logit(probe, A.make_baseline(probe, x, baseline), a.target)
    total = float(a.raw.sum())
    assert abs(total - diff) <= 0.05 * abs(diff) + 0.05, (total, diff)
    assert a.delta is not None and a.delta <= 0.05 * abs(diff) + 0.05


def test_baselines(probe):
    x = torch.rand(1, 3, 16, 16)
    assert A.make_baseline(probe, x, "black").abs().max() == 0
    mean = A.make_baseline(probe, x, "mean")
    assert torch.allclose(probe.transform.normalize(mean), torch.zeros_like(x), atol=1e-6)
    u1, u2 = A.make_baseline(probe, x, "uniform", seed=1), A.make_baseline(probe, x, "uniform", seed=1)
    assert torch.equal(u1, u2) and 0 <= float(u1.min()) and float(u1.max()) <= 1
    assert A.make_baseline(probe, x, "blurred").std() < x.std()
    with pytest.raises(ValueError, match="black, blurred"):
        A.make_baseline(probe, x, "white")


def test_gradcam_has_the_layers_size_before_upsampling(probe, image):
    a = A.attribute(probe, image, "gradcam")
    layer = probe.layer(a.layer)
    assert a.layer == A.default_cam_layer(probe).name
    assert a.coarse.shape == layer.shape[1:] and a.map.shape == (96, 96)
    assert a.map.min() >= 0  # ReLU on the class-weighted sum
    mid = probe.layers[len(probe.layers) // 2]
    b = A.attribute(probe, image, "gradcam", layer=mid.name)
    assert b.coarse.shape == mid.shape[1:] and b.layer == mid.name


def same_up_to_rounding(a, b):
    """Batched and per-sample float32 convolutions round differently; ReLU6's kinks then flip a handful
    of pixels' gradients. Equal means: relative L2 error < 1%, and 99.5% of values within 0.1%."""
    assert np.linalg.norm(a - b) <= 1e-2 * np.linalg.norm(b)
    close = np.isclose(a, b, rtol=1e-3, atol=1e-3 * np.abs(b).max())
    assert close.mean() >= 0.995, close.mean()


def test_smoothgrad_batched_equals_loop(probe, image):
    kw = dict(samples=6, noise=0.1, seed=3)
    batched = A.attribute(probe, image, "smoothgrad", batch_size=6, **kw)
    looped = A.attribute(probe, image, "smoothgrad", batch_size=1, **kw)
    same_up_to_rounding(batched.raw, looped.raw)
    # and both equal a hand-written loop over the same noisy copies
    x = A.pixels(probe, image)
    grads = []
    for xi in A.smoothgrad_noise(x, 6, 0.1, 3):
        xi = xi[None].clone().requires_grad_()
        probe.model(probe.transform.normalize(xi))[0, batched.target].backward()
        grads.append(xi.grad[0])
    same_up_to_rounding(batched.raw, torch.stack(grads).mean(0).numpy())
    assert not np.allclose(batched.raw, A.attribute(probe, image, "smoothgrad", samples=6, noise=0.1, seed=4).raw)


def test_smoothgrad_yields_partial_maps(probe, image):
    steps = list(A.attribute_steps(probe, image, "smoothgrad", samples=4, batch_size=2))
    done = [s.step for s in steps]
    assert done == sorted(done) and done[0] == 1 and done[-1] == 4 and {s.total for s in steps} == {4}
    assert all(b - a <= 2 for a, b in zip(done, done[1:]))  # chunks of at most batch_size samples
    assert all(s.value is not None and s.value.done == s.step for s in steps)
    assert steps[0].value.partial and not steps[-1].value.partial and steps[-1].value.method == "smoothgrad"
    assert steps[0].info["status"] == "SmoothGrad: 1 / 4 samples"


@pytest.mark.parametrize("method", A.METHODS)
def test_every_method_leaves_the_model_as_it_was(probe, image, method):
    m = probe.model
    m._fc.weight.requires_grad_(False)  # a user's partly frozen model
    m._blocks[0].train()  # and a module in train mode
    try:
        before = state(m)
        a = A.attribute(probe, image, method, target=281, **FAST.get(method, {}))
        assert state(m) == before and hooks.hook_count(m) == 0
        assert a.target == 281 and a.map.shape == (96, 96) and np.isfinite(a.map).all()
        assert a.raw.shape[-2:] == (96, 96) and np.abs(a.map).max() > 0
        assert a.signed == (method not in ("saliency", "smoothgrad", "gradcam"))
    finally:
        m._fc.weight.requires_grad_(True)
        m.eval()


class Flaky(nn.Module):
    """A small classifier whose forward raises when armed (an error inside Captum's hooked forward)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
        self.armed = False

    def forward(self, x):
        f = self.features(x)
        if self.armed:
            raise RuntimeError("boom")
        return self.head(f)


@pytest.mark.parametrize("method", ["saliency", "gradcam", "guided_gradcam", "integrated_gradients"])
def test_model_restored_after_an_error(method):
    model = Flaky().train()
    model.head[2].bias.requires_grad_(False)
    p = cw.Probe(model, device="cpu", input_size=32)
    before = state(model)
    model.armed = True
    with pytest.raises(RuntimeError, match="boom"):
        A.attribute(p, torch.rand(3, 32, 32), method, target=1)
    assert state(model) == before and hooks.hook_count(model) == 0
    assert not p._lock._is_owned()


def test_bad_target(probe, image):
    with pytest.raises(ValueError, match=r"out of range.*1000 classes \(0\.\.999\)"):
        A.attribute(probe, image, "saliency", target=1000)
    with pytest.raises(ValueError, match="out of range"):
        A.attribute(probe, image, "gradcam", target=-1)
    with pytest.raises(TypeError, match="class index"):
        A.attribute(probe, image, "saliency", target="cat")
    assert hooks.hook_count(probe.model) == 0


def test_bad_method_and_options(probe, image):
    with pytest.raises(ValueError, match="Did you mean 'smoothgrad'"):
        A.attribute(probe, image, "smoothgrd")
    with pytest.raises(TypeError, match="steps"):
        A.attribute(probe, image, "saliency", steps=3)


def test_gradcam_layer_not_spatial(probe, image):
    with pytest.raises(ValueError, match="spatial maps.*'_fc' outputs 1000"):
        A.attribute(probe, image, "gradcam", layer="_fc")
    with pytest.raises(ValueError, match="called 2 times"):
        A.attribute(probe, image, "guided_gradcam", layer="_swish")
    with pytest.raises(KeyError, match="Close names"):
        A.attribute(probe, image, "gradcam", layer="_conv_hed")
    assert hooks.hook_count(probe.model) == 0


def test_model_without_class_scores():
    fcn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 1))  # 4-D output: a segmenter
    p = cw.Probe(fcn, device="cpu", input_size=32)
    with pytest.raises(ValueError, match=r"outputs 2×32×32 per image, not a vector of class scores"):
        A.attribute(p, torch.rand(3, 32, 32), "saliency")
    with pytest.raises(ValueError, match="class scores"):
        A.top_classes(p, torch.rand(3, 32, 32))


def test_image_of_the_wrong_size_for_a_fixed_size_model():
    fixed = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 32 * 32, 10))
    p = cw.Probe(fixed, device="cpu", input_size=32)
    with pytest.raises(ValueError, match=r"64×64 but .* takes 32×32"):
        A.attribute(p, torch.rand(3, 64, 64), "saliency", resize=False)
    a = A.attribute(p, torch.rand(3, 64, 64), "saliency")  # resized by the probe: fine
    assert a.map.shape == (32, 32)
    assert A.attribute(p, torch.rand(3, 32, 32), "gradcam", resize=False).coarse.shape == (32, 32)


def test_predictions_and_class_search(probe, image):
    top = A.top_classes(probe, image, 5)
    assert len(top) == 5 and all(top[i][2] >= top[i + 1][2] for i in range(4))
    assert {i for i, *_ in top} & {281, 282, 285}  # a cat
    found = A.find_classes(probe, "cat")
    assert found[0][1].endswith("cat") and (282, "tiger cat") in found
    assert A.find_classes(probe, "tigr cat")[0] == (282, "tiger cat")  # typo
    assert A.find_classes(probe, "340") == [(340, probe.class_name(340))]


def test_display_maths():
    raw = np.zeros((3, 4, 4), np.float32)
    raw[0, 0, 0], raw[1, 0, 0], raw[2, 1, 1] = -3.0, 1.0, 2.0
    np.testing.assert_array_equal(D.channel_reduce(raw, "abs", gradient=True)[:2, :2], [[3, 0], [0, 2]])
    np.testing.assert_array_equal(D.channel_reduce(raw, "signed")[:2, :2], [[-2, 0], [0, 2]])
    m = np.arange(100, dtype=float)
    m[-1] = 1e6  # one hot pixel
    unit, hi = D.normalize_map(m, "abs", 98)
    assert hi == pytest.approx(np.percentile(m, 98)) and unit.max() == 1 and unit[50] > 0.4
    s, hi = D.normalize_map(np.array([-2.0, 0.0, 2.0]), "signed", 100)
    np.testing.assert_allclose(s, [0, 0.5, 1])
    img = np.full((4, 4, 3), 200, np.uint8)
    heat = np.zeros((4, 4, 3), np.uint8)
    assert (D.overlay(img, heat, 0.0) == 200).all() and (D.overlay(img, heat, 1.0) == 0).all()
    assert (D.overlay(img, heat, 0.5) == 100).all()
    rgb, _, cmap = D.render_map(np.array([[-1.0, 1.0]]), sign="signed")
    assert cmap == "RdBu_r" and rgb.shape == (1, 2, 3)


def test_sanity_check_maps_change_and_users_model_untouched(probe, image):
    weights = {k: v.clone() for k, v in probe.model.state_dict().items()}
    steps = list(A.sanity_check(probe, image, "gradcam", steps=3))
    assert steps[0].info["spearman"] == 1.0 and steps[0].step == 0
    assert len(steps) == 4 and steps[1].info["randomized"] == ["_fc"]  # the logits layer first
    assert len(steps[-1].info["randomized"]) > len(steps[-2].info["randomized"])
    assert min(s.info["spearman"] for s in steps[1:]) < 0.9  # the map changes
    assert all(s.value.target == steps[0].value.target for s in steps)
    for k, v in probe.model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert hooks.hook_count(probe.model) == 0


@pytest.fixture(scope="module")
def vgg():
    return cw.Probe(cw.load_model("vgg16", pretrained=False), device="cpu", input_size=64)


@pytest.fixture(scope="module")
def resnet():
    return cw.Probe(cw.load_model("resnet18", pretrained=False), device="cpu", input_size=64)


def test_torchvision_models(vgg, resnet):
    img = cw.sample_image("coffee")
    assert A.default_cam_layer(resnet).name == "layer4"  # the last block's output, after the residual + ReLU
    assert A.default_cam_layer(vgg).name == "features.29"  # the last conv's ReLU
    for p in (vgg, resnet):
        before = state(p.model)
        for method in ("saliency", "guided_gradcam"):  # guided backprop hooks in-place ReLUs
            a = A.attribute(p, img, method, target=3)
            assert a.map.shape == (64, 64) and np.isfinite(a.raw).all()
        assert state(p.model) == before


def test_lime_is_captums_lime_on_the_same_draws_without_touching_the_global_generator(probe, image):
    """Ours draws its superpixel choices from its own generator (Captum's draws them, and a DataLoader seed, from the
    global one: the user's random stream). Given the same choices, Captum's Lime gives the same map."""
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime
    from captum.attr._core.lime import get_exp_kernel_similarity_function

    state = torch.random.get_rng_state()
    ours = A.attribute(probe, image, "lime", target=281, samples=64, segments=20)
    assert torch.equal(torch.random.get_rng_state(), state)
    seg, k = ours.segments, int(ours.segments.max()) + 1
    gen = torch.Generator().manual_seed(0)
    lime = Lime(probe.pixel_model(), interpretable_model=SkLearnRidge(alpha=1.0),
                similarity_func=get_exp_kernel_similarity_function("cosine", kernel_width=0.25),
                perturb_func=lambda inp, **kw: torch.bernoulli(torch.full((1, k), 0.5), generator=gen).long())
    x = A.pixels(probe, image)
    mask = torch.as_tensor(seg)[None, None].expand(1, 3, *seg.shape).contiguous()
    theirs = lime.attribute(x, target=281, feature_mask=mask, baselines=A.make_baseline(probe, x, "mean"), n_samples=64,
                            perturbations_per_eval=32)
    np.testing.assert_allclose(ours.raw, theirs[0].numpy(), atol=1e-5 * float(np.abs(ours.raw).max()))
