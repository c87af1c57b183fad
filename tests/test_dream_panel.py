"""The Dream panel (cnnwidgets.Dream): runs in a thread or in the foreground, stops, modes, gallery, save; sizes and
labels in a student's words; closing; widgets that do not pile up; live weights; state that survives a reload."""
from __future__ import annotations

import json
import time

import ipywidgets as W
import numpy as np
import pytest
import torch
import torchvision
import traitlets as T
from ipywidgets.widgets import widget as ipw_widget
from PIL import Image

import cnnwidgets as cw
from cnnwidgets import dream as D
from cnnwidgets.hooks import hook_count
from cnnwidgets.widgets._base import nice_ticks, reachable_widgets

L = "_blocks.3._project_conv"


def _panel(probe, **kw):
    d = cw.Dream(probe, layer=L, channel=3, **kw)
    d.size_slider.value = 64
    return d


def _wait(cond, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.05)
    return False


def _registry() -> int:
    """How many widgets ipywidgets holds (``_instances`` in 8, ``Widget.widgets`` in 7)."""
    reg = getattr(ipw_widget, "_instances", None)
    return len(reg if reg is not None else W.Widget.widgets)


def test_thread_run_streams_jpeg_frames_and_stop_stops_it(probe):
    d = _panel(probe, run_mode="thread")
    d.steps_slider.value = 2000
    formats = []
    d.canvas.observe(lambda ch: formats.append(d.canvas.format), "value")
    before = [p.requires_grad for p in probe.model.parameters()], probe.model.training
    runner = d.start()
    assert runner.mode == "thread"
    assert _wait(lambda: runner.frames >= 4), "no frames arrived"
    assert runner.running  # the cell returned while the run goes on: the kernel is free
    d.controls.stop_button.click()  # the real Stop button's handler
    assert d.join(30)
    assert runner.state == "stopped" and runner.items < 2000
    frames = runner.frames
    time.sleep(0.3)
    assert runner.frames == frames  # nothing arrives after stop
    assert "jpeg" in formats[:-1] and formats[-1] == "png"  # JPEG while streaming, lossless at the end
    assert d.current is not None and d.current.shape == (64, 64, 3)
    assert "stopped" in d.message.value
    assert len(d.canvas_view.lines.x) >= 2 and len(d.gallery.items) == 1
    assert hook_count(probe.model) == 0
    assert ([p.requires_grad for p in probe.model.parameters()], probe.model.training) == before


def test_pause_and_resume(probe):
    d = _panel(probe, run_mode="thread")
    d.steps_slider.value = 2000
    r = d.start()
    assert _wait(lambda: r.items >= 2)
    d.controls.pause_button.click()
    assert _wait(lambda: r.state == "paused")
    time.sleep(0.3)
    n = r.items
    time.sleep(0.4)
    assert r.items == n and d.controls.pause_button.description == "Resume"
    d.controls.pause_button.click()
    assert _wait(lambda: r.items > n)
    d.stop()
    assert d.join(30) and r.state == "stopped"


def test_close_stops_a_running_dream(probe):
    d = _panel(probe, run_mode="thread")
    d.steps_slider.value = 2000
    r = d.start()
    assert _wait(lambda: r.items >= 2)
    d.close()
    assert not r.running and r.state == "stopped"
    n = r.items
    time.sleep(0.5)
    assert r.items == n  # a closed Dream does not go on
    assert hook_count(probe.model) == 0


def test_foreground_run_to_the_end(probe):
    d = _panel(probe, run_mode="foreground")
    d.steps_slider.value = 10
    r = d.start()  # returns when done (Colab's mode)
    assert r.state == "done" and r.items == 10 and d.controls.progress.value == 10
    assert d.canvas.format == "png" and d.result.step == 10
    assert len(d.history[0]) == 10 and "done: 10 / 10 steps" in d.message.value and "done · 10 / 10 steps" in d.controls.progress_label.value
    # the loss curve's axes carry round ticks (1, 2 or 5 times a power of ten) inside the data's range
    y = np.asarray(d.history[0])
    for axis, (lo, hi) in zip(d.canvas_view.axes, ((1, 10), (y.min(), y.max()))):
        assert axis.visible
        ticks = np.asarray(axis.tick_values)
        assert 2 <= len(ticks) <= 8 and lo - 1e-9 <= ticks.min() and ticks.max() <= hi + 1e-9
        step = ticks[1] - ticks[0]
        mantissa = step / 10 ** np.floor(np.log10(step))
        assert any(np.isclose(mantissa, m) for m in (1, 2, 5)) and np.allclose(np.diff(ticks), step)


def test_nice_ticks():
    assert nice_ticks(-2.6, 20.6).tolist() == [0, 5, 10, 15, 20]
    assert nice_ticks(1, 250).tolist() == [50, 100, 150, 200, 250]
    assert nice_ticks(0.001, 0.0042, 3).tolist() == [0.001, 0.002, 0.003, 0.004]
    assert nice_ticks(-3.8, 3.6, 4).tolist() == [-2, 0, 2]
    assert nice_ticks(5, 5).tolist() == [5] and nice_ticks(float("nan"), 1).size == 0


def test_presets_atlas_deepdream_and_gallery(probe, tmp_path):
    d = _panel(probe, run_mode="foreground")
    d.steps_slider.value = 10
    d.preset = "naive"
    assert d.lr_slider.value == pytest.approx(0.1)  # plain gradient ascent's learning rate
    d.start()
    d.preset = "regularized"
    assert d.lr_slider.value == pytest.approx(0.05)
    d.mode = "atlas"
    d.atlas_slider.value = 4
    d.start()
    assert d.result.images[0].shape[0] == 4 and d.current.shape == (2 * 64 + 2, 2 * 64 + 2, 3)  # 2x2 grid, one batch
    d.mode = "deepdream"
    d.objective = "layer"
    d.octaves_slider.value = 2
    d.start()
    assert d.runner.state == "done" and d.current.shape[0] == 64 and d.current.shape[1] > 64  # the cat photo, landscape
    assert "octave 2 of 2" in d.canvas_view.caption.value
    caps = [item.caption for item in d.gallery.items]
    assert len(caps) == 3
    # each caption says the layer and what of it (not only "channel")
    assert caps[0].startswith(f"{L} · channel 3 · naive") and caps[0].endswith("step 10")
    assert caps[1].startswith(f"{L} · channels 3–6 · regularized")
    assert caps[2].startswith(f"DeepDream · {L} · whole layer · chelsea")
    for what in ("all", "current", "gallery"):
        path = d.save(tmp_path / f"{what}.png", what=what, dpi=60)
        assert Image.open(path).size[0] > 100
    assert Image.open(d.save_image(tmp_path / "img.png")).size == (d.current.shape[1], d.current.shape[0])
    d.clear_gallery()
    assert d.gallery.items == [] and d.gallery.box.children == ()


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return cw.Probe(torchvision.models.resnet18(weights=None), device="cpu", input_size=224, mean=0.45, std=0.225)


def test_compare_networks_side_by_side(probe, resnet):
    d = _panel(probe, compare=[resnet], run_mode="foreground")
    d.mode = "compare"
    d.steps_slider.value = 10
    d.start()
    assert d.runner.state == "done"
    assert d.current.shape == (64, 2 * 64 + 4, 3)  # two tiles
    assert np.asarray(d.canvas_view.lines.y).shape == (2, 10)  # one curve per network, with a legend
    assert d.canvas_view.lines.display_legend and len(d.canvas_view.lines.labels) == 2
    assert "ResNet" in d.canvas_view.caption.value and "efficientnet_lite0" in d.canvas_view.caption.value
    assert hook_count(resnet.model) == 0


def test_neuron_position_by_click_and_sliders(probe):
    d = _panel(probe)
    d.objective = "neuron"
    assert (d.x_slider.max, d.y_slider.max) == (7, 7)  # the 8x8 map of this layer at 64 px
    d.picker.image._handle_custom_msgs(None, {"event": "element_click", "data": {"click_x": 0.9, "click_y": 0.2}})
    assert (d.x_slider.value, d.y_slider.value) == (7, 6)  # y counts from the top
    assert d.picker.marker.x[0] == pytest.approx(7.5 / 8)
    d.size_slider.value = 128
    assert d.x_slider.max == 15


def test_traits_link_and_bad_input(probe):
    class Other(T.HasTraits):
        layer = T.Unicode()
        channel = T.Int()

    d = _panel(probe)
    o = Other()
    T.link((o, "layer"), (d, "layer"))
    T.link((o, "channel"), (d, "channel"))
    o.layer, o.channel = "_blocks.5._project_conv", 7
    assert d.layer_slider.value == "_blocks.5._project_conv" and d.channel_slider.value == 7
    d.layer_slider.value = L
    assert o.layer == L
    d2 = cw.Dream(probe, layer=L)
    d2.layer = "no_such_layer"
    assert "No layer named" in d2.message.value and d2.layer == L
    d2.channel = 99  # by code or a linked panel: said, not clamped
    assert "Channel 99 is out of range" in d2.message.value and d2.channel == 0
    with pytest.raises(ValueError, match=r"Channel 99 is out of range: layer '_blocks.3._project_conv' has 40 channels"):
        cw.Dream(probe, layer=L, channel=99)
    with pytest.raises(TypeError, match="whole number, got 2.7"):
        cw.Dream(probe, layer=L, channel=2.7)  # not silently channel 2
    assert cw.Dream(probe, layer=L, channel=np.int64(39)).channel == 39
    big = cw.Dream(probe, layer=L, size=640, steps=5000)
    assert (big.size_slider.value, big.steps_slider.value) == (640, 5000)  # as given, not clamped to the sliders
    with pytest.raises(TypeError, match="image size must be a whole number"):
        cw.Dream(probe, layer=L, size=99.5)


def _texts(panel) -> str:
    """Every string any widget of the panel sends to the page."""
    out = []
    for w in reachable_widgets(panel):
        for v in w.get_state().values():
            if isinstance(v, str):
                out.append(v)
            elif isinstance(v, (list, tuple)):
                out += [x for x in v if isinstance(x, str)]
    return "\n".join(out)


class Fixed(torch.nn.Module):
    """Takes 192 px images only (an 8x8 patch grid and a flattening head)."""

    def __init__(self):
        super().__init__()
        self.patch = torch.nn.Conv2d(3, 4, 24, stride=24)
        self.mix = torch.nn.Conv2d(4, 4, 1)
        self.fc = torch.nn.Linear(4 * 64, 3)

    def forward(self, x):
        return self.fc(self.mix(self.patch(x)).flatten(1))


def test_sizes_follow_the_model_and_labels_are_in_a_students_words(probe):
    d = cw.Dream(probe)
    assert d.size_slider.value == 128  # a 224 px model on a CPU
    text = _texts(d)
    assert "naive: plain gradient ascent" in text and "seed 001" not in text and "seed 0" not in text.replace("seed 0\n", "")
    labels = dict(d.settings_view.preset_buttons.options)
    assert set(labels) == {"naive: plain gradient ascent", "regularized: smooth + jittered (Lucent)"}
    # before a run: no curve, and no axes (whose empty scale would show ticks "0 0 0 0 1 1")
    assert len(d.canvas_view.lines.x) == 0 and not any(a.visible for a in d.canvas_view.axes)
    mnist = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 8, 3), torch.nn.ReLU())
    small = cw.Dream(cw.Probe(mnist, device="cpu", input_size=28, mean=0.13, std=0.31), run_mode="foreground")
    assert small.size_slider.value == 28 and small.size_slider.min <= 28 and (28 - small.size_slider.min) % small.size_slider.step == 0
    small.steps_slider.value = 10
    small.start()
    assert small.runner.state == "done" and small.current.shape == (28, 28, 3)
    fixed = cw.Probe(Fixed(), device="cpu", input_size=192, mean=0.5, std=0.25)
    assert cw.Dream(fixed, layer="mix").size_slider.value == 192  # it takes only its own size


def test_no_widget_piles_up_over_20_runs_and_close_frees_them_all(probe):
    base = _registry()
    d = _panel(probe, run_mode="foreground")
    d.steps_slider.value = 10
    d.size_slider.value = 32
    made = _registry()
    counts = []
    for i in range(20):
        d.objective = "neuron" if i % 2 else "channel"
        d.start()
        assert d.runner.state == "done"
        counts.append(_registry())
    full = 12  # the gallery keeps the last 12 images: from then on each run's tile replaces the oldest
    per_tile = (counts[full - 1] - counts[0]) / (full - 1)
    assert per_tile <= 8  # the tile's image, caption and their layouts
    assert counts[full - 1:] == [counts[full - 1]] * (20 - full + 1), counts  # nothing else piles up (picker images)
    assert counts[0] - made <= per_tile
    d.clear_gallery()
    assert _registry() == made
    d.close()
    assert _registry() == base, "closing the panel left widgets in ipywidgets' registry"


def test_live_weights(probe):
    model = cw.load_model()
    p = cw.Probe(model)
    d = cw.Dream(p, layer=L, channel=3, run_mode="foreground")
    d.size_slider.value, d.steps_slider.value = 48, 10
    d.start()
    assert not d.gallery.items[0].outdated
    with torch.no_grad():
        model._blocks[3]._project_conv.weight.mul_(-1)  # the user trains (here: a crude edit in place)
    d.check_weights()  # also when the panel is displayed again, and at the next Start
    assert d.gallery.items[0].outdated and "made before the model's weights changed" in d.gallery.box.children[0].children[1].value
    assert "weights changed" in d.message.value
    d.start()  # a dream started now uses the new weights
    assert not d.gallery.items[1].outdated
    alone = D.run(p, D.channel(L, 3), steps=10, size=48)
    np.testing.assert_array_equal(d.current, (alone.image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def _json_safe(panel, when: str) -> None:
    """Every synced trait of every widget of the panel serialises as strict JSON (what a reloaded page reads)."""
    for w in reachable_widgets(panel):
        state, _, _ = ipw_widget._remove_buffers(w.get_state())  # binary buffers travel beside the JSON (a copy without them)
        try:
            json.dumps(state, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise AssertionError(f"{type(w).__name__} after {when}: {e}: {state}") from None


def test_every_synced_trait_is_json_at_all_times(probe, resnet):
    d = _panel(probe, compare=[resnet], run_mode="foreground")
    d.steps_slider.value = 10
    _json_safe(d, "construction")
    d.start()
    _json_safe(d, "a run")
    d.objective = "neuron"
    d.picker.image._handle_custom_msgs(None, {"event": "element_click", "data": {"click_x": 0.3, "click_y": 0.6}})
    d.start()
    _json_safe(d, "a neuron picked by a click and its run")
    d.mode, d.atlas_slider.value = "atlas", 4
    d.start()
    _json_safe(d, "an atlas")
    d.mode, d.objective, d.octaves_slider.value = "deepdream", "layer", 2
    d.start()
    _json_safe(d, "DeepDream")
    d.mode, d.objective = "compare", "channel"
    d.start()
    _json_safe(d, "compare networks")
    d.layer, d.channel = "_blocks.5._project_conv", 1000
    d.keep()
    d.on_weights_changed()
    _json_safe(d, "a layer change, a bad channel, keep and outdated weights")
    d.preset, d.lr_slider.value, d.mode = "naive", 10.0, "single"
    d.start()
    _json_safe(d, "a run with a huge learning rate")
    d.clear_gallery()
    _json_safe(d, "clearing the gallery")


def test_only_arguments_ipywidgets_7_knows(probe, resnet):
    """Colab runs ipywidgets 7.7.1, which warns about (and ignores) arguments it does not know, as
    ``IntSlider(tooltip=...)`` (an ipywidgets 8 trait); under ipywidgets 7 (``.venv-colab``) this catches them."""
    import warnings

    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        d = cw.Dream(probe, compare=[resnet], photo=cw.sample_image("coffee"))
        d.objective, d.mode = "neuron", "atlas"
    assert not [str(r.message) for r in rec if "unrecognized arguments" in str(r.message)]
