"""Every channel of a layer as one mosaic figure, and one such file per layer (seed 000's 800-dpi mosaics)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ... import render
from ...analyses import stats


def layer_maps(fm, layer: str) -> np.ndarray:
    """``C x H x W`` maps of ``layer`` for the panel's image (numpy); a layer without maps is refused."""
    lay = fm.probe.layer(layer)
    if fm._x is None:
        raise ValueError("The panel has no image yet: give one (FeatureMaps(probe, image)) before drawing a mosaic.")
    a = stats._np(fm.probe.activations(fm._x, lay.name, preprocess=False)[0].float())
    if a.ndim != 3 or a.shape[1] * a.shape[2] <= 1:
        raise ValueError(f"Layer {lay.name!r} has no feature maps (output {tuple(a.shape)}): choose a convolution, "
                         "e.g. one of probe.layers.")
    return a


def tiles(fm, layer: str | None = None, channels: int | None = None, cols: int | None = None,
          cmap: str | None = None) -> tuple[np.ndarray, str]:
    """The mosaic of the first ``channels`` channels of ``layer`` (uint8 RGB, 1 px white between tiles) and its title."""
    name = fm.probe.layer(layer if layer is not None else fm.layer).name
    a = layer_maps(fm, name)
    n = a.shape[0] if channels is None else int(channels)
    if not 1 <= n <= a.shape[0]:
        raise ValueError(f"channels must be between 1 and {a.shape[0]} (the channels of {name}), got {channels}.")
    if cols is not None and int(cols) < 1:
        raise ValueError(f"cols must be a positive whole number, got {cols}.")
    total, a = a.shape[0], a[:n]
    rows, ncols = render.grid_shape(n, None if cols is None else int(cols))
    rgb = render.mosaic(render.colorize(render.normalize(a, fm.norm), cmap or fm.cmap), ncols, pad=1)
    what = f"all {n} channels" if n == total else f"channels 0–{n - 1} of {total}"
    return rgb, f"{fm.probe.layer(name).label}: {what} ({rows}×{ncols})"


def figure(fm, layer: str | None = None, channels: int | None = None, cols: int | None = None,
           cmap: str | None = None, width: float = 6.4):
    """A matplotlib Figure (not registered with pyplot) of :func:`tiles`, ``width`` inches wide."""
    from matplotlib.figure import Figure

    rgb, title = tiles(fm, layer, channels, cols, cmap)
    h, w = rgb.shape[:2]
    body = width * h / w
    fig = Figure(figsize=(width, body + 0.35))
    ax = fig.add_axes([0, 0, 1, body / (body + 0.35)])
    ax.imshow(rgb, interpolation="nearest")
    ax.axis("off")
    fig.text(0.5, 1 - 0.17 / (body + 0.35), title, ha="center", va="center", fontsize=9)
    return fig


def save_layers(fm, folder, layers=None, dpi: int = 800, fmt: str = "png", width: float = 6.4, **kwargs) -> list[str]:
    """One image per layer (default: every conv layer with maps) of all its channels, ``width`` inches at ``dpi``
    (the maps enlarged by whole pixels, crisp, and the title above); returns the paths, in layer order."""
    from PIL import Image, ImageDraw, ImageFont

    if fmt not in ("png", "jpeg", "jpg", "tiff"):
        raise ValueError(f"fmt must be 'png', 'jpeg' or 'tiff', got {fmt!r}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = [fm.probe.layer(l).name for l in layers] if layers is not None else \
        [l.name for l in fm.probe.layers if l.spatial]
    try:
        font = ImageFont.load_default(size=max(10, round(dpi * 9 / 72)))  # 9 pt at this dpi
    except (TypeError, OSError, ImportError):
        font = ImageFont.load_default()
    paths = []
    for i, name in enumerate(names):
        rgb, title = tiles(fm, name, **kwargs)
        h, w = rgb.shape[:2]
        k = max(1, round(width * dpi / w))  # whole pixels per map pixel
        band = round(dpi * 0.35)
        page = Image.new("RGB", (w * k, h * k + band), "white")
        page.paste(Image.fromarray(rgb).resize((w * k, h * k), Image.NEAREST), (0, band))
        ImageDraw.Draw(page).text((w * k // 2, band // 2), title, fill="black", font=font, anchor="mm")
        path = folder / f"{i:02d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.{fmt}"
        page.save(path, dpi=(dpi, dpi), **({"compress_level": 1} if fmt == "png" else {}))
        paths.append(str(path))
    return paths
