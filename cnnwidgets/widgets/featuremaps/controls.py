"""The FeatureMaps panel's option controls: channel, colormap, normalisation, order, dead channels, pages."""
from __future__ import annotations

import ipywidgets as W

CMAPS = ["viridis", "gray", "magma", "inferno", "twilight", "jet", "RdBu_r"]


class Options:
    """The controls under the layer slider (``box``) and the page buttons above the grid (``pages``)."""

    def __init__(self, channels: int, cmap: str):
        self.channel = W.BoundedIntText(value=0, min=0, max=max(0, channels - 1), description="channel",
                                        layout=W.Layout(width="150px"), style={"description_width": "55px"})
        self.cmap = W.Dropdown(options=CMAPS if cmap in CMAPS else [cmap, *CMAPS], value=cmap, description="colormap",
                               layout=W.Layout(width="190px"), style={"description_width": "65px"})
        self.norm = W.ToggleButtons(options=[("per channel", "channel"), ("per layer", "layer")], value="channel",
                                    tooltips=["each map scaled to its own min..max", "all maps share the layer's min..max"],
                                    style={"button_width": "105px"})
        self.order = W.Dropdown(options=[("by index", "index"), ("by mean activation", "mean")], value="index",
                                description="order", layout=W.Layout(width="220px"), style={"description_width": "45px"})
        self.dead = W.Checkbox(value=False, description="hide dead channels (all zero)", indent=False,
                               layout=W.Layout(width="220px"))
        self.box = W.HBox([self.channel, self.cmap, self.norm, self.order, self.dead], layout=W.Layout(flex_flow="row wrap"))
        self.prev = W.Button(description="◀ prev", layout=W.Layout(width="80px"))
        self.next = W.Button(description="next ▶", layout=W.Layout(width="80px"))
        self.page_label = W.HTML()
        self.pages = W.HBox([self.prev, self.next, self.page_label], layout=W.Layout(align_items="center"))
