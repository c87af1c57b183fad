"""Robustness transforms applied to the image before each forward (pad, jitter, scale, rotate).

Each factory returns a plain function ``f(x, generator) -> x`` on a batch ``N x C x H x W``; the
random choice comes from ``generator`` (a CPU ``torch.Generator``), so a seed fixes the run. The
whole batch gets the same draw (as in Lucent). Pure torch: no kornia.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _choice(options: Sequence, generator: torch.Generator | None):
    return options[int(torch.randint(len(options), (1,), generator=generator))]


def pad(w: int, mode: str = "constant", value: float = 0.5) -> Transform:
    """Pad every side by ``w`` pixels (``"constant"`` grey, or ``"reflect"``)."""
    def f(x, generator=None):
        return F.pad(x, [w] * 4, mode=mode, value=value) if mode == "constant" else F.pad(x, [w] * 4, mode=mode)
    return f


def shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Translate by whole pixels, filling with zeros (same size)."""
    h, w = x.shape[-2:]
    if dx == 0 and dy == 0:
        return x
    out = F.pad(x, [max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0)])
    return out[..., max(-dy, 0) : max(-dy, 0) + h, max(-dx, 0) : max(-dx, 0) + w]


def jitter(d: int) -> Transform:
    """Shift by a random whole number of pixels in ``[0, d)`` along x and y (zeros fill in)."""
    if d < 2:
        raise ValueError(f"jitter needs d >= 2, got {d}.")

    def f(x, generator=None):
        dx, dy = (int(v) for v in torch.randint(d, (2,), generator=generator))
        return shift(x, dx, dy)
    return f


def random_scale(scales: Sequence[float]) -> Transform:
    """Resize by a random factor from ``scales`` (bilinear); pad back when it shrinks (as in Lucent)."""
    def f(x, generator=None):
        s = float(_choice(scales, generator))
        h, w = x.shape[-2:]
        nh, nw = math.ceil(s * h), math.ceil(s * w)
        if (nh, nw) == (h, w):
            return x
        out = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=True)
        py, px = max(0, math.ceil((h - nh) / 2)), max(0, math.ceil((w - nw) / 2))
        return F.pad(out, [py, py, px, px]) if px or py else out
    return f


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate about the centre (bilinear, zeros outside), same size."""
    if degrees == 0:
        return x
    a = math.radians(degrees)
    n, _, h, w = x.shape
    cos, sin = math.cos(a), math.sin(a)
    # affine_grid works in [-1, 1] coordinates; correct for the aspect ratio
    theta = torch.tensor([[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(n, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_rotate(angles: Sequence[float]) -> Transform:
    """Rotate by a random angle (degrees) from ``angles``."""
    def f(x, generator=None):
        return rotate(x, float(_choice(angles, generator)))
    return f


def compose(transforms: Sequence[Transform]) -> Transform:
    def f(x, generator=None):
        for t in transforms:
            x = t(x, generator)
        return x
    return f


def standard() -> list[Transform]:
    """Lucent's ``standard_transforms``: pad 12 (grey), jitter 8, scale 0.9..1.1, rotate -10..10 deg, jitter 4."""
    return [
        pad(12, mode="constant", value=0.5),
        jitter(8),
        random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
        random_rotate(list(range(-10, 11)) + 5 * [0]),
        jitter(4),
    ]
