"""Dream jobs: what the Dream panel runs, built from plain settings (no widgets here).

:func:`plan` turns :class:`Settings` (mode, layer, channel, recipe, steps...) into a :class:`Job`: a generator
of :class:`Frame` (one per step, with every dream run in step and the objective curve so far), its length
and a caption. The pieces are functions of their own: :func:`objective_for` (the objective of each kind),
:func:`atlas_channels`, :func:`matching_layer` (compare networks), :func:`lockstep` (several dreams in step),
:func:`default_size` and :func:`map_size`.

>>> job = plan(probe, Settings(layer="_blocks.8._project_conv", channel=18, steps=64))
>>> for frame in job.frames:
...     frame.step, frame.history[0][-1]          # frame.steps[0].image: 1 x C x H x W in [0, 1]
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator, Sequence

import numpy as np
import torch

from ...probe import whole_number
from ...runner import Step
from . import engine
from .deepdream import deepdream
from .engine import PRESETS, DreamStep
from .objectives import Objective, channel as channel_objective, channels as channels_objective
from .objectives import layer as layer_objective, neuron as neuron_objective

SINGLE, ATLAS, DEEPDREAM, COMPARE = "single", "atlas", "deepdream", "compare"
MODES = (SINGLE, ATLAS, DEEPDREAM, COMPARE)
CHANNEL, NEURON, LAYER = "channel", "neuron", "layer"
KINDS = (CHANNEL, NEURON, LAYER)
#: what each recipe is, in a student's words (the panel's buttons)
RECIPES = {"naive": "naive: plain gradient ascent", "regularized": "regularized: smooth + jittered (Lucent)"}
CPU_SIZE = 128  #: on a CPU, dreams default to at most this many pixels a side (a step costs ~ size²)
DEEPDREAM_LR = 0.01


@dataclass(frozen=True)
class Settings:
    """One dream job's settings. ``objective``: ``"channel"``, ``"neuron"`` (at ``x``, ``y`` of the layer's map; its
    centre when None) or ``"layer"`` (all of it); ``lr`` None: the recipe's (DeepDream: 0.01); ``size`` None:
    :func:`default_size`; ``atlas``: how many channels an atlas shows, from ``channel`` on; ``octaves``: DeepDream's."""

    layer: str
    channel: int = 0
    mode: str = SINGLE
    objective: str = CHANNEL
    x: int | None = None
    y: int | None = None
    preset: str = "regularized"
    steps: int = 256
    lr: float | None = None
    size: int | None = None
    seed: int = 0
    atlas: int = 16
    octaves: int = 4


@dataclass
class Frame(Step):
    """What a dream job yields each step: ``steps``, the :class:`~.engine.DreamStep` of each dream run in step (one,
    or one per network when comparing; images are computed when read), and ``history``, the objective of every step
    so far, one list per dream (the mean over its images). ``message``: why the job ended early (a NaN)."""

    steps: list = field(default_factory=list)
    history: list = field(default_factory=list)
    message: str | None = None

    @property
    def images(self) -> list[torch.Tensor]:
        """Each dream's images, ``N x C x H x W`` in [0, 1] on the CPU."""
        return [s.image for s in self.steps]


@dataclass
class Job:
    """A planned dream job: ``frames`` (a generator of :class:`Frame`, ``total`` of them unless it stops early),
    a ``caption`` that says what it dreams, and one ``label`` per objective curve."""

    frames: Iterator[Frame]
    total: int
    caption: str
    labels: list[str]
    settings: Settings


def objective_for(probe, kind: str, layer: str, channel: int = 0, x: int | None = None, y: int | None = None, *,
                  deepdream: bool = False) -> Objective:
    """The objective of ``kind`` on ``probe``'s ``layer``: a ``"channel"``'s mean, a ``"neuron"`` (channel
    ``channel`` at ``(x, y)``; a layer without maps has units, so it is that unit), or the whole ``"layer"`` (its
    mean; for DeepDream the mean of squares, the classic choice)."""
    if kind not in KINDS:
        raise ValueError(f"The objective is one of {', '.join(map(repr, KINDS))}, got {kind!r}.")
    name = probe.layer(layer).name
    if kind == LAYER:
        return layer_objective(name, "squares" if deepdream else "mean")
    channel = check_channel(probe, name, channel)
    if kind == NEURON and probe.layer(name).spatial:
        return neuron_objective(name, channel, x, y)
    return channel_objective(name, channel)


def check_channel(probe, layer: str, channel) -> int:
    """``channel`` as an int when it is a whole number in range for ``layer``; a clear error otherwise (``2.7`` is
    not channel 2, and 99 is not the last channel)."""
    c = whole_number(channel, "the channel")
    info = probe.layer(layer)
    n = info.channels or 1
    if not 0 <= c < n:
        what = "channels" if info.spatial else "units"
        raise ValueError(f"Channel {c} is out of range: layer {info.name!r} has {n} {what} (0..{n - 1}).")
    return c


def atlas_channels(probe, layer: str, first: int, count: int) -> list[int]:
    """The channels of an atlas: ``count`` channels of ``layer`` from ``first`` on (wrapping round to 0), each once."""
    first = check_channel(probe, layer, first)
    count = whole_number(count, "the number of atlas channels")
    if count < 1:
        raise ValueError(f"An atlas shows at least one channel, got {count}.")
    n = probe.layer(layer).channels or 1
    return [(first + i) % n for i in range(min(count, n))]


def matching_layer(probe, layer: str, other):
    """The conv layer of ``other`` (another Probe) at the same relative depth as ``probe``'s ``layer`` (compare
    networks: the 10th of 40 layers matches the 5th of 20)."""
    names = probe.layers.names
    name = probe.layer(layer).name
    if name in names:
        frac = names.index(name) / max(1, len(names) - 1)
    else:  # another module: where it falls among the conv layers
        order = probe.layer(name).order
        frac = sum(l.order < order for l in probe.layers) / max(1, len(names))
    others = other.require_layers("Compare networks")
    return others[round(min(frac, 1.0) * (len(others) - 1))]


def lockstep(gens: Sequence[Iterator[DreamStep]]) -> Iterator[Frame]:
    """One job from dreams run in step (compare networks; one dream is one too): a :class:`Frame` per step with
    every dream's step and each one's objective so far. Ends with the shortest, or at a dream's message (a NaN);
    closes every dream when it ends, however it ends."""
    history: list[list[float]] = [[] for _ in gens]
    try:
        while True:
            items = [next(g, None) for g in gens]
            if any(s is None for s in items):
                return
            for s, hist in zip(items, history):
                if s.message is None:
                    hist.append(float(np.mean(s.objectives)) if s.objectives else float(s.objective))
            message = next((s.message for s in items if s.message), None)
            yield Frame(items[0].step, items[0].total, items, dict(items[0].info or {}), steps=items, history=history,
                        message=message)
            if message:
                return
    finally:
        for g in gens:
            close = getattr(g, "close", None)
            if close is not None:
                close()


def default_size(probe) -> int:
    """The image size a dream starts with: the model's input size, and on a CPU at most :data:`CPU_SIZE` pixels (a
    28x28 model dreams at 28 px; a 224 px one at 128). A model that refuses the smaller size (one that takes only its
    own size, as a patch grid does) gets exactly its own."""
    own = min(probe.transform.input_size)
    if probe.device.type != "cpu" or own <= CPU_SIZE or probe.fixed_input_size():
        return own
    x = torch.zeros(1, probe.transform.channels, CPU_SIZE, CPU_SIZE, device=probe.device)
    try:
        probe.forward(x, preprocess=False)
    except RuntimeError:
        return own
    return CPU_SIZE


def map_size(probe, layer: str, size: int) -> tuple[int, int] | None:
    """The ``(height, width)`` of ``layer``'s maps for a ``size`` px image (None for a layer of units); one truncated
    forward the first time, remembered per probe and size."""
    shapes = engine.checked(probe, layer_objective(probe.layer(layer).name), (size, size), probe.transform.channels)
    shape = next(iter(shapes.values()))
    return (int(shape[1]), int(shape[2])) if len(shape) == 3 else None


def total_steps(s: Settings) -> int:
    """How many steps the job of ``s`` runs (DeepDream: whole steps per octave)."""
    if s.mode == DEEPDREAM:
        return s.octaves * max(1, s.steps // s.octaves)
    return s.steps


def _what(probe, s: Settings, layer: str, channel: int) -> str:
    if s.objective == LAYER:
        return f"{layer} · whole layer"
    if s.objective == NEURON and probe.layer(layer).spatial:
        where = "centre" if s.x is None and s.y is None else f"x={s.x}, y={s.y}"
        return f"{layer} · channel {channel} at {where}"
    return f"{layer} · {'channel' if probe.layer(layer).spatial else 'unit'} {channel}"


def plan(probe, settings: Settings, *, others: Sequence = (), photo=None, photo_name: str = "photo") -> Job:
    """The job of ``settings`` on ``probe`` (``others``: more Probes for compare networks; ``photo``: DeepDream's
    image). Bad settings raise a clear error here, before anything runs."""
    s = settings
    if s.mode not in MODES:
        raise ValueError(f"The mode is one of {', '.join(map(repr, MODES))}, got {s.mode!r}.")
    if s.preset not in PRESETS:
        raise ValueError(f"The recipe is one of {', '.join(map(repr, PRESETS))}, got {s.preset!r}.")
    layer = probe.layer(s.layer).name
    size = s.size or default_size(probe)
    s = replace(s, layer=layer, size=size)
    kw = dict(steps=s.steps, preset=s.preset, lr=s.lr, size=size, seed=s.seed)
    recipe = f" · {s.preset} · {size} px"
    if s.mode == DEEPDREAM:
        if photo is None:
            raise ValueError("DeepDream dreams on a photo: give one (Dream(probe, photo=...)).")
        obj = objective_for(probe, s.objective, layer, s.channel, s.x, s.y, deepdream=True)
        o = whole_number(s.octaves, "the number of octaves")
        gen = deepdream(probe, photo, obj, steps=max(1, s.steps // max(1, o)), octaves=o, lr=s.lr or DEEPDREAM_LR,
                        size=size, seed=s.seed)
        caption = f"DeepDream · {_what(probe, s, layer, s.channel)} · {photo_name} · {size} px"
        return Job(lockstep([gen]), total_steps(s), caption, [caption], s)
    if s.mode == ATLAS:
        cs = atlas_channels(probe, layer, s.channel, s.atlas)
        gen = engine.dream(probe, channels_objective(layer, cs), **kw)
        span = f"channel {cs[0]}" if len(cs) == 1 else f"channels {cs[0]}–{cs[-1]}"
        caption = f"{layer} · {span}{recipe}"
        return Job(lockstep([gen]), s.steps, caption, [caption], s)
    if s.mode == COMPARE:
        if not others:
            raise ValueError("Compare networks needs other networks: Dream(probe, compare=[cw.Probe(other_model)]).")
        gens, labels = [], []
        for p in [probe, *others]:
            lay, ch, x, y = layer, s.channel, s.x, s.y
            if p is not probe:  # the same relative depth, channel (wrapped round) and position on the map
                lay = matching_layer(probe, layer, p).name
                ch = s.channel % (p.layer(lay).channels or 1)
                if s.objective == NEURON and (x is not None or y is not None) and p.layer(lay).spatial:
                    (h0, w0), (h1, w1) = map_size(probe, layer, size), map_size(p, lay, size)
                    x = None if x is None else min(w1 - 1, x * w1 // w0)
                    y = None if y is None else min(h1 - 1, y * h1 // h0)
            gens.append(engine.dream(p, objective_for(p, s.objective, lay, ch, x, y), **kw))
            labels.append(f"{p.name}: {_what(p, replace(s, x=x, y=y), lay, ch)}")
        return Job(lockstep(gens), s.steps, " | ".join(labels) + recipe, labels, s)
    obj = objective_for(probe, s.objective, layer, s.channel, s.x, s.y)
    caption = _what(probe, s, layer, s.channel) + recipe
    return Job(lockstep([engine.dream(probe, obj, **kw)]), s.steps, caption, [caption], s)
