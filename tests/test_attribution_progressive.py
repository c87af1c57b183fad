"""Attribution methods as objects, and progressive maps: each streaming method's final map is Captum's one-shot
map on the same settings; partial maps come in short chunks; bad options get one short error each; no job
draws from torch's global random generator. A small CNN at 32 px keeps it fast on a CPU."""
import ast
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import cnnwidgets as cw
from cnnwidgets.analyses import attribution as A

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


class Net(nn.Module):
    def __init__(self, channels=3, delay=0.0):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
        self.delay = delay  # seconds per image: a slow model, for the pacing tests

    def forward(self, x):
        if self.delay:
            time.sleep(self.delay * x.shape[0])
        return self.head(self.features(x))


def make_probe(channels=3, delay=0.0):
    torch.manual_seed(0)
    model = Net(channels, delay).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        model.features[1].running_mean.uniform_(-0.2, 0.2)
        model.features[1].running_var.uniform_(0.5, 2.0)
    return cw.Probe(model, device="cpu", input_size=SIZE, mean=0.5, std=0.25,
                    classes=[f"class {c}" for c in "ABCDEFGHIJ"])


@pytest.fixture(scope="module")
def probe():
    return make_probe()


@pytest.fixture(scope="module")
def image():
    return cw.sample_image("chelsea")


def close(ours, theirs, rtol=1e-4):
    theirs = np.asarray(theirs)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * float(np.abs(theirs).max()))


@pytest.mark.parametrize("approximation", ["gausslegendre", "riemann_trapezoid"])
@pytest.mark.parametrize("baseline", ["black", "blurred"])
def test_integrated_gradients_final_map_is_captums(probe, image, approximation, baseline):
    from captum.attr import IntegratedGradients

    steps = list(A.attribute_steps(probe, image, "integrated_gradients", target=3, steps=16, baseline=baseline,
                                   approximation=approximation, batch_size=4))
    x = A.pixels(probe, image)
    attr, delta = IntegratedGradients(probe.pixel_model()).attribute(
        x, baselines=A.make_baseline(probe, x, baseline), target=3, n_steps=16, method=approximation,
        internal_batch_size=4, return_convergence_delta=True)
    final = steps[-1].value
    close(final.raw, attr[0].detach().numpy())
    assert final.delta == pytest.approx(abs(float(delta)), rel=1e-3, abs=1e-5)
    assert [s.step for s in steps] == sorted(s.step for s in steps) and steps[-1].step == 16
    assert all(s.value.partial for s in steps[:-1]) and len(steps) > 2
    # a partial map already estimates the whole path (its points are spread along it), and is scaled like the final
    half = next(s.value for s in steps if s.step >= 8)
    assert np.corrcoef(half.raw.ravel(), final.raw.ravel())[0, 1] > 0.8


@pytest.mark.parametrize("window, stride, baseline", [(8, 8, "mean"), (12, 8, "black"), (16, 6, "blurred")])
def test_occlusion_final_map_is_captums(probe, image, window, stride, baseline):
    from captum.attr import Occlusion

    steps = list(A.attribute_steps(probe, image, "occlusion", target=5, window=window, stride=stride,
                                   baseline=baseline, batch_size=5))
    x = A.pixels(probe, image)
    theirs = Occlusion(probe.pixel_model()).attribute(
        x, sliding_window_shapes=(3, window, window), strides=(3, stride, stride),
        baselines=A.make_baseline(probe, x, baseline), target=5, perturbations_per_eval=7)
    close(steps[-1].value.raw, theirs[0].numpy())
    rows = len(A.window_positions(SIZE, window, stride))
    assert steps[-1].step == steps[-1].total == rows * rows
    first = steps[0].value.raw  # one window measured: the rest of the map is 0 until a window covers it
    assert (first[:, :window, :window] != 0).any() and (first[:, window:, :] == 0).all()


def test_lime_partial_maps_start_once_there_are_as_many_samples_as_superpixels(probe, image):
    steps = list(A.attribute_steps(probe, image, "lime", target=2, samples=60, segments=20, batch_size=8))
    k = int(steps[-1].value.segments.max()) + 1
    assert all(s.value is None for s in steps if s.step < k)
    assert all(s.value is not None for s in steps if s.step >= k)
    assert steps[-1].step == 60 and not steps[-1].value.partial
    close(steps[-1].value.raw, A.attribute(probe, image, "lime", target=2, samples=60, segments=20, batch_size=3).raw)


def test_smoothgrad_final_map_does_not_depend_on_the_chunks(probe, image):
    a = A.attribute(probe, image, "smoothgrad", target=1, samples=12, batch_size=12)
    b = A.attribute(probe, image, "smoothgrad", target=1, samples=12, batch_size=1)
    close(a.raw, b.raw, rtol=1e-5)


def test_chunks_start_with_one_image_and_grow_to_about_a_second(image):
    slow = make_probe(delay=0.02)  # 20 ms per image: chunks of about a second are ~50 images
    t, gaps, sizes, last = time.perf_counter(), [], [], 0
    for s in A.attribute_steps(slow, image, "smoothgrad", target=0, samples=90, batch_size=64):
        now = time.perf_counter()
        gaps.append(now - t)
        sizes.append(s.step - last)
        t, last = now, s.step
    assert sizes[:3] == [1, 4, 16] and len(sizes) <= 5  # one sample first (a map soon), then growing
    assert max(gaps) < 3.0 and sorted(gaps)[len(gaps) // 2] < 1.6
    pace = A.Pace(limit=25)
    pace.took(1, 0.5)
    assert pace.size == 2  # 0.5 s per image: about a second
    pace.took(2, 1.0)
    assert pace.size == 2
    pace = A.Pace(limit=25)
    pace.took(1, 0.3)
    pace.took(4, 0.6)  # 0.2 s per call + 0.1 s per image: bigger chunks, up to 3 s, keep the 0.2 s small
    assert pace.size == 16
    pace.took(16, 1.8)
    assert pace.size == 25  # never past the batch size


class Sleep(nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds * x.shape[0])
        return x


@pytest.mark.parametrize("method, opts", [("smoothgrad", {"samples": 64}), ("occlusion", {"window": 4, "stride": 4}),
                                          ("integrated_gradients", {"steps": 64})])
def test_a_stop_event_ends_the_job_inside_a_chunk(image, method, opts, monkeypatch):
    import threading

    monkeypatch.setattr(A.base, "CHUNK_SECONDS", 30.0)  # one big chunk: only an interruption can be quick
    probe = make_probe()
    probe.model.features.insert(2, Sleep(0.01))  # 10 ms per image in each of two layers
    probe.model.features.insert(5, Sleep(0.01))
    probe = cw.Probe(probe.model, device="cpu", input_size=SIZE, mean=0.5, std=0.25)
    stop = threading.Event()
    steps = A.attribute_steps(probe, image, method, target=0, stop=stop, batch_size=64, **opts)
    got = []
    t = threading.Thread(target=lambda: got.extend(steps))
    t.start()
    time.sleep(0.6)  # into the second chunk (4 images, then up to 64)
    t0 = time.perf_counter()
    stop.set()
    t.join(10)
    assert not t.is_alive() and time.perf_counter() - t0 < 0.5  # within a layer, not at the chunk's end (~1.3 s)
    assert got and got[-1].value.partial and got[-1].step < got[-1].total
    from cnnwidgets.hooks import hook_count
    assert hook_count(probe.pixel_model().view) == 0


@pytest.mark.parametrize("method, opts, match", [
    ("integrated_gradients", {"steps": 0}, r"^Integrated Gradients: steps \(.*\) must be ≥ 1, got 0\.$"),
    ("integrated_gradients", {"steps": 1, "approximation": "riemann_trapezoid"}, "Riemann sum needs steps ≥ 2"),
    ("occlusion", {"window": 0}, r"^Occlusion: window \(.*\) must be ≥ 1, got 0\.$"),
    ("occlusion", {"window": 40}, r"the window \(40 px\) is larger than the image \(32×32\)"),
    ("occlusion", {"window": 8, "stride": 16}, r"the stride \(16 px\) is larger than the window \(8 px\)"),
    ("smoothgrad", {"samples": 0}, r"^SmoothGrad: samples \(.*\) must be ≥ 1, got 0\.$"),
    ("lime", {"samples": 0}, r"^LIME \(superpixels\): samples \(.*\) must be ≥ 1, got 0\.$"),
    ("integrated_gradients", {"baseline": "white"}, "is one of 'black', 'blurred', 'uniform', 'mean', not 'white'"),
])
def test_bad_options_get_one_short_error_before_any_work(probe, image, method, opts, match):
    with pytest.raises(ValueError, match=match) as e:
        A.attribute_steps(probe, image, method, **opts)  # not iterated: checked when the job is made
    assert e.value.__context__ is None and e.value.__cause__ is None and len(str(e.value)) < 200
    with pytest.raises(TypeError, match="whole number, got 2.5"):
        A.attribute(probe, image, "smoothgrad", samples=2.5)


def test_no_method_draws_from_the_global_random_generators(probe, image):
    fast = {"smoothgrad": {"samples": 3}, "integrated_gradients": {"steps": 3, "baseline": "uniform"},
            "occlusion": {"window": 16, "stride": 16}, "lime": {"samples": 12, "segments": 8}}
    torch_state, np_state = torch.random.get_rng_state(), np.random.get_state()
    for m in A.METHODS:
        A.attribute(probe, image, m, target=4, **fast.get(m, {}))
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state()[1:2], np_state[1:2]))


def test_input_x_gradient_is_the_pixels_times_the_gradient(probe, image):
    a = A.attribute(probe, image, "input_x_gradient", target=7)
    x = A.pixels(probe, image).clone().requires_grad_()
    probe.model(probe.transform.normalize(x))[0, 7].backward()
    close(a.raw, (x * x.grad)[0].detach().numpy(), rtol=1e-5)
    np.testing.assert_allclose(a.map, a.raw.sum(0), rtol=1e-6)
    assert a.signed and a.label == "Input × Gradient" and "input_x_gradient" in A.METHODS
    assert A.get("input_x_gradient").legend(a).startswith("pixel value × ∂ score / ∂ pixel, summed over R, G, B")


def test_a_method_is_one_registered_class(probe, image):
    @A.register
    class Doubled(A.Method):
        """A made-up method: twice the gradient, in chunks of 'repeats'."""
        name, label, unit, slow, order = "doubled", "Doubled gradient", "repeat", True, 99
        options = (A.Option("repeats", "int", 3, "repeats", min=1, slider=(1, 9, 1)),)

        def legend(self, a):
            return "2 × gradient"

        def total(self, o, x):
            return o["repeats"]

        def steps(self, probe, fn, x, target, o):
            g = A.get("saliency").attribute(probe, fn, x, target, {})[0]
            for i in range(1, o["repeats"] + 1):
                yield A.Partial(i, 2 * g)

    try:
        assert A.METHODS[-1] == "doubled" and A.LABELS["doubled"] == "Doubled gradient"
        assert A.DEFAULTS["doubled"] == {"repeats": 3} and "doubled" in A.SLOW
        steps = list(A.attribute_steps(probe, image, "doubled", target=1, repeats=2))
        assert [s.info["status"] for s in steps] == ["Doubled gradient: 1 / 2 repeats", "Doubled gradient: 2 / 2 repeats"]
        np.testing.assert_allclose(steps[-1].value.raw, 2 * A.attribute(probe, image, "saliency", target=1).raw)
        with pytest.raises(ValueError, match="must be ≥ 1, got 0"):
            A.attribute(probe, image, "doubled", repeats=0)
    finally:
        A.base._REGISTRY.pop("doubled")
    assert "doubled" not in A.METHODS


def test_grayscale_legends_say_channels(image):
    gray = make_probe(channels=1)
    for m in ("saliency", "smoothgrad", "input_x_gradient"):
        a = A.attribute(gray, image, m, target=0, **({"samples": 2} if m == "smoothgrad" else {}))
        text = a.kind.legend(a)
        assert "channels" in text and "R, G, B" not in text, text


def test_attribution_and_sanity_do_not_import_each_other():
    pkg = ROOT / "cnnwidgets" / "analyses" / "attribution"
    for f in [*pkg.glob("*.py"), *(pkg / "methods").glob("*.py")]:
        if f.name in ("__init__.py", "sanity.py"):
            continue
        names = [n.module or "" for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.ImportFrom)]
        names += [a.name for n in ast.walk(ast.parse(f.read_text())) if isinstance(n, ast.Import) for a in n.names]
        assert not [n for n in names if "sanity" in n], f  # the methods and the verb know nothing of the sanity check
    for first in ("cnnwidgets.analyses.sanity", "cnnwidgets.analyses.attribution"):
        code = (f"import {first}; from cnnwidgets.analyses import sanity, attribution as A; "
                "assert A.sanity_check is sanity.sanity_check")
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
