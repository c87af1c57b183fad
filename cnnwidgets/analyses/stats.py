"""Statistics of weights and activations, and the channel bookkeeping of the feature-map grid.

Pure numpy/torch (no widgets): :func:`describe` (seed 003's mean, std with ddof=1, min, max, plus
the fraction of zeros and the count of NaN/inf), :func:`histogram` (numpy's counts, non-finite
values left out and counted), :func:`parameter_table` (every entry of a ``state_dict`` but
BatchNorm's ``num_batches_tracked``), dead channels, channel order, and :class:`GridPlan`: which
channels are on which page of a large layer and how much the tiles are scaled down.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bfloat16 or x.dtype == torch.float16:
            x = x.float()
        x = x.cpu().numpy()
    return np.asarray(x)


# --- statistics --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stats:
    """Summary of one tensor; mean/std/min/max are over its finite values (NaN/inf are counted apart)."""

    count: int  #: number of elements
    mean: float
    std: float  #: sample standard deviation (ddof=1), like seed 003's ``weight_t.std(ddof=1)``
    min: float
    max: float
    zeros: float  #: fraction of elements exactly 0
    nan: int = 0
    inf: int = 0

    def as_dict(self) -> dict:
        return dict(count=self.count, mean=self.mean, std=self.std, min=self.min, max=self.max, zeros=self.zeros,
                    nan=self.nan, inf=self.inf)

    @property
    def finite(self) -> bool:
        return self.nan == 0 and self.inf == 0


_CHUNK = 1 << 21


def _mean_std(f: np.ndarray) -> tuple[float, float]:
    """Mean and sample std (ddof=1) accumulated in float64, chunk by chunk (no float64 copy of a big tensor)."""
    n = f.size
    total = sum(float(f[i : i + _CHUNK].sum(dtype=np.float64)) for i in range(0, n, _CHUNK))
    mean = total / n
    if n < 2:
        return mean, float("nan")
    ss = 0.0
    for i in range(0, n, _CHUNK):
        d = f[i : i + _CHUNK].astype(np.float64) - mean
        ss += float(np.square(d, out=d).sum())  # not np.dot: BLAS threads stall on a busy machine
    return mean, math.sqrt(ss / (n - 1))


def describe(x) -> Stats:
    """Mean, std (ddof=1), min, max, fraction of zeros, and NaN/inf counts of a tensor or array."""
    a = _np(x).ravel()
    n = int(a.size)
    if n == 0:
        nan = float("nan")
        return Stats(0, nan, nan, nan, nan, nan)
    if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
        a = a.astype(np.float64)
    lo, hi = a.min(), a.max()  # NaN propagates: finite extremes mean every value is finite
    if np.isfinite(lo) and np.isfinite(hi):
        f, nan, inf = a, 0, 0
    else:
        finite = np.isfinite(a)
        nan = int(np.isnan(a).sum())
        inf = int(n - finite.sum() - nan)
        f = a[finite]
        lo, hi = (f.min(), f.max()) if f.size else (np.nan, np.nan)
    mean, std = _mean_std(f) if f.size else (float("nan"), float("nan"))
    zeros = (n - int(np.count_nonzero(a))) / n
    return Stats(n, mean, std, float(lo), float(hi), zeros, nan, inf)


@dataclass(frozen=True)
class Histogram:
    """Counts of a tensor's finite values in ``len(counts)`` equal bins between ``edges[0]`` and ``edges[-1]``."""

    counts: np.ndarray  #: int64, one per bin
    edges: np.ndarray  #: bin edges, ``len(counts) + 1``
    nan: int = 0  #: NaN values left out
    inf: int = 0  #: +-inf values left out

    @property
    def centers(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2

    @property
    def width(self) -> float:
        return float(self.edges[1] - self.edges[0]) if len(self.edges) > 1 else 1.0


def histogram(x, bins: int = 50, range: tuple[float, float] | None = None) -> Histogram:
    """``np.histogram`` of the finite values of ``x`` (50 bins as in seed 003); NaN/inf are counted apart."""
    a = _np(x).ravel()
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    finite = np.isfinite(a)
    nan = int(np.isnan(a).sum())
    inf = int(a.size - finite.sum() - nan)
    f = a if nan == 0 and inf == 0 else a[finite]
    counts, edges = np.histogram(f, bins=bins, range=range)
    return Histogram(counts.astype(np.int64), edges, nan, inf)


# --- every parameter of a model ------------------------------------------------------------------

@dataclass(frozen=True)
class ParameterRow:
    """One row of :func:`parameter_table`."""

    name: str  #: state_dict key, e.g. ``"features.0.weight"``
    module: str  #: the owning module's name, e.g. ``"features.0"``
    kind: str  #: ``"weight"``, ``"bias"``, ``"running_mean"``, ...
    shape: tuple[int, ...]
    stats: Stats
    trainable: bool  #: a parameter (True) or a buffer such as BatchNorm's running statistics (False)
    order: int  #: position in the state_dict (model order)

    def value(self, key: str):
        """The sort key for column ``key``: name, module, kind, size, mean, std, min, max, zeros, absmax."""
        if key in ("name", "module", "kind", "order"):
            return getattr(self, key)
        if key == "size":
            return self.stats.count
        if key == "absmax":
            return max(abs(self.stats.min), abs(self.stats.max))
        return getattr(self.stats, key)


SORT_KEYS = ("order", "name", "size", "mean", "std", "min", "max", "zeros", "absmax")


def parameter_table(model, trainable=None) -> list[ParameterRow]:
    """Statistics of every entry of ``model.state_dict()`` (or of a ``{name: tensor}`` mapping, with the names of
    the ``trainable`` ones) except BatchNorm's ``num_batches_tracked`` and non-float buffers."""
    if isinstance(model, nn.Module):
        trainable = {n for n, _ in model.named_parameters()}
        model = model.state_dict()
    trainable = set(trainable or ())
    rows = []
    for i, (name, t) in enumerate(model.items()):
        if name.endswith("num_batches_tracked") or not isinstance(t, torch.Tensor) or not t.is_floating_point():
            continue
        module, _, kind = name.rpartition(".")
        rows.append(ParameterRow(name, module, kind, tuple(t.shape), describe(t), name in trainable, i))
    return rows


def sort_rows(rows: Sequence[ParameterRow], key: str = "order", descending: bool = False) -> list[ParameterRow]:
    """Rows sorted by a column of :data:`SORT_KEYS`; NaN statistics go last."""
    if key not in SORT_KEYS:
        raise ValueError(f"Sort by one of {SORT_KEYS}, got {key!r}.")

    def bad(r):
        v = r.value(key)
        return isinstance(v, float) and math.isnan(v)

    good = sorted((r for r in rows if not bad(r)), key=lambda r: r.value(key), reverse=descending)
    return good + [r for r in rows if bad(r)]


def module_parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's own parameters and floating-point buffers (not its children's), by short name."""
    out = {n: p for n, p in module.named_parameters(recurse=False) if p is not None}
    for n, b in module.named_buffers(recurse=False):
        if b is not None and b.is_floating_point():
            out[n] = b
    return out


# --- channels ----------------------------------------------------------------------------------

def _maps(acts) -> np.ndarray:
    a = _np(acts)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError(f"Expected the maps of one image (CxHxW or 1xCxHxW), got a batch of {a.shape[0]}.")
        a = a[0]
    if a.ndim != 3:
        raise ValueError(f"Expected feature maps CxHxW, got shape {tuple(a.shape)}.")
    return a


def channel_means(acts) -> np.ndarray:
    """Mean activation of each channel of ``CxHxW`` maps (non-finite values ignored; NaN if none is finite)."""
    a = _maps(acts).reshape(_maps(acts).shape[0], -1)
    finite = np.isfinite(a)
    if finite.all():
        return a.mean(axis=1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, a, 0).sum(axis=1, dtype=np.float64) / finite.sum(axis=1)


def dead_channels(acts, tol: float = 0.0) -> np.ndarray:
    """Boolean mask of channels that are all zero (``|a| <= tol`` everywhere): seed 003's black maps."""
    a = _maps(acts)
    a = a.reshape(a.shape[0], -1)
    if tol == 0:
        return ~a.any(axis=1) if np.isfinite(a).all() else (a == 0).all(axis=1)
    return (np.abs(a) <= tol).all(axis=1)


def channel_order(acts, by: str = "index") -> np.ndarray:
    """Channel indices by ``"index"`` or by ``"mean"`` activation (highest first, ties by index)."""
    c = _maps(acts).shape[0]
    if by == "index":
        return np.arange(c)
    if by == "mean":
        m = channel_means(acts)
        m = np.where(np.isnan(m), -np.inf, m)
        return np.argsort(-m, kind="stable")
    raise ValueError(f"Order channels by 'index' or 'mean', got {by!r}.")


def visible_channels(acts, order: str = "index", hide_dead: bool = False) -> tuple[np.ndarray, int]:
    """Channels to show, in order, and how many dead channels were left out."""
    idx = channel_order(acts, order)
    if not hide_dead:
        return idx, 0
    dead = dead_channels(acts)
    return idx[~dead[idx]], int(dead.sum())


def nonfinite_counts(x) -> tuple[int, int, int]:
    """Counts of NaN, +inf and -inf values."""
    a = _np(x)
    if not np.issubdtype(a.dtype, np.floating) or np.isfinite(a).all():
        return 0, 0, 0
    return int(np.isnan(a).sum()), int(np.isposinf(a).sum()), int(np.isneginf(a).sum())


def finite_range(x) -> tuple[float, float]:
    """Min and max of the finite values (0, 0 if there are none)."""
    a = _np(x)
    if a.size and np.isfinite(a).all():
        return float(a.min()), float(a.max())
    f = a[np.isfinite(a)]
    return (float(f.min()), float(f.max())) if f.size else (0.0, 0.0)


# --- the grid of a large layer: pages and scale -------------------------------------------------

@dataclass(frozen=True)
class GridPlan:
    """How ``n`` tiles of ``h x w`` are shown: ``page_size`` tiles per page, each scaled down by ``scale``.

    Every tile is on exactly one page (none is dropped); ``scale`` > 1 means each tile is averaged
    over ``scale x scale`` blocks so that a page stays about the size it is displayed at.
    """

    n: int
    h: int
    w: int
    page_size: int
    scale: int = 1
    pad: int = 1

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.n / self.page_size)) if self.page_size else 1

    def page(self, k: int) -> range:
        """Positions (in display order) of the tiles on page ``k`` (0-based)."""
        if not 0 <= k < self.pages:
            raise IndexError(f"Page {k} is out of range: there are {self.pages} pages.")
        return range(k * self.page_size, min(self.n, (k + 1) * self.page_size))

    def page_of(self, position: int) -> int:
        return position // self.page_size if self.page_size else 0

    @property
    def tile_hw(self) -> tuple[int, int]:
        """Tile size after scaling."""
        return math.ceil(self.h / self.scale), math.ceil(self.w / self.scale)

    def cols(self, k: int = 0) -> int:
        from ..render import grid_shape

        return grid_shape(len(self.page(k)))[1] if self.n else 1

    def tile_at(self, k: int, x: float, y: float) -> int | None:
        """The position (display order) of the tile at pixel ``(x, y)`` of page ``k``'s mosaic, or None."""
        th, tw = self.tile_hw
        cols = self.cols(k)
        if x < 0 or y < 0:
            return None
        c, r = int(x // (tw + self.pad)), int(y // (th + self.pad))
        if c >= cols:  # a click on the 1-pixel gap after a tile counts for that tile
            return None
        i = r * cols + c
        p = self.page(k)
        return p.start + i if i < len(p) else None

    def label(self, k: int) -> str:
        """``"channels 1–256 of 2048"`` (1-based positions in display order)."""
        if self.n == 0:
            return "no channels"
        p = self.page(k)
        return f"channels {p.start + 1}–{p.stop} of {self.n}"


def plan_grid(n: int, h: int, w: int, max_tiles: int = 256, max_pixels: int = 2**18, pad: int = 1) -> GridPlan:
    """Pages of at most ``max_tiles`` tiles; tiles scaled down by an integer factor until a page has
    at most ``max_pixels`` pixels (about what the browser shows; the large view keeps full resolution)."""
    page = max(1, min(n, max_tiles))
    scale = 1
    while page * math.ceil(h / scale) * math.ceil(w / scale) > max_pixels and min(h, w) / scale > 4:
        scale += 1
    return GridPlan(n, h, w, page, scale, pad)


def downsample(unit: np.ndarray, scale: int) -> np.ndarray:
    """Average ``...xHxW`` over ``scale x scale`` blocks (edge blocks over what exists); 1 = unchanged.

    NaN in a block gives NaN, so non-finite values stay visible after scaling.
    """
    if scale <= 1:
        return unit
    a = np.asarray(unit, dtype=np.float32)
    h, w = a.shape[-2:]
    H, Wd = math.ceil(h / scale) * scale, math.ceil(w / scale) * scale
    pad = [(0, 0)] * (a.ndim - 2) + [(0, H - h), (0, Wd - w)]
    valid = np.pad(np.ones((h, w), np.float32), pad[-2:])
    p = np.pad(a, pad)
    shape = a.shape[:-2] + (H // scale, scale, Wd // scale, scale)
    with np.errstate(invalid="ignore"):
        s = p.reshape(shape).sum(axis=(-3, -1))
    cnt = valid.reshape(H // scale, scale, Wd // scale, scale).sum(axis=(1, 3))
    return (s / cnt).astype(np.float32)


def filter_images(weight, per_filter: bool = True) -> np.ndarray:
    """First-layer filters ``OxIxkxk`` -> ``Oxkxkx3`` in [0, 1] (RGB if I == 3, else the mean over inputs, gray).

    Each filter is scaled to its own range (``per_filter``) or all to the layer's range (seed 002).
    """
    w = _np(weight).astype(np.float32)
    if w.ndim != 4:
        raise ValueError(f"Expected conv weights OxIxkHxkW, got shape {w.shape}.")
    if w.shape[1] != 3:
        w = np.repeat(w.mean(axis=1, keepdims=True), 3, axis=1)
    w = w.transpose(0, 2, 3, 1)
    axes = (1, 2, 3) if per_filter else (0, 1, 2, 3)
    lo = np.nanmin(w, axis=axes, keepdims=True)
    hi = np.nanmax(w, axis=axes, keepdims=True)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.clip((w - lo) / span, 0, 1)
