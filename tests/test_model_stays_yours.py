"""Your model stays yours: jobs never touch the user's module, whatever they do and however they end.

The proof the README promises: a training loop in one thread runs exactly as it would without cnnwidgets
(same losses, bit for bit) while every kind of job runs in another thread on the same model, and each
job's results equal a run of it alone on the same weights.
"""
from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnwidgets as cw
from cnnwidgets import dream as D
from cnnwidgets.analyses import attribution as A
from cnnwidgets.analyses import cka, embedding, sanity
from cnnwidgets.hooks import hook_count

SIZE = 32
CLASSES = [f"class {c}" for c in "ABCDEFGHIJ"]


class Net(nn.Module):
    """A small CNN as a student writes one: BatchNorm, in-place ReLUs, dropout, a linear head."""

    def __init__(self, bn_momentum=0.1):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8, momentum=bn_momentum)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(16, momentum=bn_momentum)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(self.drop(self.pool(x).flatten(1)))


def make(bn_momentum=0.1) -> Net:
    torch.manual_seed(0)
    return Net(bn_momentum)


def batches():
    g = torch.Generator().manual_seed(1)
    return [(torch.rand(16, 3, SIZE, SIZE, generator=g), torch.randint(0, 10, (16,), generator=g)) for _ in range(8)]


def trainer(model, lr):
    """The user's loop, one step per ``next()``: train mode, dropout from the global generator, SGD."""
    data = batches()
    torch.manual_seed(123)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    i = 0
    while True:
        model.train()
        x, y = data[i % len(data)]
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        i += 1
        yield loss.item(), model.training and all(p.requires_grad for p in model.parameters())


def probe_of(model):
    return cw.Probe(model, device="cpu", input_size=SIZE, mean=0.5, std=0.25, classes=CLASSES)


IMAGES = cw.sample_batch(12, size=SIZE)
IMAGE = IMAGES[0]

#: every kind of job, each returning something comparable
JOBS = {
    "activations": lambda p: p.activations(IMAGES[:3], ["conv1", "conv2"]),
    "cka": lambda p: cka.layer_similarity(p, IMAGES, estimator="biased").matrix,
    "features": lambda p: embedding.features(p, IMAGES, ["conv2"]),
    "top_images": lambda p: embedding.top_images(p, IMAGES, "conv2", 3, k=4).scores,
    "dream_folded": lambda p: D.run(p, D.channel("conv2", 1), steps=5, size=SIZE, seed=2).image,
    "dream_plain": lambda p: D.run(p, D.channel("conv2", 1), steps=5, size=SIZE, seed=2, fold_bn=False).image,
    "deepdream": lambda p: list(D.deepdream(p, IMAGE, "conv2", steps=2, octaves=2, size=SIZE))[-1].image,
    "sanity": lambda p: [s.value.map for s in sanity.sanity_check(p, IMAGE, "saliency", target=3, steps=3)],
    **{m: (lambda p, m=m, o=opts: A.attribute(p, IMAGE, m, target=3, **o).raw) for m, opts in {
        "saliency": {}, "smoothgrad": {"samples": 4, "batch_size": 2}, "integrated_gradients": {"steps": 4},
        "gradcam": {"layer": "conv2"}, "guided_gradcam": {"layer": "conv2"},
        "occlusion": {"window": 8, "stride": 8}, "lime": {"samples": 20, "segments": 10}}.items()},
}


def _equal(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _equal(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _equal(x, y)
    else:
        torch.testing.assert_close(torch.as_tensor(np.asarray(a)), torch.as_tensor(np.asarray(b)), rtol=1e-5, atol=1e-6)


def _in_thread(job, probe, stop, results, errors):
    def loop():
        try:
            while not stop.is_set():
                results.append(job(probe))
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def test_a_training_loop_runs_bit_for_bit_the_same_while_every_kind_of_job_runs_beside_it():
    steps = 6
    solo = trainer(make(), lr=0.05)
    expected = [next(solo) for _ in range(steps * len(JOBS))]

    model = make()
    probe = probe_of(model)
    mine = trainer(model, lr=0.05)
    got = []
    for name, job in JOBS.items():
        stop, results, errors = threading.Event(), [], []
        t = _in_thread(job, probe, stop, results, errors)
        while not results and not errors and t.is_alive():  # the job is under way before the user's steps
            got.append(next(mine))
            if len(got) % steps == 0:
                break
        while len(got) % steps:
            got.append(next(mine))
        stop.set()
        t.join(60)
        assert not errors, f"{name}: {errors[0]!r}"
        assert hook_count(model) == 0, name
    assert [g[1] for g in got] == [True] * len(got)  # every step saw train mode and trainable weights
    assert [g[0] for g in got] == [e[0] for e in expected]  # the same losses, bit for bit


@pytest.mark.parametrize("name", list(JOBS))
def test_a_job_beside_a_training_loop_gives_what_it_gives_alone(name):
    """The loop writes every weight and buffer in place, as training does (lr=0, BatchNorm momentum 0 keep the
    values), and its forwards run in train mode: the job, on the same weights, gives its solo result."""
    model = make(bn_momentum=0.0)
    probe = probe_of(model)
    job = JOBS[name]
    alone = job(probe)
    loop = trainer(model, lr=0.0)
    stop, results, errors = threading.Event(), [], []
    t = _in_thread(job, probe, stop, results, errors)
    steps = 0
    while (len(results) < 2 or steps < 5) and not errors and steps < 20000:
        loss, ok = next(loop)
        assert ok and np.isfinite(loss)
        steps += 1
    stop.set()
    t.join(60)
    assert not errors, repr(errors[0])
    for r in results:
        _equal(r, alone)
    assert model.training and hook_count(model) == 0


def test_the_issue_repro_a_users_forward_while_a_cka_panel_computes():
    """cw.CKAHeatmap(cw.Probe(m), images); m(x) -- no StopForward, no eval flag, no crash, the right values.
    (BatchNorm momentum 0: the user's train-mode forwards then leave the running statistics, so the values can be
    compared with a run alone; with momentum > 0 every such forward changes the model, and the job sees it.)"""
    model = make(bn_momentum=0.0)
    model.train()
    probe = probe_of(model)
    images = cw.sample_batch(48, size=SIZE)
    hm = cw.CKAHeatmap(probe, images, run_mode="thread", batch_size=8)
    seen = []
    while hm.controls.runner is not None and hm.controls.runner.running:
        with torch.no_grad():
            out = model(torch.rand(2, 3, SIZE, SIZE))
        seen.append((tuple(out.shape), model.training))
    hm.controls.join(60)
    assert seen and set(seen) == {((2, 10), True)}
    assert hm.result is not None and hm.result.final
    np.testing.assert_allclose(hm.result.matrix, cka.layer_similarity(probe, images, batch_size=8).matrix, atol=1e-6)
    hm.close()


def _state(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()], hook_count(model))


def test_overlapping_interrupted_abandoned_and_collected_dreams_leave_the_model_as_it_was():
    model = make()
    model.train()
    model.fc.weight.requires_grad_(False)  # a partly frozen model
    probe = probe_of(model)
    before = _state(model)
    obj = D.channel("conv2", 0)
    g1 = D.dream(probe, obj, steps=50, size=SIZE)
    next(g1)
    g2 = D.dream(probe, obj, steps=50, size=SIZE, fold_bn=False)
    next(g2)
    assert _state(model) == before  # two runs under way: nothing changed
    g1.close()
    next(g2)
    assert _state(model) == before
    g2.close()
    kept = D.dream(probe, obj, steps=50, size=SIZE)
    next(kept)  # started and kept, not closed
    assert _state(model) == before
    g3 = D.dream(probe, obj, steps=50, size=SIZE)
    next(g3)
    del g3  # abandoned: garbage-collected
    gc.collect()
    assert _state(model) == before
    gen = D.deepdream(probe, IMAGE, "conv2", steps=5, octaves=2, size=SIZE)
    next(gen)
    assert _state(model) == before
    del gen, kept
    gc.collect()
    assert _state(model) == before


def test_a_checkpoint_of_another_architecture_changes_nothing(tmp_path):
    import torchvision

    torch.manual_seed(0)
    r18 = torchvision.models.resnet18()
    before = {k: v.clone() for k, v in r18.state_dict().items()}
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pt")
    with pytest.raises(ValueError, match="(?s)does not match.*unchanged.*in the checkpoint but not in the model.*layer1.2"):
        cw.load_checkpoint(r18, tmp_path / "r34.pt")
    torch.save(torchvision.models.resnet18(num_classes=10).state_dict(), tmp_path / "r18-10.pt")
    with pytest.raises(ValueError, match=r"shapes differ \(2\): fc.weight: checkpoint \(10, 512\), model \(1000, 512\)") as e:
        cw.load_checkpoint(r18, tmp_path / "r18-10.pt")
    assert e.value.__cause__ is None and e.value.__suppress_context__
    for k, v in r18.state_dict().items():
        assert torch.equal(v, before[k]), k
    good = torchvision.models.resnet18().state_dict()
    torch.save(good, tmp_path / "ok.pt")
    cw.load_checkpoint(r18, tmp_path / "ok.pt")
    assert all(torch.equal(v, good[k]) for k, v in r18.state_dict().items())


# --- captures are copies --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return cw.Probe(cw.load_model("vgg11", pretrained=False), device="cpu", input_size=64)


def test_captures_are_not_overwritten_by_a_later_in_place_relu(vgg):
    """features.0 is followed by ReLU(inplace=True): a capture of features.0 and features.3 must keep the
    convolution's negative values, in the no-grad path, the grad path and the cached activations."""
    x = vgg.prepare(cw.sample_image())
    alone = vgg.capture(x, ["features.0"])["features.0"]  # the forward stops right after it: nothing overwrites it
    assert alone.min() < 0
    both = vgg.capture(x, ["features.0", "features.3"])
    torch.testing.assert_close(both["features.0"], alone)
    xg = x.clone().requires_grad_(True)
    g = vgg.capture(xg, ["features.0", "features.3"], grad=True)
    torch.testing.assert_close(g["features.0"].detach(), alone)
    g["features.0"].sum().backward()  # the clone is differentiable: the gradient of the conv's own output
    xa = x.clone().requires_grad_(True)
    vgg.capture(xa, ["features.0"], grad=True)["features.0"].sum().backward()
    torch.testing.assert_close(xg.grad, xa.grad)
    acts = vgg.activations(cw.sample_image(), None)  # one image: every conv layer cached on the way
    for name in vgg.layers.names:
        torch.testing.assert_close(acts[name], vgg.capture(x, [name])[name].cpu(), msg=name)
    # a dream objective over both layers optimises the convolution's own output: its first step (measured on
    # the start image, naive preset: no transforms) equals the objective evaluated on that image
    obj = D.channel("features.0", 0) + D.channel("features.3", 0)
    init = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    init[0, 0, 0, 0], init[0, 0, 0, 1] = 0.0, 1.0  # min-max rescaling leaves it as it is
    for fold in (False, True):
        first = next(iter(D.dream(vgg, obj, steps=1, preset="naive", init=init, fold_bn=fold)))
        assert first.objective == pytest.approx(float(D.evaluate(vgg, obj, init)[0]), rel=1e-4)


def test_weight_edits_through_data_are_seen_by_caches_and_dreams():
    model = make()
    probe = probe_of(model)
    img = IMAGES[:1]
    a0 = probe.activations(img, "conv1").clone()
    model.conv1.weight.data.mul_(1.5)  # no autograd version bump
    a1 = probe.activations(img, "conv1")
    bias = model.conv1.bias.detach()[None, :, None, None]
    torch.testing.assert_close(a1 - bias, 1.5 * (a0 - bias), rtol=1e-5, atol=1e-5)
    mask = model.conv1.weight.data.abs() < 0.1
    model.conv1.weight.data[mask] = 0  # pruning
    expected = F.conv2d(probe.prepare(img), model.conv1.weight.detach(), model.conv1.bias.detach(), padding=1)
    torch.testing.assert_close(probe.activations(img, "conv1"), expected)
    model.conv1.weight.data = torch.zeros_like(model.conv1.weight)  # a new tensor behind the same parameter
    torch.testing.assert_close(probe.activations(img, "conv1"), model.conv1.bias.detach()[None, :, None, None].expand(1, 8, SIZE, SIZE))
    folded = probe.folded(["conv2"])
    torch.testing.assert_close(folded.capture(probe.prepare(img), ["conv1"])["conv1"], probe.capture(probe.prepare(img), ["conv1"])["conv1"])


class Locked(Net):
    """A model holding a lock (cannot be deep-copied)."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()


@pytest.mark.parametrize("kind", ["lock", "weight_norm", "old_weight_norm", "spectral_norm"])
def test_dreams_run_on_models_that_cannot_be_folded_or_deep_copied(kind):
    torch.manual_seed(0)
    model = Locked() if kind == "lock" else Net()
    if kind == "weight_norm":
        model.conv2 = nn.utils.parametrizations.weight_norm(model.conv2)
    elif kind == "old_weight_norm":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.conv2 = nn.utils.weight_norm(model.conv2)
    elif kind == "spectral_norm":
        model.conv2 = nn.utils.parametrizations.spectral_norm(model.conv2)
    model.eval()
    hooks_before = hook_count(model)  # old-style weight_norm is itself a pre-hook of the user's
    probe = probe_of(model)
    x = probe.prepare(IMAGES[:2])
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(probe.forward(x, preprocess=False), expected)
    torch.testing.assert_close(probe.folded().forward(x, preprocess=False), expected, rtol=1e-4, atol=1e-4)
    last = D.run(probe, D.channel("bn2", 1), steps=3, size=SIZE)
    assert np.isfinite(last.objective)
    assert hook_count(model) == hooks_before


def test_the_cache_budget_holds_for_the_feature_maps_prefetch():
    torch.manual_seed(0)
    budget = 6 * 2**20
    probe = cw.Probe(cw.load_model("vgg11", pretrained=False), device="cpu", input_size=192, cache_bytes=budget)
    fm = cw.FeatureMaps(probe, cw.sample_image())  # the prefetch: one forward to the deepest conv layer
    assert 0 < probe.cache.nbytes <= budget
    cached = len(probe.cache)
    assert 2 <= cached < len(probe.layers) + 1  # some layers on the way, not all of them (they do not fit)
    for name in probe.layers.names:  # every layer still shows, computed when it was not kept
        fm.layer = name
        assert fm.activations is not None and fm.activations.shape[0] == probe.layer(name).channels
        assert probe.cache.nbytes <= budget
    fm.close()
