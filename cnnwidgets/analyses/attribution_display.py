"""Display maths for attribution maps (pure numpy): channel reduction, outlier clip, scaling, overlay.

Captum's ``visualize_image_attr`` clips the top 2% of values and scales by the rest; we do the same
with a percentile of the magnitudes, so one hot pixel cannot wash out the whole map.
"""
from __future__ import annotations

import numpy as np

from .. import render

#: colormaps the panel offers: sequential for magnitudes, diverging (zero = white) for signed maps
CMAPS = ("gray", "jet", "inferno", "RdBu_r")
DIVERGING = "RdBu_r"


def channel_reduce(raw: np.ndarray, sign: str = "abs", gradient: bool = False) -> np.ndarray:
    """CxHxW -> HxW. ``"abs"``: ``|raw|.max(0)`` for gradients (the NTU homework's saliency), else
    ``|raw.sum(0)|``; ``"signed"``: ``raw.sum(0)``; ``"positive"``: ``max(raw.sum(0), 0)``."""
    raw = np.asarray(raw, dtype=np.float32)
    if raw.ndim == 2:
        raw = raw[None]
    if sign == "abs":
        return np.abs(raw).max(0) if gradient else np.abs(raw.sum(0))
    if sign == "signed":
        return raw.sum(0)
    if sign == "positive":
        return np.maximum(raw.sum(0), 0)
    raise ValueError(f"sign is 'abs', 'signed' or 'positive', not {sign!r}.")


def clip_value(m: np.ndarray, percentile: float = 98.0) -> float:
    """The magnitude at ``percentile`` of ``|m|`` (the scale after clipping the top outliers); > 0."""
    a = np.abs(np.asarray(m, dtype=np.float64))
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 1.0
    hi = float(np.percentile(a, percentile)) if percentile < 100 else float(a.max())
    if hi <= 0:
        hi = float(a.max())
    return hi if hi > 0 else 1.0


def clip_percentile(m: np.ndarray, percentile: float = 98.0) -> np.ndarray:
    """``m`` with values beyond the ``percentile`` of ``|m|`` clipped to it (sign kept)."""
    hi = clip_value(m, percentile)
    return np.clip(m, -hi, hi)


def normalize_map(m: np.ndarray, sign: str = "abs", percentile: float = 98.0) -> tuple[np.ndarray, float]:
    """HxW map -> (values in [0, 1], scale). ``"abs"``: ``|m| / scale``; ``"signed"``: 0.5 + 0.5 m / scale
    (zero in the middle of a diverging colormap). ``scale`` is the clip value, for colour-bar labels."""
    m = np.nan_to_num(np.asarray(m, dtype=np.float64))
    hi = clip_value(m, percentile)
    if sign == "signed":
        return np.clip(0.5 + 0.5 * m / hi, 0, 1), hi
    return np.clip(np.abs(m) / hi, 0, 1), hi


def to_rgb(unit: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """[0, 1] HxW -> uint8 HxWx3 with a matplotlib colormap."""
    return render.colorize(unit, cmap)


def image_hwc(image) -> np.ndarray:
    """CxHxW in [0, 1] (or uint8 HxWx3) -> uint8 HxWx3."""
    a = np.asarray(image)
    if a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] in (1, 3):
        return a if a.shape[2] == 3 else np.repeat(a, 3, 2)
    return render.image_rgb(a)


def overlay(image, heat_rgb: np.ndarray, opacity: float = 0.6, gray: bool = True) -> np.ndarray:
    """Blend a coloured map over the image: ``(1 - opacity) * image + opacity * heat`` (uint8 HxWx3).
    ``gray=True`` puts the map over a grayscale copy so its colours read clearly (as Captum does)."""
    img = image_hwc(image).astype(np.float32)
    if gray:
        img = np.repeat(img @ np.array([[0.299], [0.587], [0.114]], np.float32), 3, axis=2)
    heat = np.asarray(heat_rgb, dtype=np.float32)
    if heat.shape[:2] != img.shape[:2]:
        raise ValueError(f"map is {heat.shape[:2]}, image is {img.shape[:2]}.")
    a = float(np.clip(opacity, 0, 1))
    return ((1 - a) * img + a * heat).round().clip(0, 255).astype(np.uint8)


def render_map(m: np.ndarray, image=None, sign: str = "abs", cmap: str | None = None, percentile: float = 98.0,
               opacity: float = 0.6) -> tuple[np.ndarray, float, str]:
    """Map (+ image) -> (uint8 RGB, scale, cmap used): normalise, colour, blend. ``cmap=None`` picks
    ``jet`` for magnitudes and the diverging ``RdBu_r`` for signed maps."""
    unit, hi = normalize_map(m, sign, percentile)
    cmap = cmap or (DIVERGING if sign == "signed" else "jet")
    rgb = to_rgb(unit, cmap)
    if image is not None and opacity < 1:
        rgb = overlay(image, rgb, opacity)
    return rgb, hi, cmap


def fit(rgb: np.ndarray, side: int) -> np.ndarray:
    """Bilinear resize of uint8 HxWx3 so that the shorter side is ``side`` (tiles line up whatever the model's input)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    if min(h, w) == side:
        return rgb
    s = side / min(h, w)
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR))


def key_strip(cmap: str, width: int = 120, height: int = 10) -> np.ndarray:
    """A horizontal colour strip, low values on the left (the key of a grid of maps)."""
    return render.colorbar(cmap, height=width, width=height).transpose(1, 0, 2)[:, ::-1]


#: how each colormap reads, in words: (magnitude maps, signed maps)
_WORDS = {
    "jet": ("red: large effect on the score · dark blue: little",
            "red: pushes the score up · blue: pushes it down · green: no effect"),
    "gray": ("white: large effect on the score · black: little",
             "white: pushes the score up · black: pushes it down · gray: no effect"),
    "inferno": ("yellow: large effect on the score · black: little",
                "yellow: pushes the score up · black: pushes it down · red: no effect"),
    DIVERGING: ("red: large effect on the score · blue: little",
                "red: pushes the score up · blue: pushes it down · white: no effect"),
}


def colour_words(cmap: str, sign: str) -> str:
    """What the colours of a map mean, for its legend."""
    pair = _WORDS.get(cmap, ("bright: large effect on the score", "one end: pushes the score up, the other: down"))
    return pair[1] if sign == "signed" else pair[0]
