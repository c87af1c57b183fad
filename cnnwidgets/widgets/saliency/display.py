"""How maps are drawn: the display controls (magnitude / signed, colours, clip, opacity) and the words
around a map (caption, legend, colour key). The maths is in :mod:`cnnwidgets.analyses.attribution_display`."""
from __future__ import annotations

import base64
import html

import ipywidgets as W
import numpy as np

from ... import render
from ...analyses import attribution as A
from ...analyses import attribution_display as D

AUTO = "auto"
TILE = 224
STYLE = {"description_width": "initial"}


class DisplayControls:
    """The controls every view of a map follows; ``on_change()`` runs when one moves."""

    def __init__(self, on_change):
        self.sign = W.ToggleButtons(options=[("magnitude", "abs"), ("signed ±", "signed")], value="abs",
                                    tooltips=["|attribution|: how much, either way", "red: for the class, blue: against"],
                                    style={"button_width": "110px"})
        self.cmap = W.Dropdown(options=[("auto", AUTO), ("gray", "gray"), ("jet", "jet"), ("inferno", "inferno"),
                                        ("red–blue", D.DIVERGING)], value=AUTO, description="colours", style=STYLE,
                               layout=W.Layout(width="190px"))
        self.clip = W.FloatSlider(98.0, min=90.0, max=100.0, step=0.5, description="clip top %ile", style=STYLE,
                                  readout_format=".1f", continuous_update=False)
        self.opacity = W.FloatSlider(0.6, min=0.0, max=1.0, step=0.05, description="map opacity", style=STYLE,
                                     continuous_update=False)
        for w in (self.sign, self.cmap, self.clip, self.opacity):
            w.observe(lambda _: on_change(), "value")

    def colormap(self) -> str:
        if self.cmap.value != AUTO:
            return self.cmap.value
        return D.DIVERGING if self.sign.value == "signed" else "jet"

    def render(self, a: A.Attribution, side: int = TILE) -> tuple[np.ndarray, float]:
        """The map over the image, ``side`` pixels on its shorter side: (uint8 RGB, the colour scale's top)."""
        rgb, hi, _ = D.render_map(a.as_map(self.sign.value), a.image, self.sign.value, self.colormap(),
                                  self.clip.value, self.opacity.value)
        return D.fit(rgb, side), hi

    def key(self) -> str:
        """One line of HTML that says how to read the colours of a grid of maps (each scaled on its own)."""
        strip = render.encode(D.key_strip(self.colormap()), "png")
        src = "data:image/png;base64," + base64.b64encode(strip).decode()
        lo, hi = ("against the class", "for the class") if self.sign.value == "signed" else ("little effect", "large effect")
        return (f"<div style='font-size:12px;color:#444'>colours: {lo} <img src='{src}' style='height:10px;width:120px;"
                f"vertical-align:middle'> {hi} (each map scaled to its own {self.clip.value:g}th percentile)</div>")


def caption(a: A.Attribution) -> str:
    layer = f" on layer <code>{html.escape(a.layer)}</code>" if a.layer else ""
    part = (f" · <span style='color:#8a5a00'>partial: {html.escape(a.progress)}</span>" if a.partial else "")
    return (f"<div style='font-size:15px'><b>{html.escape(a.model)}</b> · <b>{html.escape(a.label)}</b>{layer} · "
            f"explaining class <b style='color:#1565c0'>{html.escape(a.target_name)}</b> ({a.target}), "
            f"p = {a.prob:.1%}{part}</div>")


def legend(a: A.Attribution, display: DisplayControls) -> str:
    what = a.kind.legend(a)
    words = D.colour_words(display.colormap(), display.sign.value)
    clip = 100 - display.clip.value
    time = f"{a.seconds:.1f} s so far ({a.progress})" if a.partial else f"{a.seconds:.1f} s"
    return (f"<div style='line-height:1.35;font-size:12px'><b>map</b>: {html.escape(what)}<br><b>colours</b>: "
            f"{html.escape(words)}" + (f"; the top {clip:g}% of values clipped" if clip > 0 else "") +
            f"<br><b>time</b>: {html.escape(time)}</div>")


def title(text: str, sub: str = "") -> str:
    return (f"<div style='line-height:1.3'><b>{html.escape(text)}</b>" + (f"<br><small>{sub}</small>" if sub else "")
            + "</div>")
