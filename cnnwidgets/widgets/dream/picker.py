"""The Dream panel's neuron picker: x and y sliders, and a click on the last image with the layer's map grid."""
from __future__ import annotations

import bqplot as bq
import ipywidgets as W
import numpy as np

from ... import render
from .._base import dispose


def _image(rgb: np.ndarray) -> W.Image:
    return W.Image(value=render.encode(rgb, "png"), format="png")


class NeuronPicker:
    """Picks a position (``x``, ``y``) on a layer's ``h x w`` map: the sliders (``sliders``, a row) and a small figure
    of the last image (``figure``) where a click picks the neuron under it, marked by a red square."""

    def __init__(self):
        self.x_slider = W.IntSlider(value=0, min=0, max=1, description="x", continuous_update=False,
                                    layout=W.Layout(width="250px"))
        self.y_slider = W.IntSlider(value=0, min=0, max=1, description="y", continuous_update=False,
                                    layout=W.Layout(width="250px"))
        self.sliders = W.HBox([self.x_slider, self.y_slider,
                               W.HTML("<i style='color:#555'>or click the image on the right</i>")])
        self._sx, self._sy = bq.LinearScale(min=0, max=1), bq.LinearScale(min=0, max=1)
        self.image = bq.Image(image=_image(np.full((8, 8, 3), 230, np.uint8)), scales={"x": self._sx, "y": self._sy},
                              x=[0, 1], y=[0, 1])
        self.marker = bq.Scatter(x=[0.5], y=[0.5], scales={"x": self._sx, "y": self._sy}, marker="square",
                                 colors=["#ff1744"], stroke="white", default_size=64)
        self.image.on_element_click(self._clicked)
        self.figure = bq.Figure(marks=[self.image, self.marker], title="click: neuron position",
                                layout=W.Layout(width="240px", height="240px"), padding_x=0, padding_y=0,
                                fig_margin={"top": 30, "bottom": 10, "left": 10, "right": 10})
        for s in (self.x_slider, self.y_slider):
            s.observe(lambda ch: self._draw(), "value")

    @property
    def position(self) -> tuple[int, int]:
        return self.x_slider.value, self.y_slider.value

    def set_map(self, h: int, w: int) -> None:
        """The map is ``h x w``: slider ranges, and the centre when nothing was picked yet."""
        self.x_slider.max, self.y_slider.max = max(0, w - 1), max(0, h - 1)
        if self.x_slider.value == 0 and self.y_slider.value == 0:
            self.x_slider.value, self.y_slider.value = w // 2, h // 2
        self._draw()

    def set_image(self, rgb: np.ndarray) -> None:
        """Show ``rgb`` under the marker (the image widget it replaces is closed)."""
        old = self.image.image
        self.image.image = _image(rgb)
        dispose(old)

    def _clicked(self, mark, event) -> None:
        data = event.get("data", {})
        cx, cy = data.get("click_x"), data.get("click_y")
        if cx is None or cy is None:
            return
        self.x_slider.value = int(min(max(cx, 0), 0.9999) * (self.x_slider.max + 1))
        self.y_slider.value = int(min(max(1 - cy, 0), 0.9999) * (self.y_slider.max + 1))

    def _draw(self) -> None:
        w, h = self.x_slider.max + 1, self.y_slider.max + 1
        with self.marker.hold_sync():
            self.marker.x = [(self.x_slider.value + 0.5) / w]
            self.marker.y = [1 - (self.y_slider.value + 0.5) / h]
            self.marker.default_size = max(16, int((200 / max(w, h)) ** 2))
