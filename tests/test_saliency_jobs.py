"""The Saliency panel on the one job path: every map streams through a job slot (progress, Stop, the old map
dimmed until the first partial map), a new request stops the old one, the panel follows the user's training,
every widget's state stays JSON, close() leaves nothing behind; a user's own classes, grayscale model and
method. A small CNN at 32 px (optionally slowed down per image) keeps it fast and the timings predictable."""
import json
import time

import ipywidgets as W
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ipywidgets.widgets.widget import _remove_buffers
from torch import nn

import cnnwidgets as cw
from cnnwidgets.analyses import attribution as A
from cnnwidgets.widgets._base import reachable_widgets

SIZE = 32
CLASSES = ["cat", "dog", "horse", "ship", "truck", "frog", "bird", "deer", "plane", "car"]
STALE = "cnnw-stale"


class Sleep(nn.Module):
    """A slow layer: ``seconds`` per image."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def forward(self, x):
        if self.seconds:
            time.sleep(self.seconds * x.shape[0])
        return x


class Net(nn.Module):
    def __init__(self, channels=3, delay=0.0):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), Sleep(delay / 2), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), Sleep(delay / 2), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    def forward(self, x):
        return self.head(self.features(x))


def make_probe(channels=3, delay=0.0, classes=CLASSES):
    torch.manual_seed(0)
    return cw.Probe(Net(channels, delay), device="cpu", input_size=SIZE, mean=0.5, std=0.25, classes=classes)


@pytest.fixture(scope="module")
def image():
    return cw.sample_image("chelsea")


def wait(cond, timeout=30.0):
    t = time.perf_counter()
    while not cond():
        if time.perf_counter() - t > timeout:
            raise AssertionError("timed out")
        time.sleep(0.01)


def registry() -> dict:
    return getattr(W.widgets.widget, "_instances", None) or W.Widget.widgets


def json_safe(panel) -> None:
    """Every trait every widget of the panel syncs must be JSON (what a reloaded page asks the kernel for)."""
    for w in reachable_widgets(panel):
        state, _paths, _buffers = _remove_buffers(w.get_state())  # images travel as binary buffers
        json.dumps(state, allow_nan=False)


def test_a_slow_map_streams_with_progress_and_stops_within_a_second(image):
    s = cw.Saliency(make_probe(delay=0.05), image, mode="thread")  # 50 ms per image, computed in a thread
    assert s.join(60) and s.result.method == "saliency"
    s.opts["smoothgrad"]["samples"].value = 200
    old = s.map_run.runner
    s.method = "smoothgrad"  # a request: a job in the background
    first = s.map_run.runner
    assert first is not old and first.running
    assert all(STALE in w._dom_classes for w in s.map.stale())  # the old map dimmed until the first partial map
    wait(lambda: s.result.method == "smoothgrad" and s.result.done >= 3)
    assert not any(STALE in w._dom_classes for w in s.map.stale()) and s.result.partial
    assert "SmoothGrad: " in s.message.value and " / 200 samples" in s.message.value
    assert s.map_run.progress.max == 200 and 0 < s.map_run.progress.value < 200
    assert "partial: " in s.map.caption.value and "so far" in s.map.legend.value

    s.method = "lime"  # a new request stops the one it replaces
    second = s.map_run.runner
    assert first.state == "stopped" and second is not first and second.running
    wait(lambda: s.map_run.progress.value > 0)  # LIME fits once it has as many samples as superpixels:
    assert s.result.method == "smoothgrad" and STALE in s.map.map_view._dom_classes  # until then the old map stays dim
    wait(lambda: s.result.method == "lime")
    t = time.perf_counter()
    s.map_run.stop_button.click()
    assert s.map_run.join(5)
    assert time.perf_counter() - t < 0.5  # interrupted inside its chunk of ~1 s, within a layer
    assert "LIME (superpixels): stopped at " in s.message.value and s.result.partial
    assert not s.map_run.running and s.map_run.stop_button.disabled
    s.close()


def test_the_panel_follows_the_users_training(image):
    probe = make_probe()
    model = probe.model
    s = cw.Saliency(probe, image, mode="foreground")
    s.join()
    s.compare_tab.run.start()
    before = s.result.raw.copy()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):  # the user trains in another cell, after the panel was built
        x, y = torch.rand(8, 3, SIZE, SIZE, generator=g), torch.randint(0, 10, (8,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model((x - 0.5) / 0.25), y).backward()
        opt.step()
    s.display.opacity.value = 0.5  # the next interaction: the vanilla gradient is cheap, computed again
    expected = A.attribute(probe, image, "saliency", s.target).raw
    np.testing.assert_allclose(s.result.raw, expected, rtol=1e-5, atol=1e-7)
    assert not np.allclose(before, expected)
    assert "weights changed" in s.compare_tab.note.value  # the grid says its maps are outdated

    s.opts["smoothgrad"]["samples"].value = 5
    s.method = "smoothgrad"
    with torch.no_grad():
        model.head[2].weight.mul_(-1)  # trained again (or edited): a slow method waits for the user
    s._ipython_display_()  # shown again: the panel checks the weights
    assert s.compute_button.description == "Refresh" and s.compute_button.layout.display == ""
    assert "weights changed since this map" in s.message.value and STALE in s.map.map_view._dom_classes
    s.compute_button.click()
    np.testing.assert_allclose(s.result.raw, A.attribute(probe, image, "smoothgrad", s.target, samples=5).raw,
                               rtol=1e-4, atol=1e-7)
    assert s.compute_button.description == "Compute" and STALE not in s.map.map_view._dom_classes
    s.close()


def test_every_widget_state_stays_json_and_close_leaves_nothing_behind(image):
    before = set(registry())
    probe = make_probe()
    s = cw.Saliency(probe, image, compare=[make_probe()], mode="foreground")
    json_safe(s)
    s.join()
    json_safe(s)
    o = s.opts
    o["smoothgrad"]["samples"].value, o["integrated_gradients"]["steps"].value, o["lime"]["samples"].value = 5, 5, 50
    o["occlusion"]["window"].value, o["occlusion"]["stride"].value = 16, 16
    for m in A.METHODS:
        s.method = m
        json_safe(s)
    s.top_buttons[1].click()
    s.search.value = "ship"
    assert s.target == CLASSES.index("ship")
    s.display.sign.value, s.display.cmap.value, s.display.clip.value = "signed", "gray", 100.0
    json_safe(s)
    o["occlusion"]["window"].value, o["occlusion"]["stride"].value = 8, 16
    s.method = "occlusion"  # a bad combination: the error in the message line
    assert "stride (16 px) is larger than the window (8 px)" in s.message.value
    json_safe(s)
    o["occlusion"]["stride"].value = 8
    s.compute_button.click()
    assert s.result.method == "occlusion" and "Error" not in s.message.value
    for tab in s.grids:
        tab.run.start()
        assert tab.grid.tiles and "Error" not in s.message.value
        json_safe(s)
    n = len(registry())
    for tab in s.grids:  # again: tiles are updated in place, none pile up
        tab.run.start()
    assert len(registry()) == n
    s.image_select.value = "coffee"  # another image: the grids are emptied, their tiles closed
    assert len(registry()) < n and not s.all_tab.grid.tiles
    json_safe(s)
    s.close()
    assert not (set(registry()) - before)  # every widget the panel made is closed

    slow = cw.Saliency(make_probe(delay=0.05), image, mode="thread")
    slow.opts["smoothgrad"]["samples"].value = 200
    slow.method = "smoothgrad"
    runner = slow.map_run.runner
    wait(lambda: runner.items > 0)
    slow.close()  # a job under way: stopped
    assert not runner.running and runner.join(0) and not (set(registry()) - before)


def test_the_users_class_names_grayscale_model_and_method(image):
    gray = make_probe(channels=1)
    s = cw.Saliency(gray, image, mode="foreground")
    s.join()
    top = A.top_classes(gray, image)
    assert [b.description.split(" · ")[0] for b in s.top_buttons] == [n for _, n, _ in top]
    assert set(s.search.options) == set(CLASSES) and top[0][1] in s.map.caption.value
    assert "max over channels" in s.map.legend.value and "R, G, B" not in s.map.legend.value
    s.search.value = "horse"
    assert s.result.target == 2 and "horse" in s.map.caption.value
    s.close()

    @A.register
    class Tripled(A.Method):
        name, label, order = "tripled", "Tripled gradient", 99
        options = (A.Option("factor", "int", 3, "factor", min=1, slider=(1, 5, 1)),
                   A.Option("sign", "choice", "plus", "sign", choices=(("plus", "as it is"), ("minus", "flipped"))))

        def legend(self, a):
            return "the gradient, times a factor"

        def attribute(self, probe, fn, x, target, o):
            g = A.get("saliency").attribute(probe, fn, x, target, {})[0]
            return g * o["factor"] * (1 if o["sign"] == "plus" else -1), {}

    try:
        t = cw.Saliency(make_probe(), image, mode="foreground")
        t.join()
        assert ("Tripled gradient", "tripled") in t.method_select.options
        factor, sign = t.opts["tripled"]["factor"], t.opts["tripled"]["sign"]
        assert (factor.min, factor.max, factor.value, factor.description) == (1, 5, 3, "factor")
        assert sign.options == (("as it is", "plus"), ("flipped", "minus"))
        t.method = "tripled"
        assert list(t.options_box.children) == [factor, sign] and t.compute_button.layout.display == "none"
        factor.value = 2  # a fast method: computed at once
        np.testing.assert_allclose(t.result.raw, 2 * A.attribute(t.probe, image, "saliency", t.target).raw, rtol=1e-6)
        t.all_tab.run.start()
        assert "tripled" in t.all_results and "All 9 methods" in t.all_tab.box.children[0].value
        t.close()
    finally:
        A.base._REGISTRY.pop("tripled")
