"""The dream engine (cnnwidgets.analyses.dream): objectives, presets, determinism, state, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import cnnwidgets as cw
from cnnwidgets import dream as D
from cnnwidgets.hooks import hook_count

L = "_blocks.3._project_conv"  # 40 x 28 x 28 at 224; 40 x 8 x 8 at 64
SIZE = 64


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return cw.Probe(torchvision.models.resnet18(weights=None), device="cpu")


def _state(model):
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


def _acts(probe, layers, n=2, size=SIZE):
    x = probe.prepare(cw.sample_batch(n, size))
    got = probe.capture(x, layers)
    return {k: got[k] for k in layers}


def test_objectives_compose(probe):
    other = "_blocks.5._project_conv"
    acts = _acts(probe, [L, other])
    a, b = D.channel(L, 3), D.layer(other, "squares")
    va, vb = a(acts), b(acts)
    assert va.shape == (2,)
    torch.testing.assert_close((a + 2 * b)(acts), va + 2 * vb)
    torch.testing.assert_close((a - b)(acts), va - vb)
    torch.testing.assert_close((-a + 1)(acts), 1 - va)
    torch.testing.assert_close((3 - a / 2)(acts), 3 - va / 2)
    assert set((a + 2 * b).layers) == {L, other}  # the engine truncates at the deepest of them
    with pytest.raises(TypeError, match="number"):
        a * b


def test_objective_values_match_their_definitions(probe):
    acts = _acts(probe, [L])
    t = acts[L]
    torch.testing.assert_close(D.channel(L, 5)(acts), t[:, 5].mean((1, 2)))
    torch.testing.assert_close(D.neuron(L, 5, x=2, y=3)(acts), t[:, 5, 3, 2])
    torch.testing.assert_close(D.layer(L)(acts), t.mean((1, 2, 3)))
    torch.testing.assert_close(D.channels(L, [4, 9])(acts), torch.stack([t[0, 4].mean(), t[1, 9].mean()]))
    e = torch.zeros(40)
    e[7] = 1.0
    cos = torch.nn.functional.cosine_similarity(t, e.reshape(1, -1, 1, 1), dim=1).mean((1, 2))
    torch.testing.assert_close(D.direction(L, e)(acts), cos)
    div = D.diversity(L)(acts)
    assert div.shape == (2,) and (div < 0).all()  # penalises similarity between the two images


def test_naive_preset_reproduces_seed_001(resnet):
    """Seed 001's loop (uniform noise, Adam lr 0.1 wd 1e-6, min-max rescale, normalise, hook on layer2),
    written out by hand, against the engine's "naive" preset from the same start image."""
    model = resnet.model
    g = torch.Generator().manual_seed(3)
    start = torch.rand(1, 3, SIZE, SIZE, generator=g)
    mu = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    n, h, w = 0, 3, 5
    data = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([data], lr=0.1, weight_decay=1e-6)
    feats = {}
    handle = model.layer2.register_forward_hook(lambda m, i, o: feats.__setitem__("f", o))
    losses = []
    try:
        for p in model.parameters():
            p.requires_grad = False
        model.eval()
        for _ in range(3):
            x = (data - data.min()) / (data.max() - data.min())
            model((x - mu) / std)
            loss = -feats["f"][:, n, h, w].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    finally:
        handle.remove()
        for p in model.parameters():
            p.requires_grad = True
    hand = ((data - data.min()) / (data.max() - data.min())).detach()

    # the seed's own memory layout (NCHW): step for step
    steps = list(D.dream(resnet, D.neuron("layer2", n, x=w, y=h), preset="naive", steps=4, init=start, channels_last=False,
                         fold_bn=False))
    np.testing.assert_allclose([s.loss for s in steps[:3]], losses, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(steps[2].image, hand, rtol=1e-4, atol=1e-5)  # the image after 3 updates
    # the defaults (NHWC on a CPU, BatchNorm folded): same losses; rounding may flip Adam's first move on a few pixels
    fast = list(D.dream(resnet, D.neuron("layer2", n, x=w, y=h), preset="naive", steps=4, init=start))
    np.testing.assert_allclose([s.loss for s in fast[:3]], losses, rtol=1e-4, atol=1e-5)
    assert (fast[2].image - hand).abs().gt(1e-4).float().mean() < 1e-3
    assert hook_count(model) == 0


def test_channel_objective_increases(probe):
    values = [s.objective for s in D.dream(probe, D.channel(L, 3), steps=12, size=SIZE)]
    assert np.mean(values[-3:]) > np.mean(values[:3]) + 0.5
    values = [s.objective for s in D.dream(probe, D.channel(L, 3), steps=12, size=SIZE, preset="naive")]
    assert values[-1] > values[0]


def test_deterministic_for_a_seed(probe):
    a = D.run(probe, D.channel(L, 3), steps=4, size=SIZE, seed=7)
    b = D.run(probe, D.channel(L, 3), steps=4, size=SIZE, seed=7)
    c = D.run(probe, D.channel(L, 3), steps=4, size=SIZE, seed=8)
    assert torch.equal(a.image, b.image) and a.objective == b.objective
    assert not torch.equal(a.image, c.image)


def test_truncated_forward_gives_the_objective_of_the_full_forward(probe):
    init = cw.sample_batch(1, SIZE)
    first = next(iter(D.dream(probe, D.channel(L, 3), preset="naive", steps=1, init=init)))
    x = probe.transform.normalize(D.param.minmax(init))
    full = probe.capture(x, [L], truncate=False)[L][:, 3].mean()
    assert first.objective == pytest.approx(float(full), rel=1e-5)


def test_batch_of_objectives_equals_separate_runs(probe):
    cs = [0, 5, 11, 30]
    init = cw.sample_batch(4, SIZE)
    batch = list(D.dream(probe, D.channels(L, cs), preset="naive", steps=2, init=init))
    assert batch[0].image.shape == (4, 3, SIZE, SIZE)
    for i, c in enumerate(cs):
        alone = list(D.dream(probe, D.channel(L, c), preset="naive", steps=2, init=init[i : i + 1]))
        assert batch[0].objectives[i] == pytest.approx(alone[0].objective, rel=1e-4, abs=1e-5)
        # Adam's first step is lr * sign(gradient): pixels whose gradient is ~0 may flip on rounding
        close = torch.isclose(batch[0].image[i], alone[0].image[0], rtol=1e-4, atol=1e-5)
        assert close.float().mean() > 0.999


class Boom(Exception):
    pass


def _odd_state(model):
    """A state a user might have: train mode in part, some parameters frozen."""
    model.train()
    model._blocks[0].eval()
    for i, p in enumerate(model.parameters()):
        p.requires_grad_(i % 3 != 0)


def test_model_state_restored_after_end_error_and_interrupt(probe):
    model = probe.model
    _odd_state(model)
    before = _state(model)
    try:
        D.run(probe, D.channel(L, 1), steps=2, size=SIZE)
        assert _state(model) == before and hook_count(model) == 0

        def boom(acts):
            raise Boom("from the objective")
        with pytest.raises(Boom):
            D.run(probe, D.Objective(boom, [L]), steps=2, size=SIZE)
        assert _state(model) == before and hook_count(model) == 0

        gen = D.dream(probe, D.channel(L, 1), steps=50, size=SIZE)
        next(gen)
        gen.close()  # the panel's stop button closes the generator
        assert _state(model) == before and hook_count(model) == 0
    finally:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(True)


class InterruptAt(torch.nn.Module):
    """Passes its input through; raises KeyboardInterrupt on call ``at`` (inside the model's forward)."""

    def __init__(self, at):
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return x


def test_keyboard_interrupt_inside_the_forward_leaves_no_trace(resnet):
    r = resnet.model
    model = torch.nn.Sequential(r.conv1, r.bn1, r.relu, InterruptAt(at=4), r.maxpool, r.layer1)
    p = cw.Probe(model, device="cpu")  # discovery forward is call 1; the size check is call 2
    model.train()
    before = _state(model)
    with pytest.raises(KeyboardInterrupt):
        D.run(p, D.channel("5", 3), steps=5, size=SIZE)
    assert _state(model) == before and hook_count(model) == 0


def test_bad_input_gives_clear_errors(probe):
    with pytest.raises(ValueError, match=r"Channel 40 is out of range: .* 40 channels \(0\.\.39\)"):
        D.dream(probe, D.channel(L, 40), size=SIZE)
    with pytest.raises(ValueError, match=r"outside the 8x8 map"):
        D.dream(probe, D.neuron(L, 1, x=9, y=2), size=SIZE)
    with pytest.raises(ValueError, match="not maps"):
        D.dream(probe, D.neuron("_fc", 1, x=0, y=0), size=SIZE)
    with pytest.raises(KeyError, match="Close names"):
        D.dream(probe, D.channel("_blocks.3.project", 1))
    with pytest.raises(ValueError, match="too small"):
        D.dream(probe, D.channel("_conv_head", 1), size=8)
    with pytest.raises(ValueError, match="learning rate"):
        D.dream(probe, D.channel(L, 1), lr=-1)
    with pytest.raises(ValueError, match="preset"):
        D.dream(probe, D.channel(L, 1), preset="fancy")
    assert hook_count(probe.model) == 0


def test_units_of_a_non_conv_layer_and_class_logits(probe):
    """A Linear layer has units, not maps: a channel objective on it maximises one unit."""
    values = [s.objective for s in D.dream(probe, D.class_logit(281), steps=6, size=SIZE)]  # tabby cat
    assert values[-1] > values[0]
    s = D.run(probe, D.channel("_fc", 281), steps=1, size=SIZE)
    assert np.isfinite(s.objective)


def test_nan_learning_rate_stops_and_keeps_last_good_frame(probe):
    steps = list(D.dream(probe, D.channel(L, 1), preset="naive", lr=float("inf"), steps=10, size=SIZE))
    last = steps[-1]
    assert len(steps) < 10
    assert last.message and "NaN" in last.message and "learning rate" in last.message
    assert last.image is not None and torch.isfinite(last.image).all()
    assert last.step == (steps[-2].step if len(steps) > 1 else 0)  # the last good frame (0: the start image)
    assert last.image.shape == (1, 3, SIZE, SIZE)
    assert hook_count(probe.model) == 0


def test_deepdream_changes_the_photo_towards_the_layer(probe):
    steps = list(D.deepdream(probe, cw.sample_image("chelsea"), L, steps=3, octaves=2, size=SIZE))
    assert len(steps) == 6 and steps[-1].info["octave"] == 2
    photo = D.deepdream.__globals__["photo_tensor"](cw.sample_image("chelsea"), SIZE)
    last = steps[-1].image
    assert last.shape == photo.shape and 0 <= last.min() and last.max() <= 1
    assert (last - photo).abs().mean() > 0.01  # it dreamed
    assert steps[-1].objective > steps[3].objective  # ascent within the last octave
    assert hook_count(probe.model) == 0


def test_step_images_are_their_own_step_and_the_users_model_is_never_frozen(probe):
    """Images are computed lazily, yet each step keeps the image after its own update; during the run the
    user's model keeps its train flag and requires_grad (the steps run on the Probe's private view)."""
    model = probe.model
    model.train()
    try:
        untouched, steps = [], []
        for fold in (False, True):
            for s in D.dream(probe, D.channel(L, 2), steps=4, size=SIZE, seed=3, fold_bn=fold):
                untouched.append(all(p.requires_grad for p in model.parameters()) and model.training)
                if not fold:
                    steps.append(s)
        assert untouched == [True] * 8 and hook_count(model) == 0
    finally:
        model.eval()
    again = list(D.dream(probe, D.channel(L, 2), steps=4, size=SIZE, seed=3, fold_bn=False))
    for i, (a, b) in enumerate(zip(steps, again)):  # read in order vs read after the run; train() changed nothing
        torch.testing.assert_close(b.image, a.image)
        assert b.value is b.image and b.image.device.type == "cpu"
    assert not torch.equal(again[0].image, again[3].image)


def test_a_rerun_checks_its_objective_without_another_forward(probe):
    """Layer shapes are remembered per probe and size; a bad argument still gets its clear error."""
    D.run(probe, D.channel(L, 1), steps=1, size=SIZE)
    calls = []
    real = probe.capture
    probe.capture = lambda *a, **k: (calls.append(k.get("grad")), real(*a, **k))[1]
    try:
        D.run(probe, D.channel(L, 2), steps=1, size=SIZE)
        with pytest.raises(ValueError, match="Channel 99 is out of range"):
            D.dream(probe, D.channel(L, 99), steps=1, size=SIZE)
    finally:
        del probe.capture
    # no checking forward, and the folded copy of the first run is reused (its check would capture here);
    # the step's own forward runs on that copy
    assert calls == []


class Skip32(torch.nn.Module):
    """Down five times by 2 and back up, added to the full-size features (DLA / HRNet / U-Net style): it takes
    only image sizes that are multiples of 32."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.down = torch.nn.Sequential(*[torch.nn.Conv2d(8, 8, 3, stride=2, padding=1) for _ in range(5)])
        self.head = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        a = self.stem(x)
        return self.fc(self.head(a + torch.nn.functional.interpolate(self.down(a), scale_factor=32)).mean((2, 3)))


class FixedGrid(torch.nn.Module):
    """Patches on a fixed 8x8 grid with a position embedding and a flattening head (as a vision transformer): it
    takes 64x64 images only."""

    def __init__(self):
        super().__init__()
        self.patch = torch.nn.Conv2d(3, 16, 8, stride=8)
        self.pos = torch.nn.Parameter(torch.randn(1, 16, 8, 8) * 0.1)
        self.mix = torch.nn.Conv2d(16, 16, 1)
        self.fc = torch.nn.Linear(16 * 64, 4)

    def forward(self, x):
        return self.fc(self.mix(self.patch(x) + self.pos).flatten(1))


@pytest.mark.parametrize("model_cls", [Skip32, FixedGrid])
def test_regularized_dreams_run_on_models_that_take_only_some_sizes(model_cls):
    torch.manual_seed(0)
    p = cw.Probe(model_cls(), device="cpu", input_size=64, mean=0.5, std=0.25)
    layer = "head" if model_cls is Skip32 else "mix"
    steps = list(D.dream(p, D.channel(layer, 1), steps=24, size=64, seed=1))  # pad and random scale: 76..84 px
    assert len(steps) == 24 and all(np.isfinite(s.objective) for s in steps)
    assert steps[-1].image.shape[-2:] == (64, 64)
    first, last = (float(D.evaluate(p, D.channel(layer, 1), s.image)[0]) for s in (steps[0], steps[-1]))
    assert last > first  # the image itself (no transforms) excites the channel more


def test_a_size_the_model_refuses_is_named_for_what_it_is():
    torch.manual_seed(0)
    skip = cw.Probe(Skip32(), device="cpu", input_size=64, mean=0.5, std=0.25)
    with pytest.raises(ValueError, match="needs image sizes that are multiples of 32; 50x50 is not. Use size=64"):
        D.run(skip, D.channel("head", 1), steps=1, size=50)
    fixed = cw.Probe(FixedGrid(), device="cpu", input_size=64, mean=0.5, std=0.25)
    with pytest.raises(ValueError, match="takes only 64x64 images .* not 48x48. Use size=64") as e:
        D.run(fixed, D.channel("mix", 1), steps=1, size=48)
    assert "too small" not in str(e.value)
    with pytest.raises(ValueError, match="too small for Sequential"):
        small = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5), torch.nn.Conv2d(4, 4, 5), torch.nn.Conv2d(4, 4, 5))
        D.run(cw.Probe(small, device="cpu", input_size=32, mean=0.5, std=0.25), D.channel("2", 0), steps=1, size=10)


def test_a_neuron_dreams_where_it_was_picked(probe):
    """The position is on the map of the dream's own image: the transforms pad it (a larger map each step), yet the
    unit that fires most in the finished image is the one picked (not its neighbour up and left)."""
    for x, y in ((1, 1), (6, 2)):
        last = D.run(probe, D.neuron(L, 3, x, y), steps=40, size=SIZE, seed=0)
        acts = probe.capture(probe.transform.normalize(last.image), [L])[L][0, 3]
        assert acts.shape == (8, 8)
        i = int(acts.flatten().argmax())
        assert (i % 8, i // 8) == (x, y)
