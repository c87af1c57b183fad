"""Arrays to pixels: normalisation, colormaps, mosaics and PNG/JPEG bytes.

Pure numpy/PIL (matplotlib only for its colormap tables); no widgets. Panels call these to turn
tensors into the bytes an ``ipywidgets.Image`` shows, tests call them to check pixels.
"""
from __future__ import annotations

import io
import math
from functools import lru_cache

import numpy as np
import torch
from PIL import Image

NAN_RGB = (255, 0, 255)  # magenta: not-a-number
POSINF_RGB = (255, 255, 255)
NEGINF_RGB = (0, 0, 0)


@lru_cache(maxsize=64)
def lut(cmap: str) -> np.ndarray:
    """A matplotlib colormap as a 256x3 uint8 table."""
    import matplotlib

    try:
        cm = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"Unknown colormap {cmap!r}; try 'viridis', 'gray', 'twilight', 'jet', 'magma' or 'RdBu_r'.") from None
    return (cm(np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)


def as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


def normalize(maps, mode: str = "channel", lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Scale maps ``CxHxW`` (or ``HxW``) to [0, 1], per ``"channel"`` or over the whole ``"layer"``.

    Non-finite values are ignored for the range and stay non-finite, so they can be drawn apart.
    A constant map becomes 0 (dead channels stay dark). ``lo``/``hi`` fix the range.
    """
    a = as_numpy(maps).astype(np.float32, copy=False)
    squeeze = a.ndim == 2
    if squeeze:
        a = a[None]
    finite = np.isfinite(a)
    if lo is not None and hi is not None:
        mn = np.full((a.shape[0], 1, 1), lo, np.float32)
        mx = np.full((a.shape[0], 1, 1), hi, np.float32)
    elif mode == "channel":
        mn = np.where(finite, a, np.inf).min(axis=(1, 2), keepdims=True)
        mx = np.where(finite, a, -np.inf).max(axis=(1, 2), keepdims=True)
    elif mode == "layer":
        f = a[finite]
        mn = np.full((a.shape[0], 1, 1), f.min() if f.size else 0.0, np.float32)
        mx = np.full((a.shape[0], 1, 1), f.max() if f.size else 0.0, np.float32)
    else:
        raise ValueError(f"normalize mode must be 'channel' or 'layer', got {mode!r}.")
    mn = np.where(np.isfinite(mn), mn, 0.0)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    span = mx - mn
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(span > 0, (a - mn) / np.where(span > 0, span, 1.0), 0.0)
    out = np.where(finite, np.clip(out, 0.0, 1.0), a)  # keep nan/inf for colorize
    return out[0] if squeeze else out


def colorize(unit, cmap: str = "viridis") -> np.ndarray:
    """Values in [0, 1] (any shape ``...xHxW``) -> uint8 RGB ``...xHxWx3``; NaN magenta, +inf white, -inf black."""
    u = as_numpy(unit)
    table = lut(cmap)
    finite = np.isfinite(u)
    idx = (np.clip(np.where(finite, u, 0.0), 0.0, 1.0) * 255).round().astype(np.uint8)
    rgb = table[idx]
    if not finite.all():
        rgb[np.isnan(u)] = NAN_RGB
        rgb[np.isposinf(u)] = POSINF_RGB
        rgb[np.isneginf(u)] = NEGINF_RGB
    return rgb


def grid_shape(n: int, cols: int | None = None) -> tuple[int, int]:
    """Rows and columns for ``n`` tiles: seed 000's mosaics (64 -> 8x8, 128 -> 8x16, 512 -> 16x32)."""
    if n <= 0:
        return (0, 0)
    if cols is None:
        rows = 2 ** (int(math.log2(n)) // 2) if n & (n - 1) == 0 else int(math.floor(math.sqrt(n)))
        rows = max(rows, 1)
        cols = math.ceil(n / rows)
    rows = math.ceil(n / cols)
    return rows, cols


def mosaic(tiles: np.ndarray, cols: int | None = None, pad: int = 1, pad_value=255) -> np.ndarray:
    """Tiles ``NxHxW`` or ``NxHxWx3`` -> one image with ``pad`` pixels between tiles."""
    t = np.asarray(tiles)
    n, h, w = t.shape[:3]
    rows, cols = grid_shape(n, cols)
    extra = t.shape[3:]
    out = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, *extra), pad_value, dtype=t.dtype)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = t[i]
    return out


def tile_origin(index: int, cols: int, h: int, w: int, pad: int = 1) -> tuple[int, int]:
    """Top-left pixel (y, x) of tile ``index`` in a :func:`mosaic`."""
    r, c = divmod(index, cols)
    return r * (h + pad), c * (w + pad)


def upscale(rgb: np.ndarray, min_side: int) -> np.ndarray:
    """Nearest-neighbour enlarge so the shorter side is at least ``min_side`` (tiny maps stay crisp)."""
    h, w = rgb.shape[:2]
    k = max(1, math.ceil(min_side / max(1, min(h, w))))
    return rgb if k == 1 else np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)


def image_rgb(img) -> np.ndarray:
    """A ``CxHxW`` tensor in [0, 1] (1 or 3 channels) -> uint8 ``HxWx3``."""
    a = as_numpy(img)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.ndim == 3 and a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.dtype != np.uint8:
        a = (np.clip(np.nan_to_num(a), 0, 1) * 255).round().astype(np.uint8)
    return a


def encode(rgb: np.ndarray, fmt: str = "png", quality: int = 85) -> bytes:
    """uint8 ``HxW`` or ``HxWx3`` -> PNG (lossless) or JPEG (fast, for streaming) bytes."""
    im = Image.fromarray(np.ascontiguousarray(rgb))
    buf = io.BytesIO()
    if fmt == "png":
        im.save(buf, format="PNG", compress_level=1)
    elif fmt in ("jpeg", "jpg"):
        im.save(buf, format="JPEG", quality=quality)
    else:
        raise ValueError(f"fmt must be 'png' or 'jpeg', got {fmt!r}.")
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 array (tests use it to check what a panel shows)."""
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def colorbar(cmap: str, height: int = 256, width: int = 12) -> np.ndarray:
    """A vertical colour bar, high values at the top, uint8 ``height x width x 3``."""
    col = lut(cmap)[np.linspace(255, 0, height).round().astype(int)]
    return np.repeat(col[:, None, :], width, axis=1)
