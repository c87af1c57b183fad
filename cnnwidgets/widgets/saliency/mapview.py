"""The Map tab: the image as the model sees it, the map over it, its colour bar and legend."""
from __future__ import annotations

import ipywidgets as W

from ... import render
from ...analyses import attribution as A
from ...analyses import attribution_display as D
from .._base import set_image
from .display import TILE, DisplayControls, caption, legend

STALE = "cnnw-stale"


class MapView:
    """The widgets of the Map tab (``box``); :meth:`show` draws an :class:`Attribution`."""

    def __init__(self, display: DisplayControls):
        self.display = display
        self.caption = W.HTML()
        self.image_view = W.Image(format="png", layout=W.Layout(width=f"{TILE}px", height=f"{TILE}px"))
        self.map_view = W.Image(format="png", layout=W.Layout(width=f"{TILE}px", height=f"{TILE}px"))
        self.bar = W.Image(format="png", layout=W.Layout(width="16px", height=f"{TILE}px"))
        self.bar_top, self.bar_mid, self.bar_bottom = W.HTML(), W.HTML(), W.HTML()
        labels = W.VBox([self.bar_top, self.bar_mid, self.bar_bottom],
                        layout=W.Layout(height=f"{TILE + 8}px", justify_content="space-between"))
        self.legend = W.HTML(layout=W.Layout(max_width="320px"))
        self.colour_bar = W.HBox([self.bar, labels])
        for w, c in ((self.map_view, "map"), (self.image_view, "image"), (self.caption, "caption")):
            w.add_class(f"cnnw-saliency-{c}")
        self.images = W.HBox([
            W.VBox([W.HTML("<i>image (as the model sees it)</i>"), self.image_view]),
            W.VBox([W.HTML("<i>attribution map</i>"), self.map_view]),
            W.VBox([W.HTML("&nbsp;"), self.colour_bar]),
            W.VBox([W.HTML("&nbsp;"), self.legend], layout=W.Layout(margin="0 0 0 12px")),
        ])

    def stale(self) -> list:
        """What a new map will replace (the map and the words about it): dimmed while it is computed."""
        return [self.caption, self.map_view, self.colour_bar, self.legend]

    def dim(self, on: bool) -> None:
        for w in self.stale():
            (w.add_class if on else w.remove_class)(STALE)

    def show_image(self, image_chw) -> None:
        set_image(self.image_view, D.fit(D.image_hwc(image_chw), TILE))

    def show(self, a: A.Attribution) -> None:
        rgb, hi = self.display.render(a)
        sign = self.display.sign.value
        set_image(self.map_view, rgb)
        set_image(self.bar, render.colorbar(self.display.colormap(), height=256, width=16))
        self.bar_top.value = f"<small>{hi:.3g}</small>"
        self.bar_mid.value = "<small>0</small>" if sign == "signed" else ""
        self.bar_bottom.value = f"<small>{-hi if sign == 'signed' else 0.0:.3g}</small>"
        self.caption.value = caption(a)
        self.legend.value = legend(a, self.display)
