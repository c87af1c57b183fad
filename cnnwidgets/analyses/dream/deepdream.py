"""Classic DeepDream (Mordvintsev et al., 2015) on a real photograph.

The photo is processed from a small octave up to full size; at each octave the image takes
normalised gradient-ascent steps (``img += lr * g / mean|g|``) on a layer objective, with a
random roll each step, and the detail it gained is carried up to the next octave.

>>> for s in deepdream(probe, sample_image("chelsea"), "_blocks.5._project_conv"):
...     pass                                   # s.image: 1 x C x H x W in [0, 1] (CPU), at full size
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from ...images import to_tensor
from .engine import DreamStep, check, forward_chunks, layer_keys, model_input, prefers_channels_last
from .objectives import Objective, as_objective
from .objectives import layer as layer_objective


def _resize(t: torch.Tensor, hw) -> torch.Tensor:
    return F.interpolate(t, size=tuple(hw), mode="bilinear", align_corners=False)


def photo_tensor(photo, size: int | None, channels: int = 3) -> torch.Tensor:
    """A photo as ``1 x C x H x W`` in [0, 1], its shorter side resized to ``size`` (kept if None)."""
    t = to_tensor(photo, channels)[None]
    if size:
        h, w = t.shape[-2:]
        s = size / min(h, w)
        t = _resize(t, (max(1, round(h * s)), max(1, round(w * s)))).clamp(0, 1)
    return t


def deepdream(probe, photo, objective="auto", *, steps: int = 10, octaves: int = 4, octave_scale: float = 1.4,
              lr: float = 0.01, jitter: int = 16, size: int | None = None, seed: int = 0) -> Iterator[DreamStep]:
    """DeepDream ``photo`` (anything :func:`~cnnwidgets.images.to_tensor` takes) on ``probe``'s model.

    ``objective``: an :class:`~.objectives.Objective`, or a layer (name/index) whose mean of squares
    is maximised (the classic choice; ``"auto"`` takes a middle conv layer). ``steps`` per octave;
    ``lr``: step size in [0, 1] pixel units; ``size``: shorter side of the photo (default: the
    model's input size). Yields ``octaves * steps`` :class:`DreamStep` (images at full size).
    """
    if objective == "auto":
        objective = probe.layers[len(probe.layers) // 2].name
    if not isinstance(objective, Objective):
        objective = layer_objective(objective, "squares") if not (isinstance(objective, str) and ":" in objective) else as_objective(objective)
    if steps < 1 or octaves < 1:
        raise ValueError(f"steps and octaves must be at least 1, got steps={steps}, octaves={octaves}.")
    if not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r} (try 0.01).")
    channels = probe.transform.channels
    base = photo_tensor(photo, size or min(probe.transform.input_size), channels)
    full = base.shape[-2:]
    shapes = [tuple(max(1, round(d / octave_scale**k)) for d in full) for k in reversed(range(octaves))]
    check(probe, objective, shapes[0], channels)
    names = layer_keys(probe, objective)
    capture_names = sorted(set(names.values()))
    return _loop(probe, objective, base.to(probe.device), shapes, steps, lr, jitter, seed, names, capture_names)


def _loop(probe, objective, base, shapes, steps, lr, jitter, seed, names, capture_names):
    generator = torch.Generator().manual_seed(int(seed))
    normalise = model_input(probe, [])  # the model's mean and std, one multiply-add
    total = len(shapes) * steps
    full = base.shape[-2:]
    nhwc = prefers_channels_last(probe)
    model = probe.folded(capture_names)  # BatchNorms folded into their convolutions: faster steps, same values
    detail = None
    i = 0
    for o, hw in enumerate(shapes):
        base_o = _resize(base, hw) if hw != tuple(full) else base
        img = base_o + (_resize(detail, hw) if detail is not None else 0)
        img = img.clamp(0, 1).detach()
        for _ in range(steps):
            i += 1
            dx, dy = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator)) if jitter else (0, 0)
            rolled = torch.roll(img, (dy, dx), (2, 3)).requires_grad_(True)
            got = forward_chunks(model, normalise(rolled, None), capture_names, rolled.shape[0], nhwc)
            value = objective({k: got[n] for k, n in names.items()}).sum()
            (g,) = torch.autograd.grad(value, rolled)
            g = torch.roll(g, (-dy, -dx), (2, 3))
            if not torch.isfinite(g).all():
                yield DreamStep(i, total, None, {"octave": o}, image=_resize(img, full).cpu(), objective=float(value.detach()),
                                message=f"Stopped at step {i}: the gradient became NaN/inf.")
                return
            img = (img + lr * g / (g.abs().mean() + 1e-8)).clamp(0, 1)
            shown = (img if hw == tuple(full) else _resize(img, full)).detach().to("cpu")
            yield DreamStep(i, total, shown, {"octave": o + 1, "octaves": len(shapes)}, image=shown,
                            objective=float(value.detach()), objectives=[float(value.detach())])
        detail = img - base_o
