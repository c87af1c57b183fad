"""Activation maximisation and DeepDream: what image makes a layer, channel or neuron fire?

Small modules, one idea each (after Lucent): :mod:`.objectives` (what to maximise; compose with
``+ - *``), :mod:`.param` (pixels or FFT + decorrelated colour), :mod:`.transforms` (pad, jitter,
scale, rotate; by default all in one resampling), :mod:`.adam` (the optimiser), :mod:`.engine` (the step
loop, a generator of :class:`DreamStep`), :mod:`.deepdream` (octaves on a photograph) and :mod:`.jobs` (the
jobs the panel runs, from plain settings; several dreams in step). :mod:`.backend` holds the one switch to
torch's public API only. No widgets here; the panel is ``cnnwidgets.Dream``.

>>> from cnnwidgets import dream as D
>>> last = D.run(probe, D.channel("_blocks.8._project_conv", 5), steps=256)   # "regularized"
>>> last = D.run(probe, D.channel("_blocks.8._project_conv", 5), preset="naive")  # plain gradient ascent
"""
from . import backend, jobs, objectives, param, transforms
from .deepdream import deepdream
from .engine import PRESETS, DreamStep, Preset, check, dream, evaluate, run
from .objectives import (LOGITS, Objective, as_objective, channel, channels, class_logit, direction, diversity, layer,
                         neuron, per_image)

__all__ = ["dream", "run", "deepdream", "evaluate", "check", "DreamStep", "Preset", "PRESETS", "Objective", "channel",
           "channels", "neuron", "layer", "direction", "class_logit", "diversity", "per_image", "as_objective", "LOGITS",
           "objectives", "param", "transforms", "jobs", "backend"]
