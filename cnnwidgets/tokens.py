"""Reading a transformer's blocks as feature maps: token sequences and channels-last maps -> ``N x C x H x W``.

A ViT block outputs ``N x (extra + H*W) x C`` tokens (``extra``: class, distillation or register tokens, set
aside); a Swin block (and a ConvNeXt's inner layers) ``N x H x W x C``. :func:`detect` finds, from one output's
shape and the input size, whether and how it reads as maps; the :class:`Reshape` it returns is recorded on the
Probe's :class:`~cnnwidgets.probe.Layer` and applied inside the Probe's capture, so every panel sees C x H x W
maps as it does for a convolution. It is what timm's ``forward_intermediates(output_fmt="NCHW")`` does (prefix
tokens split off, ``reshape(N, H, W, C).permute(0, 3, 1, 2)``), found for any model from shapes alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

#: at most this many tokens before the grid are set aside (class + distillation + registers)
MAX_EXTRA = 8


@dataclass(frozen=True)
class Reshape:
    """How a layer's output becomes ``C x H x W`` maps."""

    kind: str  #: ``"tokens"`` (N x (extra + H*W) x C) or ``"channels_last"`` (N x H x W x C)
    grid: tuple[int, int]  #: H x W of the maps at the Probe's input size
    extra: int = 0  #: tokens before the grid, set aside (class / distillation / register tokens)
    stride: tuple[float, float] = (1.0, 1.0)  #: input pixels per map cell, to find the grid at another size
    tokens: int = 0  #: the sequence length at the Probe's input size

    def grid_for(self, n: int, hw) -> tuple[int, int]:
        """The grid for ``n`` grid tokens of an ``hw`` input."""
        if n == self.grid[0] * self.grid[1]:
            return self.grid
        for rnd in (math.ceil, math.floor, round):
            g = (max(1, int(rnd(hw[0] / self.stride[0]))), max(1, int(rnd(hw[1] / self.stride[1]))))
            if g[0] * g[1] == n:
                return g
        raise ValueError(f"{n} tokens do not make the {self.grid[0]}x{self.grid[1]} grid this layer has at the "
                         f"probe's input size, nor a grid for a {hw[0]}x{hw[1]} input.")

    def apply(self, t: torch.Tensor, hw=None) -> torch.Tensor:
        """``t`` (batch first) as ``N x C x H x W`` (a new tensor; differentiable)."""
        if self.kind == "channels_last":
            return t.permute(0, 3, 1, 2).contiguous()
        n = t.shape[1] - self.extra
        gh, gw = self.grid_for(n, hw or (self.grid[0] * self.stride[0], self.grid[1] * self.stride[1]))
        return t[:, self.extra:].reshape(t.shape[0], gh, gw, t.shape[2]).permute(0, 3, 1, 2).contiguous()

    def extra_tokens(self, t: torch.Tensor) -> torch.Tensor:
        """The tokens set aside, ``N x extra x C`` (empty for a map)."""
        if self.kind != "tokens":
            return t.new_zeros(t.shape[0], 0, t.shape[-1])
        return t[:, :self.extra]

    def describe(self) -> str:
        """In words, for labels: ``"197 tokens: class token + 14×14"``."""
        if self.kind == "channels_last":
            return f"{self.grid[0]}×{self.grid[1]}×C map, channels last"
        aside = {0: "", 1: "1 class token + "}.get(self.extra, f"{self.extra} class/register tokens + ")
        return f"{self.tokens} tokens: {aside}{self.grid[0]}×{self.grid[1]} grid"


def maps_shape(shape, r: Reshape) -> tuple[int, int, int]:
    """The ``C x H x W`` shape of an output of ``shape`` (one image) reshaped by ``r``."""
    return (int(shape[-1]), *r.grid)


def _grids(hw) -> dict[tuple[int, int], tuple[float, float]]:
    """Grids an ``hw`` input can be cut into (a patch size or a downsampling that divides it, or a power of two
    rounded up), with their strides."""
    h, w = int(hw[0]), int(hw[1])
    out = {}
    for s in range(2, max(h, w) + 1):
        if h % s == 0 and w % s == 0:
            out.setdefault((h // s, w // s), (float(s), float(s)))
    s = 2
    while s <= max(h, w):
        out.setdefault((-(-h // s), -(-w // s)), (float(s), float(s)))
        s *= 2
    return out


def is_grid(a: int, b: int, hw) -> bool:
    """True when an ``a x b`` map fits an ``hw`` input (a downsampling of it)."""
    return (a, b) in _grids(hw) or (a, b) == tuple(hw)


def token_grid(tokens: int, hw, extra_hint: int | None = None, given=None):
    """``(extra, (gh, gw), stride)`` reading ``tokens`` as extra tokens then a grid of an ``hw`` input, or None.
    ``given``: the grid ``(gh, gw)`` the user named (any shape; its stride is taken from the input)."""
    if given is not None:
        gh, gw = int(given[0]), int(given[1])
        for e in range(0, MAX_EXTRA + 1):
            if tokens - e == gh * gw:
                return e, (gh, gw), (hw[0] / gh, hw[1] / gw)
        return None
    grids = _grids(hw)
    order = list(range(0, MAX_EXTRA + 1))
    if extra_hint is not None and 0 <= extra_hint <= MAX_EXTRA:
        order.remove(extra_hint)
        order.insert(0, extra_hint)
    for e in order:
        n = tokens - e
        if n < 4:
            continue
        for g, stride in grids.items():
            if g[0] * g[1] == n and g[0] > 1 and g[1] > 1:
                return e, g, stride
    return None


def detect(shape, hw, *, channels_last: bool = True, extra_hint: int | None = None, given=None) -> Reshape | None:
    """How an output of ``shape`` (one image, no batch) reads as maps for an ``hw`` input, or None.

    3-D ``(a, b, c)``: channels last when ``a x b`` is a grid of the input and ``b x c`` is not (a conv's
    ``C x H x W`` stays as it is; when both read as grids it is taken as C x H x W); only when ``channels_last``.
    2-D ``(T, C)``: a token sequence when ``T`` minus up to :data:`MAX_EXTRA` tokens is a grid of the input.
    """
    if len(shape) == 3:
        a, b, c = shape
        if channels_last and is_grid(a, b, hw) and not is_grid(b, c, hw) and c > 1:
            return Reshape("channels_last", (a, b), 0, (hw[0] / a, hw[1] / b))
        return None
    if len(shape) == 2:
        t, c = shape
        found = token_grid(t, hw, extra_hint, given)
        if found is None or c < 2:
            return None
        e, g, stride = found
        return Reshape("tokens", g, e, stride, t)
    return None
