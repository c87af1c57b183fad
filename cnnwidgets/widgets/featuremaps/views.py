"""The views a FeatureMaps panel is made of: the grid of tiles, the bars of a vector layer, the large view of one
channel and the first layer's filters. Each holds its widgets and draws what it is given; no state of the panel."""
from __future__ import annotations

import html

import bqplot as bq
import ipywidgets as W
import numpy as np

from ... import render
from ...analyses import stats
from .._base import VERTICAL, dispose, image_widget, set_image

GRID_W, GRID_H = 480, 480  # the largest the grid is drawn in the notebook (px)
BIG = 240  # the large view's size (px); the browser scales it up (pixelated), Python only up to BIG_PX
BIG_PX = 64
PAD = 215  # gray level of the gaps between tiles


def div(text: str) -> str:
    """HTML with normal line spacing (ipywidgets' HTML uses the 28px widget line height)."""
    return f"<div style='line-height:1.35;padding:2px 0'>{text}</div>"


def fmt(v: float) -> str:
    return "nan" if v != v else f"{v:.4g}"


def grid_notes(acts: np.ndarray, hidden: int, hide_dead: bool, nonfinite, plan) -> list[str]:
    """The lines under the grid: dead channels, non-finite values, tiles shown smaller."""
    notes = []
    if hidden:
        notes.append(f"<b>{hidden} dead channel{'s' * (hidden != 1)} hidden</b> (all zero for this image)")
    elif not hide_dead:
        nd = int(stats.dead_channels(acts).sum())
        if nd:
            notes.append(f"{nd} dead channel{'s' * (nd != 1)} (all zero, drawn in the lowest colour)")
    nan, pinf, ninf = nonfinite
    if nan or pinf or ninf:
        notes.append(f"<span style='color:#b00020'>non-finite values: {nan} NaN (magenta), {pinf} +inf (white), "
                     f"{ninf} −inf (black)</span>")
    if plan.scale > 1:
        notes.append(f"tiles shown at 1/{plan.scale} resolution ({plan.h}×{plan.w} → {plan.tile_hw[0]}×{plan.tile_hw[1]}); "
                     "the large view is full size")
    return notes


def _no_toolbar(fig: bq.Figure) -> None:
    if fig.has_trait("display_toolbar"):  # bqplot >= 0.13: no pan/zoom buttons over the tiles
        fig.display_toolbar = False


class GridView:
    """The tiles of one page as one PNG in a bqplot Image mark (clicks report the pixel), and a red outline
    around the selected tile."""

    def __init__(self, on_click):
        self.xs = bq.LinearScale(min=0.0, max=1.0)
        self.ys = bq.LinearScale(min=0.0, max=1.0)
        self.mark = bq.Image(image=W.Image(format="png"), scales={"x": self.xs, "y": self.ys}, x=[0, 1], y=[0, 1])
        self.mark.on_element_click(on_click)
        self.outline_mark = bq.Lines(x=[0], y=[0], scales={"x": self.xs, "y": self.ys}, colors=["#ff2d2d"],
                                     stroke_width=2.5, visible=False)
        self.figure = bq.Figure(marks=[self.mark, self.outline_mark], axes=[], padding_x=0, padding_y=0,
                                fig_margin=dict(top=2, bottom=2, left=2, right=2),
                                layout=W.Layout(width=f"{GRID_W}px", height=f"{GRID_H}px"))
        _no_toolbar(self.figure)
        self.rgb: np.ndarray | None = None  #: the PNG's pixels, for figure() and clicks

    def draw(self, rgb: np.ndarray) -> None:
        self.rgb = rgb
        old = self.mark.image
        # bqplot redraws an Image mark when its image widget is replaced, not when its value changes
        self.mark.image = W.Image(value=render.encode(rgb, "png"), format="png")
        dispose(old)
        h, w = rgb.shape[:2]
        s = min(GRID_W / w, GRID_H / h, 12.0)
        with self.figure.hold_sync():
            self.xs.min, self.xs.max = 0.0, float(w)
            self.ys.min, self.ys.max = 0.0, float(h)
            self.mark.x, self.mark.y = [0.0, float(w)], [0.0, float(h)]
            self.figure.layout.width = f"{round(w * s) + 4}px"
            self.figure.layout.height = f"{round(h * s) + 4}px"

    def outline(self, y0: int, x0: int, th: int, tw: int) -> None:
        """Outline the tile whose top-left pixel is (y0, x0)."""
        H = self.rgb.shape[0]
        x1, yt, yb = x0 + tw, H - y0, H - y0 - th
        with self.outline_mark.hold_sync():
            self.outline_mark.x = [x0 - 0.5, x1 + 0.5, x1 + 0.5, x0 - 0.5, x0 - 0.5]
            self.outline_mark.y = [yb - 0.5, yb - 0.5, yt + 0.5, yt + 0.5, yb - 0.5]
            self.outline_mark.visible = True

    def hide_outline(self) -> None:
        self.outline_mark.visible = False


class UnitsView:
    """One bar per unit, for a layer whose output is a vector (Linear); a click on a bar picks the unit."""

    def __init__(self, on_click):
        self.xs, self.ys = bq.LinearScale(), bq.LinearScale()
        self.mark = bq.Bars(x=[0], y=[0], scales={"x": self.xs, "y": self.ys}, padding=0.0, colors=["#3b6ea8"])
        self.mark.on_element_click(lambda m, c: on_click(int(c["data"]["index"])))
        self.figure = bq.Figure(marks=[self.mark], padding_y=0.02,
                                axes=[bq.Axis(scale=self.xs, label="unit"),
                                      bq.Axis(scale=self.ys, **VERTICAL, label="activation", tick_format=".3g")],
                                fig_margin=dict(top=20, bottom=45, left=60, right=24),
                                layout=W.Layout(width=f"{GRID_W}px", height="320px", display="none"))
        _no_toolbar(self.figure)

    def draw(self, values: np.ndarray, selected: int) -> None:
        with self.figure.hold_sync():
            self.mark.x = np.arange(len(values))
            self.mark.y = values
            self.select(selected)

    def select(self, unit: int) -> None:
        self.mark.selected = [int(unit)] if 0 <= unit < len(self.mark.x) else None


class DetailView:
    """The selected channel large, with a colour bar and its range."""

    CSS = "<style>img.cnnw-big{image-rendering:pixelated;image-rendering:crisp-edges;}</style>"

    def __init__(self):
        self.title = W.HTML()
        self.image = image_widget(width=f"{BIG}px")
        self.image.add_class("cnnw-big")
        self.bar_max, self.bar_min = W.HTML(), W.HTML()
        self.colorbar = image_widget(width="14px")
        self.colorbar.layout.height = f"{BIG - 40}px"
        self._cmap = None
        bar = W.VBox([self.bar_max, self.colorbar, self.bar_min], layout=W.Layout(margin="0 0 0 6px"))
        self.box = W.VBox([self.title, W.HBox([self.image, bar])],
                          layout=W.Layout(width=f"{BIG + 80}px", margin="0 0 0 8px", flex="0 0 auto"))

    def show(self, c: int, m: np.ndarray, unit: np.ndarray, cmap: str, lo: float, hi: float, channels: int,
             aside=()) -> None:
        """``aside``: a token layer's tokens set aside from the map (class, register), as (name, value) pairs."""
        s = stats.describe(m)
        set_image(self.image, render.upscale(render.colorize(unit, cmap), BIG_PX))
        if self._cmap != cmap:
            set_image(self.colorbar, render.colorbar(cmap, 216, 14))
            self._cmap = cmap
        self.bar_max.value = f"<span style='font-size:11px'>{fmt(hi)}</span>"
        self.bar_min.value = f"<span style='font-size:11px'>{fmt(lo)}</span>"
        extra = (f"<br><span style='color:#b00020'>{s.nan} NaN (magenta), {s.inf} ±inf (white/black)</span>"
                 if not s.finite else "")
        dead = " — <b>dead</b> (all zero)" if s.max == 0 and s.min == 0 else ""
        self.title.value = div(f"<b>channel {c}</b> of {channels}{dead}<br>"
                               f"<span style='font-size:12px'>{m.shape[0]}×{m.shape[1]} map; values "
                               f"{fmt(s.min)} … {fmt(s.max)}, mean {fmt(s.mean)}; "
                               f"colours span [{fmt(lo)}, {fmt(hi)}]"
                               + "".join(f"<br>{html.escape(n)} (not in the map): {fmt(v)}" for n, v in aside)
                               + f"</span>{extra}")


class FiltersView:
    """The first convolution's filters as small images (RGB for a colour model, gray otherwise; at most
    :attr:`MAX_FILTERS`)."""

    MAX_FILTERS = 64

    def __init__(self):
        self.caption = W.HTML()
        self.image = image_widget(width="200px")

    def show(self, probe) -> None:
        first = probe.layers[0] if len(probe.layers) else None
        w = probe.named_tensors().get(f"{first.name}.weight") if first is not None else None
        if w is None or w.ndim != 4:
            self.caption.value = ""
            self.image.layout.display = "none"
            return
        shown = min(len(w), self.MAX_FILTERS)  # a ViT's patch embedding has 768: the first 64 say what they look like
        tiles = stats.filter_images(w[:shown])
        k = max(1, 24 // max(tiles.shape[1:3]))
        tiles = np.repeat(np.repeat((tiles * 255).round().astype(np.uint8), k, axis=1), k, axis=2)
        set_image(self.image, render.mosaic(tiles, min(8, len(tiles)), pad=2))
        self.image.layout.display = None
        rgb = "RGB" if w.shape[1] == 3 else f"mean of {w.shape[1]} input channel(s), gray"
        self.caption.value = div(f"<b>first conv layer's filters</b><br><span style='font-size:11px;color:#666'>"
                                 f"{html.escape(first.name)}: "
                                 f"{w.shape[0] if shown == len(w) else f'the first {shown} of {w.shape[0]}'} filters "
                                 f"{w.shape[2]}×{w.shape[3]} ({rgb}), "
                                 "each scaled to its own range</span>")
