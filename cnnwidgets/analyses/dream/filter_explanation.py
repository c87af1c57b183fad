"""The NTU ML homework's filter explanation (HW9, ``filter_explanation``), as a job of the dream engine.

The homework reads one filter of one convolution (``model.cnn[6]``, ``model.cnn[23]``: outputs before their
BatchNorm) on a batch of images, then changes those images with Adam (lr 0.1, 100 steps) to make the filter's
sum as large as it can: no clamping, no regularisation, so the pixels leave [0, 1] and the picture is mostly
high-frequency noise on top of the photo. ``recipe="regularized"`` dreams the same filter with the dream
engine's regularised recipe instead (from noise: smooth, jittered, decorrelated colour), which shows the
pattern the filter answers to.

>>> for s in filter_explanation(probe, images, "cnn.6", 0):    # Step(step, 100, FilterExplanation)
...     s.value.history[-1]                                    # the filter's sum, summed over the images
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from ...probe import whole_number
from ...runner import Step
from . import engine
from .objectives import Objective, _check_channel, channel as channel_objective

#: the homework's loop: the input images' own pixels, Adam lr 0.1, 100 steps, nothing else
HOMEWORK = engine.Preset(param="pixels", lr=0.1, weight_decay=0.0, transforms=None, rescale="none", steps=100)
RECIPES = ("homework", "regularized")


def filter_sum(layer: str, c: int) -> Objective:
    """The sum of channel ``c`` of ``layer`` over its whole map, per image (the homework's objective)."""
    return Objective(lambda acts: acts[layer][:, c].flatten(1).sum(1), [layer], f"sum of {layer}:{c}",
                     [_check_channel(layer, c)])


@dataclass
class FilterExplanation:
    """What :func:`filter_explanation` has so far. ``images``: the inputs (N x C x H x W in [0, 1]);
    ``activations``: the filter's map on each (N x h x w; the homework's "filter activation" row);
    ``visualizations``: the images after ``step`` steps (unclamped for the homework; one regularised dream),
    the homework's "filter visualization" row; ``history``: the objective at each step."""

    layer: str
    channel: int
    recipe: str
    images: torch.Tensor
    activations: torch.Tensor
    visualizations: torch.Tensor
    step: int = 0
    steps: int = 0
    history: list = field(default_factory=list)


def activations(probe, images: torch.Tensor, layer: str, c: int) -> torch.Tensor:
    """The map of filter ``c`` of ``layer`` on each image (N x h x w, no grad)."""
    name = probe.layer(layer).name
    x = probe.transform.normalize(images.to(probe.device, torch.float32))
    return probe.capture(x, [name])[name][:, c].detach().float().cpu()


def filter_explanation(probe, images, layer: str, channel: int = 0, *, recipe: str = "homework",
                       steps: int | None = None, lr: float | None = None, seed: int = 0) -> Iterator[Step]:
    """A job (``Step(step, steps, FilterExplanation)`` per step) explaining filter ``channel`` of ``layer``.

    ``images``: N x C x H x W in [0, 1] at the model's input size (``ToTensor`` images, as the homework's).
    ``recipe="homework"``: the homework's loop (Adam lr 0.1 on the images' pixels, 100 steps, maximising the
    filter's sum, no clamp); ``"regularized"``: the dream engine's regularised recipe from noise (256 steps,
    one image). ``steps`` and ``lr`` override the recipe's. Checked before the job starts."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe is 'homework' or 'regularized', not {recipe!r}.")
    images = torch.as_tensor(images, dtype=torch.float32)
    images = images[None] if images.ndim == 3 else images
    if images.ndim != 4 or images.shape[1] != probe.transform.channels:
        raise ValueError(f"images are N x {probe.transform.channels} x H x W in [0, 1], got shape {tuple(images.shape)}.")
    name = probe.layer(layer).name
    channel = whole_number(channel, "the channel")
    _check_channel(name, channel)(probe, {})
    acts = activations(probe, images, name, channel)
    if recipe == "homework":
        # the whole batch in one forward, as the homework: 100 unclamped Adam steps amplify any rounding difference
        run = engine.dream(probe, filter_sum(name, channel), preset=HOMEWORK, init=images, steps=steps, lr=lr,
                           seed=seed, fold_bn=False, channels_last=False, chunk=images.shape[0])
    else:
        run = engine.dream(probe, channel_objective(name, channel), preset="regularized", steps=steps, lr=lr,
                           seed=seed, size=tuple(images.shape[-2:]))
    return _job(run, FilterExplanation(name, channel, recipe, images, acts, images.clone()))


def _job(run, fe: FilterExplanation) -> Iterator[Step]:
    for s in run:
        fe.history.append(s.objective)
        fe.step, fe.steps = s.step, s.total
        fe.visualizations = s.image
        yield Step(s.step, s.total, fe, {"status": f"filter {fe.channel} of {fe.layer}: step {s.step} / {s.total}",
                                         "message": s.message})
