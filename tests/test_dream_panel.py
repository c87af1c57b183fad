"""The Dream panel (cnnwidgets.Dream): runs in a thread or in the foreground, stops, modes, gallery, save."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torchvision
import traitlets as T
from PIL import Image

import cnnwidgets as cw
from cnnwidgets.hooks import hook_count
from cnnwidgets.widgets._base import nice_ticks

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
    assert len(d.loss_lines.x) >= 2 and len(d.gallery) == 1
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


def test_foreground_run_to_the_end(probe):
    d = _panel(probe, run_mode="foreground")
    d.steps_slider.value = 10
    r = d.start()  # returns when done (Colab's mode)
    assert r.state == "done" and r.items == 10 and d.controls.progress.value == 10
    assert d.canvas.format == "png" and d.result.step == 10
    assert len(d.history[0]) == 10 and "done: 10 / 10 steps" in d.message.value and "done · 10 / 10 steps" in d.controls.progress_label.value
    # the loss curve's axes carry round ticks (1, 2 or 5 times a power of ten) inside the data's range
    y = np.asarray(d.history[0])
    for axis, (lo, hi) in zip(d.loss_figure.axes, ((1, 10), (y.min(), y.max()))):
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
    assert d.lr_slider.value == pytest.approx(0.1)  # seed 001's learning rate
    d.start()
    d.preset = "regularized"
    assert d.lr_slider.value == pytest.approx(0.05)
    d.mode = "atlas"
    d.atlas_slider.value = 4
    d.start()
    assert d.result.image.shape[0] == 4 and d.current.shape == (2 * 64 + 2, 2 * 64 + 2, 3)  # 2x2 grid, one batch
    d.mode = "deepdream"
    d.objective = "layer"
    d.octaves_slider.value = 2
    d.start()
    assert d.runner.state == "done" and d.current.shape[0] == 64 and d.current.shape[1] > 64  # the cat photo, landscape
    assert len(d.gallery) == 3
    for what in ("all", "current", "gallery"):
        path = d.save(tmp_path / f"{what}.png", what=what, dpi=60)
        assert Image.open(path).size[0] > 100
    assert Image.open(d.save_image(tmp_path / "img.png")).size == (d.current.shape[1], d.current.shape[0])
    d.clear_gallery()
    assert d.gallery == [] and d.gallery_box.children == ()


def test_compare_networks_side_by_side(probe):
    torch.manual_seed(0)
    other = cw.Probe(torchvision.models.resnet18(weights=None), device="cpu")
    d = _panel(probe, compare=[other], run_mode="foreground")
    d.mode = "compare"
    d.steps_slider.value = 10
    d.start()
    assert d.runner.state == "done"
    assert d.current.shape == (64, 2 * 64 + 4, 3)  # two tiles
    assert np.asarray(d.loss_lines.y).shape == (2, 10)  # one curve per network
    assert "ResNet" in d.caption.value and "efficientnet_lite0" in d.caption.value
    assert hook_count(other.model) == 0


def test_neuron_position_by_click_and_sliders(probe):
    d = _panel(probe)
    d.objective = "neuron"
    assert (d.x_slider.max, d.y_slider.max) == (7, 7)  # the 8x8 map of this layer at 64 px
    d._pick_image._handle_custom_msgs(None, {"event": "element_click", "data": {"click_x": 0.9, "click_y": 0.2}})
    assert (d.x_slider.value, d.y_slider.value) == (7, 6)  # y counts from the top
    assert d._marker.x[0] == pytest.approx(7.5 / 8)
    d.size_slider.value = 128
    assert d.x_slider.max == 15


def test_traits_link_and_bad_input_in_the_message(probe):
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
    d2 = cw.Dream(probe, layer=L, channel=99)
    assert "Channel 99 is out of range" in d2.message.value
