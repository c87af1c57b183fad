"""The Dream panel's jobs without widgets (cnnwidgets.analyses.dream.jobs): objectives per mode, atlas channels,
compare networks' layer mapping, dreams in lockstep, default sizes, bad settings."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

import cnnwidgets as cw
from cnnwidgets import dream as D
from cnnwidgets.analyses.dream import jobs as J

L = "_blocks.3._project_conv"  # 40 channels; 8 x 8 maps at 64 px


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return cw.Probe(torchvision.models.resnet18(weights=None), device="cpu", input_size=224, mean=0.45, std=0.225)


def test_objective_for_each_kind(probe):
    assert J.objective_for(probe, "channel", L, 3).name == D.channel(L, 3).name
    assert J.objective_for(probe, "neuron", L, 3, 2, 5).name == D.neuron(L, 3, 2, 5).name
    assert J.objective_for(probe, "layer", L).name == D.layer(L, "mean").name
    assert J.objective_for(probe, "layer", L, deepdream=True).name == D.layer(L, "squares").name
    assert J.objective_for(probe, "neuron", "_fc", 7).name == D.channel("_fc", 7).name  # units have no position
    with pytest.raises(ValueError, match="objective is one of"):
        J.objective_for(probe, "pixel", L)


def test_a_channel_is_a_whole_number_in_range(probe):
    assert J.check_channel(probe, L, np.int64(39)) == 39
    with pytest.raises(TypeError, match="whole number, got 2.7"):
        J.check_channel(probe, L, 2.7)
    with pytest.raises(ValueError, match=r"Channel 40 is out of range: layer '_blocks.3._project_conv' has 40 channels \(0..39\)"):
        J.check_channel(probe, L, 40)
    with pytest.raises(ValueError, match="out of range"):
        J.objective_for(probe, "channel", L, -1)


def test_atlas_channels(probe):
    assert J.atlas_channels(probe, L, 0, 4) == [0, 1, 2, 3]
    assert J.atlas_channels(probe, L, 38, 4) == [38, 39, 0, 1]  # wraps round
    assert J.atlas_channels(probe, L, 5, 64) == [(5 + i) % 40 for i in range(40)]  # each channel once
    with pytest.raises(ValueError, match="out of range"):
        J.atlas_channels(probe, L, 40, 4)
    with pytest.raises(ValueError, match="at least one"):
        J.atlas_channels(probe, L, 0, 0)


def test_matching_layer_at_the_same_relative_depth(probe, resnet):
    names, other = probe.layers.names, resnet.layers.names
    assert J.matching_layer(probe, names[0], resnet).name == other[0]
    assert J.matching_layer(probe, names[-1], resnet).name == other[-1]
    mid = J.matching_layer(probe, names[len(names) // 2], resnet).name
    assert abs(other.index(mid) / (len(other) - 1) - 0.5) < 0.1
    assert J.matching_layer(probe, "_bn1", resnet).name in other  # not a conv layer: where it falls among them


def _fake(n, values, log, name, message_at=None):
    """A generator of DreamSteps (objectives per image) that notes when it is closed."""
    try:
        for i in range(1, n + 1):
            if i == message_at:
                yield D.DreamStep(i - 1, n, None, None, image=torch.zeros(1, 3, 2, 2), message="NaN")
                return
            yield D.DreamStep(i, n, None, None, image=torch.zeros(1, 3, 2, 2), objective=values * i,
                              objectives=[values * i, values * i + 2])
    finally:
        log.append(name)


def test_lockstep_records_every_step_ends_with_the_shortest_and_closes_all():
    log = []
    frames = J.lockstep([_fake(5, 1.0, log, "a"), _fake(3, 10.0, log, "b")])
    got = list(frames)
    assert [f.step for f in got] == [1, 2, 3] and sorted(log) == ["a", "b"]
    assert got[-1].history == [[2.0, 3.0, 4.0], [11.0, 21.0, 31.0]]  # the mean over each dream's images
    assert len(got[0].steps) == 2 and got[0].value is got[0].steps
    log = []
    frames = J.lockstep([_fake(5, 1.0, log, "a"), _fake(5, 1.0, log, "b", message_at=3)])
    got = list(frames)
    assert got[-1].message == "NaN" and len(got) == 3 and sorted(log) == ["a", "b"]
    assert got[-1].history[1] == [2.0, 3.0]  # the NaN step is not on the curve
    log = []
    frames = J.lockstep([_fake(5, 1.0, log, "a")])
    next(frames)
    frames.close()  # Stop: the dream is closed too
    assert log == ["a"]


class Fixed(torch.nn.Module):
    """Patches on a fixed 8x8 grid and a flattening head, as a vision transformer: takes ``size`` px images only."""

    def __init__(self, size):
        super().__init__()
        self.patch = torch.nn.Conv2d(3, 4, size // 8, stride=size // 8)
        self.fc = torch.nn.Linear(4 * 64, 3)

    def forward(self, x):
        return self.fc(self.patch(x).flatten(1))


def test_default_size_follows_the_model(probe):
    assert J.default_size(probe) == 128  # 224 px model on a CPU
    mnist = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
    assert J.default_size(cw.Probe(mnist, device="cpu", input_size=28, mean=0.13, std=0.31)) == 28
    fixed = cw.Probe(Fixed(192), device="cpu", input_size=192, mean=0.5, std=0.25)
    assert D.engine.takes_only(fixed, ["fc"], 192, 192, 3)
    assert J.default_size(fixed) == 192  # exactly its own size


def test_map_size(probe):
    assert J.map_size(probe, L, 64) == (8, 8)
    assert J.map_size(probe, L, 128) == (16, 16)
    assert J.map_size(probe, "_fc", 64) is None


def test_plan_each_mode(probe, resnet):
    s = J.Settings(layer=L, channel=3, steps=3, size=48, seed=1)
    job = J.plan(probe, s)
    frames = list(job.frames)
    assert job.total == 3 and [f.step for f in frames] == [1, 2, 3] and len(frames[-1].history[0]) == 3
    assert job.caption == f"{L} · channel 3 · regularized · 48 px" and job.labels == [job.caption]
    alone = D.run(probe, D.channel(L, 3), steps=3, size=48, seed=1)
    torch.testing.assert_close(frames[-1].images[0], alone.image)  # the job is the engine's dream, nothing more

    job = J.plan(probe, J.Settings(layer=L, channel=38, mode="atlas", atlas=4, steps=2, size=48, preset="naive"))
    last = list(job.frames)[-1]
    assert last.images[0].shape[0] == 4 and "channels 38–1" in job.caption and "naive" in job.caption

    job = J.plan(probe, J.Settings(layer=probe.layers.names[-1], channel=3, mode="compare", steps=2, size=48),
                 others=[resnet])
    last = list(job.frames)[-1]
    assert len(last.steps) == 2 and len(last.history) == 2 and job.labels[1].startswith("ResNet: layer4.1.conv2")

    job = J.plan(probe, J.Settings(layer=L, objective="layer", mode="deepdream", steps=4, octaves=2, size=48),
                 photo=cw.sample_image("chelsea"), photo_name="chelsea")
    assert job.total == 4 and len(list(job.frames)) == 4 and job.caption.startswith("DeepDream") and "chelsea" in job.caption

    job = J.plan(probe, J.Settings(layer=L, channel=3, objective="neuron", x=1, y=6, steps=1))
    assert job.settings.size == 128 and "channel 3 at x=1, y=6" in job.caption  # size None: the default size


def test_bad_settings_are_clear_errors_before_anything_runs(probe):
    with pytest.raises(TypeError, match="whole number"):
        J.plan(probe, J.Settings(layer=L, channel=2.7))
    with pytest.raises(ValueError, match="out of range"):
        J.plan(probe, J.Settings(layer=L, channel=99))
    with pytest.raises(ValueError, match="mode is one of"):
        J.plan(probe, J.Settings(layer=L, mode="movie"))
    with pytest.raises(ValueError, match="recipe is one of"):
        J.plan(probe, J.Settings(layer=L, preset="fancy"))
    with pytest.raises(ValueError, match="needs other networks"):
        J.plan(probe, J.Settings(layer=L, mode="compare"))
    with pytest.raises(ValueError, match="on a photo"):
        J.plan(probe, J.Settings(layer=L, mode="deepdream"))
    with pytest.raises(ValueError, match="outside the 8x8 map"):
        J.plan(probe, J.Settings(layer=L, objective="neuron", x=9, y=0, size=64))
