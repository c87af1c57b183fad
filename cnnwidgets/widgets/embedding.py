"""Embedding panel: PCA / t-SNE of a layer's features over an image set, and a channel's top images."""
from __future__ import annotations

import bqplot as bq
import ipywidgets as W
import numpy as np
import torch
import traitlets as T

from .. import render
from ..analyses import embedding as E
from ..images import sample_dataset
from ..runner import Step
from ._base import LayerSlider, Message, Panel, RunControls, image_widget, set_image

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


class Embedding(Panel):
    """Where a layer puts each image: a 2-D map (PCA or t-SNE) of pooled features, coloured by label.

    ``images`` is an ``NxCxHxW`` tensor in [0, 1] or a list of images (default: 96 crops of the
    bundled photographs, labelled by photograph). Click a point to see its image. Below, the ``k``
    images of the set that excite the selected channel most.
    """

    layer = T.Unicode().tag(sync=False)
    channel = T.Int(0).tag(sync=False)
    selected = T.Int(-1).tag(sync=False)  #: index of the clicked image, -1 for none

    def __init__(self, probe, images=None, labels=None, layer=None, method: str = "pca", k: int = 9):
        self.probe = probe
        if images is None:
            images, default_labels = sample_dataset(96, size=probe.transform.input_size[0])
            labels = labels if labels is not None else default_labels
        self.images = images
        n = images.shape[0] if isinstance(images, torch.Tensor) else len(images)
        self.labels = [str(l) for l in labels] if labels is not None else ["images"] * n
        if len(self.labels) != n:
            raise ValueError(f"Got {len(self.labels)} labels for {n} images; give one label per image.")
        self.thumbs = probe.display(images)  # what the model sees, for the image views
        self.k = k
        self.coords: np.ndarray | None = None
        self.top: E.TopImages | None = None
        self.message = Message()

        self.layer_control = LayerSlider(probe, value=layer or probe.layers[len(probe.layers) // 2].name,
                                         on_move=lambda name: setattr(self, "layer", name))
        self.slider = self.layer_control.slider
        self.method = W.ToggleButtons(options=[("PCA", "pca"), ("t-SNE", "tsne")], value=method, description="map")
        self.pool = W.Dropdown(options=[("mean over space", "mean"), ("max over space", "max")], value="mean", description="pool")
        self.controls = RunControls(self._job, self._frame, total=lambda: n, message=self.message)
        self.controls.start_button.description = "Compute"
        self.controls.start_button.layout.width = "110px"

        classes = sorted(set(self.labels), key=self.labels.index)
        self._classes = classes
        xs, ys = bq.LinearScale(), bq.LinearScale()
        self.marks = [
            bq.Scatter(x=[], y=[], scales={"x": xs, "y": ys}, colors=[PALETTE[i % len(PALETTE)]], labels=[c],
                       display_legend=False, default_size=48, stroke="white", interactions={"click": "select"},
                       unselected_style={"opacity": 0.5}, selected_style={"stroke": "black", "stroke-width": 2})
            for i, c in enumerate(classes)
        ]
        for m in self.marks:
            m.observe(self._clicked, "selected")
        self.ax_x = bq.Axis(scale=xs, label="component 1")
        self.ax_y = bq.Axis(scale=ys, orientation="vertical", label="component 2")
        self.xs, self.ys = xs, ys
        self.fig = bq.Figure(marks=self.marks, axes=[self.ax_x, self.ax_y], title="Press Compute",
                             layout=W.Layout(width="520px", height="440px"),
                             fig_margin={"top": 50, "bottom": 50, "left": 50, "right": 20})
        self.legend = W.HTML("<br>".join(
            f"<span style='color:{PALETTE[i % len(PALETTE)]};font-size:16px'>&#9679;</span> {c}" for i, c in enumerate(classes)))
        self.picked = image_widget(width="160px")
        self.picked.layout.display = "none"  # no broken-image icon before a click
        self.picked_label = W.HTML("<i>click a point to see its image</i>")

        chans = probe.layer(self.slider.value).channels or 1
        self.channel_picker = W.BoundedIntText(value=0, min=0, max=chans - 1, description="channel", layout=W.Layout(width="180px"))
        self.top_button = W.Button(description=f"Top {k} images", icon="search")
        self.top_image = image_widget(width="420px")
        self.top_image.layout.display = "none"
        self.top_caption = W.HTML()
        self.top_button.on_click(lambda _: self.show_top())

        self.channel_picker.observe(lambda ch: setattr(self, "channel", int(ch["new"])), "value")
        self.layer = self.slider.value
        super().__init__([
            W.HTML(f"<b>Embedding</b> — where <code>{probe.name}</code> puts {n} images ({len(classes)} labels)"),
            self.slider, self.layer_control.caption, W.HBox([self.method, self.pool]), self.controls, self.message,
            W.HBox([self.fig, W.VBox([self.legend, W.HTML("<hr>"), self.picked_label, self.picked])]),
            W.HTML("<b>Images that excite a channel most</b>"),
            W.HBox([self.channel_picker, self.top_button]), self.top_caption, self.top_image,
        ])

    # --- linking -------------------------------------------------------------------------------
    @T.observe("layer")
    def _on_layer(self, change):
        l = self.probe.layer(change["new"])
        self.layer_control.show(l.name)
        self.channel_picker.max = max(0, (l.channels or 1) - 1)
        self.coords = None
        self.fig.title = "press Compute"  # the layer is named under the slider; a short title stays clear of the
        # figure's pan/zoom buttons, which cover its top right corner while the pointer is over it

    @T.observe("channel")
    def _on_channel(self, change):
        if self.channel_picker.value != change["new"]:
            self.channel_picker.value = min(change["new"], self.channel_picker.max)

    # --- the map -------------------------------------------------------------------------------
    def _job(self):
        layer, method, pool = self.layer, self.method.value, self.pool.value
        last = None
        for last in E.features_steps(self.probe, self.images, layer, pool=pool):
            if last.value is None:
                yield last
        feats = last.value[layer]
        coords = E.embed(feats, method)
        yield Step(last.step, last.total, coords, {"layer": layer, "method": method})

    def _frame(self, item, final):
        if item.value is None:
            return
        self.coords = np.asarray(item.value)
        self._draw(item.info["layer"], item.info["method"])

    def _draw(self, layer, method):
        labels = np.array(self.labels)
        for m, c in zip(self.marks, self._classes):
            idx = np.flatnonzero(labels == c)
            with m.hold_sync():
                m.x, m.y = self.coords[idx, 0], self.coords[idx, 1]
                m.selected = None
        for scale, v in ((self.xs, self.coords[:, 0]), (self.ys, self.coords[:, 1])):
            lo, hi = float(v.min()), float(v.max())
            pad = 0.06 * (hi - lo) or 1.0
            scale.min, scale.max = lo - pad, hi + pad  # no point on the frame's edge
        names = {"pca": ("PC 1", "PC 2"), "tsne": ("t-SNE 1", "t-SNE 2")}[method]
        self.ax_x.label, self.ax_y.label = names
        self.fig.title = f"{'PCA' if method == 'pca' else 't-SNE'} of {len(labels)} images"
        self._map_layer = layer

    def compute(self, wait: bool = True):
        """Compute the map for the current layer and method (what the Compute button does)."""
        runner = self.controls.start()
        if wait and runner is not None:
            runner.join()
        return self.coords

    def _clicked(self, change):
        sel = change["new"]
        if sel is None or len(sel) == 0:
            return
        mark = change["owner"]
        c = self._classes[self.marks.index(mark)]
        idx = int(np.flatnonzero(np.array(self.labels) == c)[int(sel[0])])
        for m in self.marks:
            if m is not mark:
                m.selected = None
        self.selected = idx

    @T.observe("selected")
    def _on_selected(self, change):
        i = change["new"]
        if i < 0:
            return
        set_image(self.picked, render.upscale(render.image_rgb(self.thumbs[i]), 160))
        self.picked.layout.display = None
        self.picked_label.value = f"image {i} · <b>{self.labels[i]}</b>"

    # --- top images ----------------------------------------------------------------------------
    def show_top(self):
        """Find and show the ``k`` images that excite the selected channel most."""
        try:
            self.top = E.top_images(self.probe, self.images, self.layer, self.channel, k=self.k)
        except Exception as e:
            self.message.exception(e)
            return None
        tiles = np.stack([render.image_rgb(self.thumbs[i]) for i in self.top.indices])
        set_image(self.top_image, render.mosaic(tiles, cols=min(len(tiles), 5), pad=4))
        self.top_image.layout.display = None
        scores = ", ".join(f"{s:.2f}" for s in self.top.scores)
        self.top_caption.value = f"{self.layer}, channel {self.channel}: max activation {scores} (best first)"
        return self.top

    # --- static --------------------------------------------------------------------------------
    def figure(self, **kwargs):
        import matplotlib.pyplot as plt

        ncols = 2 if self.top is not None else 1
        fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 5), squeeze=False)
        ax = axes[0, 0]
        if self.coords is not None:
            labels = np.array(self.labels)
            for i, c in enumerate(self._classes):
                idx = labels == c
                ax.scatter(self.coords[idx, 0], self.coords[idx, 1], s=20, color=PALETTE[i % len(PALETTE)], label=c)
            ax.legend(fontsize=8)
        ax.set_title(f"{self._map_layer}: {self.fig.title}" if self.coords is not None else self.fig.title)
        if self.top is not None:
            tiles = np.stack([render.image_rgb(self.thumbs[i]) for i in self.top.indices])
            axes[0, 1].imshow(render.mosaic(tiles, cols=min(len(tiles), 5), pad=4))
            axes[0, 1].set_title(f"top {len(tiles)} images: {self.layer} channel {self.channel}")
            axes[0, 1].axis("off")
        fig.tight_layout()
        return fig
