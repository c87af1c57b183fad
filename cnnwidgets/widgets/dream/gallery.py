"""The Dream panel's gallery: finished images with what they show, and a note when the model changed since."""
from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as W
import numpy as np

from ... import render
from .._base import dispose
from .canvas import MIN_SHOWN

GALLERY_MAX = 12
TILE_PX = 128


@dataclass
class Item:
    """One kept image: ``rgb`` (``H x W x 3`` uint8), its ``caption`` and the weights it was made with (``weights``:
    the Probe's ``weights_version()``; ``outdated`` once the model's weights changed)."""

    rgb: np.ndarray
    caption: str
    weights: str | None = None
    outdated: bool = False


class Gallery(W.VBox):
    """Kept images as tiles (at most :data:`GALLERY_MAX`, oldest dropped), each captioned; ``keep_button`` and
    ``clear_button`` above them. A tile's widgets are made once and closed when it leaves."""

    def __init__(self, on_keep=None):
        self.items: list[Item] = []
        self._tiles: list[W.Widget] = []
        self.keep_button = W.Button(description="Keep", icon="thumb-tack", tooltip="put the current image in the gallery",
                                    layout=W.Layout(width="90px"))
        self.clear_button = W.Button(description="Clear gallery", icon="trash", layout=W.Layout(width="120px"))
        if on_keep is not None:
            self.keep_button.on_click(lambda _: on_keep())
        self.clear_button.on_click(lambda _: self.clear())
        self.box = W.HBox(layout=W.Layout(flex_flow="row wrap", overflow="auto"))
        title = W.HTML("<b style='color:#333'>Gallery</b>", layout=W.Layout(width="70px"))
        note = W.HTML("<span style='color:#666'>each finished run is kept here</span>")
        super().__init__([W.HBox([title, self.keep_button, self.clear_button, note]), self.box])

    def add(self, rgb: np.ndarray, caption: str, weights: str | None = None) -> None:
        self.items.append(Item(rgb.copy(), caption, weights))
        self._tiles.append(self._tile(self.items[-1]))
        while len(self.items) > GALLERY_MAX:
            self.items.pop(0)
            dispose(self._tiles.pop(0))
        self.box.children = tuple(self._tiles)

    def clear(self) -> None:
        self.items = []
        old, self._tiles = self._tiles, []
        self.box.children = ()
        dispose(*old)

    def mark_outdated(self, weights: str) -> int:
        """Label each image made with other weights than ``weights`` (the model's now); returns how many are outdated."""
        for i, item in enumerate(self.items):
            if item.weights is not None and item.weights != weights and not item.outdated:
                item.outdated = True
                self._tiles[i].children[1].value = self._caption_html(item)
        return sum(item.outdated for item in self.items)

    @staticmethod
    def _caption_html(item: Item) -> str:
        note = ("<br><span style='color:#8a5a00'>⚠ made before the model's weights changed</span>"
                if item.outdated else "")
        return (f"<div style='width:{TILE_PX}px;font-size:10px;line-height:1.25;color:#444;overflow-wrap:anywhere'>"
                f"{html.escape(item.caption)}{note}</div>")

    def _tile(self, item: Item) -> W.VBox:
        rgb = render.upscale(item.rgb, MIN_SHOWN) if min(item.rgb.shape[:2]) < MIN_SHOWN else item.rgb
        img = W.Image(value=render.encode(rgb, "png"), format="png", layout=W.Layout(width=f"{TILE_PX}px"))
        return W.VBox([img, W.HTML(self._caption_html(item))], layout=W.Layout(margin="2px 6px 2px 0"))
