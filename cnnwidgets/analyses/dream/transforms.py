"""Robustness transforms applied to the image before each forward (pad, jitter, scale, rotate).

Each factory returns a function ``f(x, generator) -> x`` on a batch ``N x C x H x W``; the random
choice comes from ``generator`` (a CPU ``torch.Generator``), so a seed fixes the run. The whole
batch gets the same draw (as in Lucent). :func:`standard` is Lucent's chain, by default as one
resampling (:class:`OnePass`). Pure torch: no kornia. The one resampling calls torch's ATen
resampling ops directly, or, with :data:`.backend.PUBLIC_TORCH`, ``F.grid_sample`` and autograd.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from . import backend

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


def warp(x: torch.Tensor, m) -> torch.Tensor:
    """Warp a batch by the pixel-space affine ``m`` (2 x 3, destination <- source) the way Lucent does it
    (kornia 0.4's ``warp_affine``): bilinear, zeros outside. Its [-1, 1] coordinates divide by
    ``size - 1`` but sample with ``align_corners=False``, so each warp also resamples by about half a
    pixel: a slight smoothing that is part of Lucent's recipe (and of the images it gets)."""
    n, _, h, w = x.shape
    norm = torch.tensor([[2.0 / (w - 1), 0.0, -1.0], [0.0, 2.0 / (h - 1), -1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    m3 = torch.eye(3, dtype=torch.float64)
    m3[:2] = torch.as_tensor(m, dtype=torch.float64)
    theta = torch.linalg.inv(norm @ m3 @ torch.linalg.inv(norm))[:2].to(x.device, x.dtype)
    grid = F.affine_grid(theta.expand(n, 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotation_matrix(degrees: float, h: int, w: int) -> list:
    """Pixel-space 2 x 3 rotation about the image centre (OpenCV's / kornia's convention)."""
    a = math.radians(degrees)
    al, be = math.cos(a), math.sin(a)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    return [[al, be, (1 - al) * cx - be * cy], [-be, al, be * cx + (1 - al) * cy]]


def jitter(d: int, exact: bool = True) -> Transform:
    """Shift by a random number of pixels in ``[0, d)`` along x and y (zeros fill in): whole-pixel
    copies, or ``exact=False``: as Lucent does it (through :func:`warp`, with its slight resampling)."""
    if d < 2:
        raise ValueError(f"jitter needs d >= 2, got {d}.")

    def f(x, generator=None):
        dx, dy = (int(v) for v in torch.randint(d, (2,), generator=generator))
        return shift(x, dx, dy) if exact else warp(x, [[1.0, 0.0, float(dx)], [0.0, 1.0, float(dy)]])
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
        return F.pad(out, [px, px, py, py]) if px or py else out
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


def random_rotate(angles: Sequence[float], exact: bool = True) -> Transform:
    """Rotate by a random angle (degrees) from ``angles`` with :func:`rotate` (nothing to do at 0 degrees),
    or ``exact=False``: as Lucent does it (:func:`warp`, every step, also at 0 degrees)."""
    def f(x, generator=None):
        a = float(_choice(angles, generator))
        return rotate(x, a) if exact else warp(x, rotation_matrix(a, x.shape[-2], x.shape[-1]))
    return f


def compose(transforms: Sequence[Transform]) -> Transform:
    def f(x, generator=None):
        for t in transforms:
            x = t(x, generator)
        return x
    return f


LUCENT_SCALES = [1 + (i - 5) / 50.0 for i in range(11)]  #: 0.9, 0.92, ..., 1.1
LUCENT_ANGLES = list(range(-10, 11)) + 5 * [0]  #: degrees; 0 five more times


def _affine_grid(rows: list, ys: torch.Tensor, w: int, hc: int, wc: int) -> torch.Tensor:
    """``grid_sample``'s grid (``ys.shape + (w, 2)``, align_corners=True) for the pixel map
    ``q -> (rows[0] . (qx, qy, 1), rows[1] . (qx, qy, 1))`` into an ``hc x wc`` input, at output rows
    ``ys`` (a ``P x R`` tensor: bands of rows) and columns ``0..w-1``: two outer sums (a quarter of
    ``F.affine_grid``'s time, which multiplies a ``(h w) x 3`` base grid)."""
    xs = torch.arange(w, device=ys.device, dtype=ys.dtype)
    grid = torch.empty(*ys.shape, w, 2, device=ys.device, dtype=ys.dtype)
    for k, (r, size) in enumerate(zip(rows, (wc, hc))):
        g = 2 / max(size - 1, 1)  # pixel -> [-1, 1]
        torch.add((g * r[0]) * xs, ((g * r[1]) * ys + (g * r[2] - 1))[..., None], out=grid[..., k])
    return grid


class _Resample(torch.autograd.Function):
    """``grid_sample`` (bilinear, zeros outside, align_corners=True) of a canvas in ``parts`` bands of
    ``rows`` output rows starting every ``step`` rows, run as a batch (a band's rows that belong to the
    next band read nothing: the grid sends them outside), the bands joined, each channel mapped
    ``x * scale + shift`` and laid out NHWC or NCHW: one pass over the output. The backward hands the
    incoming gradient to the kernel as overlapping band views, without a copy, and applies the scale
    to the canvas gradient (autograd through separate steps made ~17 copies and fills)."""

    @staticmethod
    def forward(ctx, canvas, grid, parts, step, height, scale, shift, nhwc, scaled):
        n, c = canvas.shape[:2]
        src = canvas if parts == 1 else (canvas.expand(parts, -1, -1, -1) if n == 1 else canvas.repeat_interleave(parts, 0))
        y = torch.grid_sampler_2d(src, grid, 0, 0, True)  # (n parts) x c x rows x w
        rows, w = y.shape[-2:]
        y = y.view(n, parts, c, rows, w)
        head = (parts - 1) * step  # rows the first parts - 1 bands give (step each); the last band gives the rest
        # written through an n x height x w x c view of the output, whichever its memory layout
        out = (torch.empty(n, height, w, c, device=y.device, dtype=y.dtype) if nhwc else
               torch.empty(n, c, height, w, device=y.device, dtype=y.dtype).permute(0, 2, 3, 1))
        if parts > 1:
            torch.addcmul(shift.view(c), y[:, :-1, :, :step].permute(0, 1, 3, 4, 2), scale.view(c),
                          out=out[:, :head].view(n, parts - 1, step, w, c))
        torch.addcmul(shift.view(c), y[:, -1].permute(0, 2, 3, 1), scale.view(c), out=out[:, head:])
        out = out.permute(0, 3, 1, 2)
        if src.device.type == "cpu":
            # The input's gradient does not depend on the input's values, but the CPU kernel reads them; inside a
            # dream step the network's pass has pushed the canvas out of the caches by then, and those scattered
            # reads made the backward 2.6x slower (1.16 vs 0.44 ms, one image). A zero-stride stand-in of the same
            # shape reads one cache line instead.
            src = torch.zeros((), dtype=src.dtype, device=src.device).expand(src.shape)
        ctx.save_for_backward(src, grid, scale)
        ctx.shape = (n, c, parts, rows, step, w)
        ctx.scaled = scaled
        return out

    @staticmethod
    def backward(ctx, g):
        src, grid, scale = ctx.saved_tensors
        n, c, parts, rows, step, w = ctx.shape
        s = g.stride()  # band p, row r is the gradient's row p * step + r: a view, whatever g's layout
        bands = g.as_strided((n, parts, c, rows, w), (s[0], step * s[2], s[1], s[2], s[3]), g.storage_offset())
        gsrc = torch.ops.aten.grid_sampler_2d_backward(bands.reshape(n * parts, c, rows, w), src, grid, 0, 0, True,
                                                       [True, False])[0]
        if parts > 1:
            gsrc = gsrc.view(n, parts, *gsrc.shape[1:]).sum(1)
        if ctx.scaled:
            gsrc.mul_(scale.view(1, c, 1, 1))
        return gsrc, None, None, None, None, None, None, None, None


def _resample_public(canvas, grid, parts, step, height, scale, shift, nhwc):
    """:class:`_Resample` with public API only: ``F.grid_sample`` and autograd (the same values up to rounding;
    slower, as autograd copies the bands and the output)."""
    n, c = canvas.shape[:2]
    src = canvas if parts == 1 else (canvas.expand(parts, -1, -1, -1) if n == 1 else canvas.repeat_interleave(parts, 0))
    y = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=True)  # (n parts) x c x rows x w
    rows, w = y.shape[-2:]
    y = y.view(n, parts, c, rows, w)
    pieces = [y[:, :-1, :, :step].permute(0, 2, 1, 3, 4).reshape(n, c, (parts - 1) * step, w)] if parts > 1 else []
    out = torch.cat(pieces + [y[:, -1]], 2) if pieces else y[:, -1]
    out = torch.addcmul(shift.view(1, c, 1, 1), out, scale.view(1, c, 1, 1))
    return out.contiguous(memory_format=torch.channels_last) if nhwc else out.contiguous()


def _private_resample_ok(device: torch.device) -> bool:
    """:class:`_Resample` (private ATen calls) against :func:`_resample_public` on a small case, forward and backward."""
    g = torch.Generator().manual_seed(0)
    canvas = torch.rand(1, 3, 9, 10, generator=g).to(device)
    ys = (torch.arange(2.0) * 4)[:, None] + torch.arange(5.0)
    grid = _affine_grid([[0.9, 0.1, 0.3], [-0.1, 0.95, 0.2]], ys.to(device), 8, 9, 10)
    grid[:-1, 4:] = -4.0
    scale, shift = torch.tensor([2.0, 3.0, 4.0], device=device), torch.tensor([0.1, 0.2, 0.3], device=device)
    outs = []
    for f in (lambda x: _Resample.apply(x, grid, 2, 4, 9, scale, shift, True, True),
              lambda x: _resample_public(x, grid, 2, 4, 9, scale, shift, True)):
        x = canvas.clone().requires_grad_(True)
        y = f(x)
        (gx,) = torch.autograd.grad(y, x, torch.linspace(-1, 1, y.numel(), device=device).view_as(y))
        outs.append((y.detach(), gx))
    (a, ga), (b, gb) = outs
    return a.shape == b.shape and torch.allclose(a, b, atol=1e-5) and torch.allclose(ga, gb, atol=1e-4)


class OnePass:
    """Lucent's chain (pad ``pad_px`` grey, jitter ``jitter1``, random scale, random rotation, jitter
    ``jitter2``) as ONE bilinear resampling of the image: the same random draws, in the same order,
    and the same output size as :func:`standard` ``(resample="each")``, with the grey border, the
    black strips the jitters uncover and the black corners of the rotation where the chain puts
    them. The composite affine map is applied once, so the image is interpolated once instead of
    twice (a little sharper), and a step with no rotation and no scaling is an exact whole-pixel copy.

    On a CPU ``grid_sample`` works one image per thread; ``split`` (default: the torch threads, for
    one image) cuts the output into that many bands of rows run as a batch, so its backward pass,
    the costly part, uses every core (values equal to ``split=1`` up to rounding).
    :meth:`normalising` gives a copy that also applies the model's normalisation and memory layout
    in the same pass (what the dream engine uses)."""

    def __init__(self, pad_px: int = 12, jitter1: int = 8, scales: Sequence[float] = None, angles: Sequence[float] = None,
                 jitter2: int = 4, split: int | None = None, multiple: int = 1, size: tuple[int, int] | None = None):
        if jitter1 < 1 or jitter2 < 1:
            raise ValueError(f"jitters need d >= 1, got {jitter1} and {jitter2}.")
        self.pad_px, self.jitter1, self.jitter2, self.split = int(pad_px), int(jitter1), int(jitter2), split
        self.multiple = int(multiple)  #: output sizes rounded up to this (zeros below and right), for models that need it
        self.size = None if size is None else (int(size[0]), int(size[1]))  #: a fixed output size (models with a fixed grid)
        self.scales = list(LUCENT_SCALES if scales is None else scales)
        self.angles = list(LUCENT_ANGLES if angles is None else angles)
        self.scale = self.shift = None  # per-channel output map (see normalising)
        self.channels_last = False

    def normalising(self, scale: torch.Tensor, shift: torch.Tensor, channels_last: bool = False) -> "OnePass":
        """A copy whose output is ``x * scale + shift`` per channel (``1 x C x 1 x 1`` tensors; the model's
        ``1 / std`` and ``-mean / std``), NHWC when ``channels_last``: one pass instead of three."""
        other = self.with_multiple(self.multiple, self.size)
        other.scale, other.shift, other.channels_last = scale, shift, bool(channels_last)
        return other

    def with_multiple(self, multiple: int = 1, size: tuple[int, int] | None = None) -> "OnePass":
        """A copy whose output sizes are rounded up to a multiple of ``multiple`` (the extra rows and columns are
        zeros, as the strips the jitters uncover), or always ``size`` (the transformed image resampled to it, in
        the same pass: for models that take one size only)."""
        other = OnePass(self.pad_px, self.jitter1, self.scales, self.angles, self.jitter2, self.split, multiple, size)
        other.scale, other.shift, other.channels_last = self.scale, self.shift, self.channels_last
        return other

    def size_for(self, h: int, w: int, s: float) -> tuple[int, int]:
        """The output size for an ``h x w`` image at scale ``s`` (before rounding to :attr:`multiple`)."""
        ph, pw = h + 2 * self.pad_px, w + 2 * self.pad_px
        nh, nw = math.ceil(s * ph), math.ceil(s * pw)
        if (nh, nw) == (ph, pw):
            return ph, pw
        return nh + 2 * max(0, math.ceil((ph - nh) / 2)), nw + 2 * max(0, math.ceil((pw - nw) / 2))

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        n, c, h, w = x.shape
        pad_px = self.pad_px
        d8x, d8y = (int(v) for v in torch.randint(self.jitter1, (2,), generator=generator))
        s = float(_choice(self.scales, generator))
        a = math.radians(float(_choice(self.angles, generator)))
        d4x, d4y = (int(v) for v in torch.randint(self.jitter2, (2,), generator=generator))
        ph, pw = h + 2 * pad_px, w + 2 * pad_px  # after the grey pad
        nh, nw = math.ceil(s * ph), math.ceil(s * pw)  # after scaling (Lucent's rounding)
        if (nh, nw) == (ph, pw):
            ky = kx = 1.0
            oy = ox = 0
        else:
            ky, kx = (ph - 1) / max(nh - 1, 1), (pw - 1) / max(nw - 1, 1)  # interpolate(align_corners=True)
            oy, ox = max(0, math.ceil((ph - nh) / 2)), max(0, math.ceil((pw - nw) / 2))  # zeros around a shrunk image
        sh, sw = nh + 2 * oy, nw + 2 * ox  # output size
        m = self.multiple
        H, W = -(-sh // m) * m, -(-sw // m) * m  # rounded up for models that need it (zeros beyond sh x sw)
        fy = fx = 1.0  # output pixel -> pixel of the sh x sw image: a fixed size resamples it in the same pass
        if self.size is not None:
            H, W = self.size
            fy, fx = (sh - 1) / max(H - 1, 1), (sw - 1) / max(W - 1, 1)
        # the canvas: grey pad, and the first jitter as a crop of its far edges (what it uncovers reads as zeros)
        canvas = F.pad(x, [pad_px, pad_px - d8x, pad_px, pad_px - d8y], value=0.5)
        hc, wc = canvas.shape[-2:]
        # output pixel q -> canvas pixel: k * (centre + R (q - d4 - centre) - offset) - d8
        cos, sin = math.cos(a), math.sin(a)
        cx, cy = (sw - 1) / 2, (sh - 1) / 2
        ax = [kx * cos * fx, -kx * sin * fy, kx * (cx - cos * (d4x + cx) + sin * (d4y + cy) - ox) - d8x]
        ay = [ky * sin * fx, ky * cos * fy, ky * (cy - sin * (d4x + cx) - cos * (d4y + cy) - oy) - d8y]
        d4x, d4y = math.ceil(d4x / fx), math.ceil(d4y / fy)  # the jitter's strips, in output pixels
        sh, sw = min(H, math.ceil((sh - 1) / fy) + 1), min(W, math.ceil((sw - 1) / fx) + 1)
        parts = self.split if self.split is not None else (torch.get_num_threads() // n if x.device.type == "cpu" else 1)
        parts = max(1, min(int(parts), H))
        step = H // parts  # band p: output rows p * step ... p * step + rows - 1; the last band takes the rest
        rows = H - step * (parts - 1)
        ys = (torch.arange(parts, device=x.device, dtype=x.dtype) * step)[:, None] + torch.arange(rows, device=x.device, dtype=x.dtype)
        grid = _affine_grid([ax, ay], ys, W, hc, wc)  # parts x rows x W x 2
        grid[:, :, :d4x] = -4.0  # the second jitter's strips read zeros
        if W > sw:
            grid[:, :, sw:] = -4.0
        if H > sh:
            grid[ys >= sh] = -4.0
        for p in range(parts):
            if p * step >= d4y:
                break
            grid[p, : d4y - p * step] = -4.0
        if parts > 1:
            grid[:-1, step:] = -4.0  # a band's rows that the next band gives read nothing (and get no gradient)
        if parts == 1:
            grid = grid.expand(n, -1, -1, -1)
        elif n > 1:
            grid = grid.repeat(n, 1, 1, 1)
        scale = self.scale if self.scale is not None else torch.ones(c, device=x.device, dtype=x.dtype)
        shift = self.shift if self.shift is not None else torch.zeros(c, device=x.device, dtype=x.dtype)
        if backend.private_ok("grid_sampler_2d", x.device, _private_resample_ok):
            return _Resample.apply(canvas, grid, parts, step, H, scale, shift, self.channels_last, self.scale is not None)
        return _resample_public(canvas, grid, parts, step, H, scale, shift, self.channels_last)


def pad_to_multiple(m: int) -> Transform:
    """Zeros below and to the right up to the next multiple of ``m`` in height and width."""
    def f(x, generator=None):
        h, w = x.shape[-2:]
        return F.pad(x, [0, -(-w // m) * m - w, 0, -(-h // m) * m - h])
    return f


def resize_to(h: int, w: int) -> Transform:
    """Bilinear resize to ``h x w`` (for models that take one size only)."""
    def f(x, generator=None):
        return x if tuple(x.shape[-2:]) == (h, w) else F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    return f


def to_size(transforms: Sequence[Transform], h: int, w: int) -> list[Transform]:
    """``transforms`` whose output is always ``h x w`` (for models with a fixed input grid, e.g. vision transformers)."""
    ts = list(transforms)
    if ts and isinstance(ts[-1], OnePass):
        return ts[:-1] + [ts[-1].with_multiple(1, (h, w))]
    return ts + [resize_to(h, w)]


def to_multiple(transforms: Sequence[Transform], m: int) -> list[Transform]:
    """``transforms`` whose output sizes are rounded up to a multiple of ``m`` (for models that need it)."""
    ts = list(transforms)
    if ts and isinstance(ts[-1], OnePass):
        return ts[:-1] + [ts[-1].with_multiple(m, ts[-1].size)]
    return ts + [pad_to_multiple(m)]


def output_sizes(transforms: Sequence[Transform], h: int, w: int, draws: int = 64) -> list[tuple[int, int]]:
    """The ``(height, width)`` sizes ``transforms`` make of an ``h x w`` image: exactly for :class:`OnePass` (one per
    scale), else those seen over ``draws`` random draws of a fixed generator (on a 1-channel blank image: cheap)."""
    ts = list(transforms)
    if len(ts) == 1 and isinstance(ts[0], OnePass):
        return sorted({ts[0].size_for(h, w, s) for s in ts[0].scales})
    g = torch.Generator().manual_seed(0)
    f = compose(ts)
    return sorted({tuple(f(torch.zeros(1, 1, h, w), g).shape[-2:]) for _ in range(draws)})


def one_pass(pad_px: int = 12, jitter1: int = 8, scales: Sequence[float] = LUCENT_SCALES,
             angles: Sequence[float] = LUCENT_ANGLES, jitter2: int = 4, split: int | None = None) -> OnePass:
    """:class:`OnePass`: Lucent's standard chain as one resampling."""
    return OnePass(pad_px, jitter1, scales, angles, jitter2, split)


#: below this image size (px) the transforms' pixel amounts shrink with the image (Lucent's are meant for ~224 px)
SMALL = 128


def standard(resample: str = "once", size: int | None = None) -> list[Transform]:
    """Lucent's ``standard_transforms``: pad 12 (grey), jitter 8, scale 0.9..1.1, rotate -10..10 deg, jitter 4.

    ``size``: the image's (shorter) side; below :data:`SMALL` px the pad and jitters shrink in proportion (a
    28 px digit padded by 12 and shifted by 8 px would mostly be border), at least 1 px of pad and 2 of jitter.

    ``resample="once"`` (default): the whole chain as one resampling (:func:`one_pass`), the fastest; a
    little sharper, it reached a higher final objective than Lucent's (16 seeds, 64 steps, the Dream
    panel's layer: mean 30.3 vs 29.1, ``benchmarks/dream.py``).
    ``"each"``: each transform on its own, the jitters as whole-pixel copies. Over 10 seeds at 64
    steps it reached the same final objective as Lucent's (mean 17.69 vs 17.61), and costs less.
    ``"lucent"``: jitter and rotation resampled exactly as Lucent (kornia 0.4) does (:func:`warp`):
    with the same seed and the same random draws, a dream reproduces Lucent's image and objective."""
    k = min(1.0, size / SMALL) if size else 1.0
    p, j1, j2 = (12, 8, 4) if k == 1.0 else (max(1, round(12 * k)), max(2, round(8 * k)), max(2, round(4 * k)))
    if resample == "once":
        return [one_pass(p, j1, jitter2=j2)]
    if resample not in ("each", "lucent"):
        raise ValueError(f"resample must be 'once', 'each' or 'lucent', got {resample!r}.")
    exact = resample == "each"
    return [
        pad(p, mode="constant", value=0.5),
        jitter(j1, exact),
        random_scale(LUCENT_SCALES),
        random_rotate(LUCENT_ANGLES, exact),
        jitter(j2, exact),
    ]
