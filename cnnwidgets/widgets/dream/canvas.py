"""The Dream panel's canvas: the image as it forms, what it shows, and the objective per step."""
from __future__ import annotations

import html

import bqplot as bq
import ipywidgets as W
import numpy as np

from ... import render
from .._base import VERTICAL, nice_ticks, set_image

CANVAS_PX = 384  #: the canvas is drawn this wide in the notebook
MIN_SHOWN = 128  #: smaller images are enlarged (nearest neighbour) to at least this before they are sent: crisp pixels
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def to_rgb(images) -> np.ndarray:
    """``N x C x H x W`` in [0, 1] (CPU tensor) -> ``N x H x W x 3`` uint8."""
    a = images.clamp(0, 1).numpy()
    if a.shape[1] == 1:
        a = np.repeat(a, 3, axis=1)
    return (a.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)


def frame_rgb(frame) -> np.ndarray:
    """What a :class:`~cnnwidgets.analyses.dream.jobs.Frame` shows, ``H x W x 3`` uint8 at the images' own
    resolution: the image; an atlas as a grid; networks compared side by side at one height."""
    if len(frame.steps) > 1:
        tiles = [to_rgb(s.image)[0] for s in frame.steps]
        h = max(t.shape[0] for t in tiles)
        tiles = [t if t.shape[0] == h else render.upscale(t, h)[:h] for t in tiles]
        w = max(t.shape[1] for t in tiles)
        tiles = [np.pad(t, ((0, 0), (0, w - t.shape[1]), (0, 0)), constant_values=255) for t in tiles]
        return render.mosaic(np.stack(tiles), cols=len(tiles), pad=4)
    rgb = to_rgb(frame.steps[0].image)
    return rgb[0] if len(rgb) == 1 else render.mosaic(rgb, pad=2)


def _caption(text_html: str) -> str:
    return f"<div style='color:#555;line-height:1.35;padding-top:2px'>{text_html}</div>"


class Canvas(W.HBox):
    """The image (``image``, streamed as JPEG, lossless PNG at the end) with a caption under it (``caption``), and
    the objective per step beside it (``figure``: one line per dream; no axes until there is a curve)."""

    def __init__(self, side: W.Widget | None = None):
        self.image = W.Image(format="png", layout=W.Layout(width=f"{CANVAS_PX}px", min_height="64px"))
        self.image.add_class("cnnwidgets-dream-canvas")
        self.caption = W.HTML(layout=W.Layout(width=f"{CANVAS_PX}px"))
        xs, ys = bq.LinearScale(), bq.LinearScale()
        self.lines = bq.Lines(x=np.zeros(0), y=np.zeros(0), scales={"x": xs, "y": ys}, colors=COLORS, stroke_width=2,
                              display_legend=False, labels=[])
        self.axes = [bq.Axis(scale=xs, label="step", tick_format="d", visible=False),
                     bq.Axis(scale=ys, **VERTICAL, label="objective (↑ better)", tick_format=".3~g",
                             visible=False)]
        self.figure = bq.Figure(marks=[self.lines], axes=self.axes, title="objective per step",
                                layout=W.Layout(width="340px", height="240px"), legend_location="bottom-right",
                                fig_margin={"top": 40, "bottom": 40, "left": 60, "right": 24})
        self.blank()
        super().__init__([W.VBox([self.image, self.caption]), W.VBox([self.figure] + ([side] if side is not None else []))])

    def blank(self) -> None:
        """The canvas before any run: a grey square, a hint, no curve and no axes (no ticks of an empty plot)."""
        set_image(self.image, np.full((128, 128, 3), 235, np.uint8), "png")
        self.caption.value = _caption("Press <b>Start</b>: the image forms step by step.")
        self.reset()

    def reset(self, labels=()) -> None:
        """An empty curve for a new run (one line per label; a legend when there are several)."""
        with self.lines.hold_sync():
            self.lines.x, self.lines.y = np.zeros(0), np.zeros(0)
            self.lines.labels = list(labels)
            self.lines.display_legend = len(labels) > 1
        for axis in self.axes:
            axis.visible = False

    def show(self, rgb: np.ndarray, final: bool, caption: str) -> None:
        """Show ``rgb`` (JPEG while streaming, PNG when ``final``) and ``caption`` under it."""
        shown = render.upscale(rgb, MIN_SHOWN) if min(rgb.shape[:2]) < MIN_SHOWN else rgb
        set_image(self.image, shown, "png" if final else "jpeg", quality=90)
        self.caption.value = _caption(html.escape(caption))

    def plot(self, history) -> None:
        """The objective per step so far, one list per dream (drawn from two points on)."""
        hist = [h[:] for h in history]
        n = min((len(h) for h in hist), default=0)
        if n < 2:  # bqplot squeezes a single point to a scalar
            return
        y = np.array(hist[0][:n]) if len(hist) == 1 else np.array([h[:n] for h in hist])
        with self.lines.hold_sync():
            self.lines.x = np.arange(1, n + 1)
            self.lines.y = y
        finite = y[np.isfinite(y)]
        for axis, (lo, hi) in zip(self.axes, ((1, n), (finite.min(), finite.max()) if finite.size else (0, 1))):
            ticks = nice_ticks(lo, hi)
            if not np.array_equal(np.asarray(axis.tick_values if axis.tick_values is not None else []), ticks):
                axis.tick_values = ticks
            axis.visible = True
