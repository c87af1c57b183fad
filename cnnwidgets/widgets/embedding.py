"""Embedding panel: PCA / t-SNE of a layer's features over an image set, and a channel's top images."""
from __future__ import annotations

import html
from collections import OrderedDict

import bqplot as bq
import ipywidgets as W
import numpy as np
import traitlets as T

from .. import render
from ..analyses import embedding as E
from ..images import sample_dataset
from ..imagesets import class_order, image_set, known_length
from ._base import VERTICAL, LayerSlider, Message, Panel, RunControls, image_widget, set_image

#: tab10, then tab20's light shades: 20 distinct colours before they repeat
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
           "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"]
NO_LABEL = "images"  # the one "class" of a set without labels


class Thumbs:
    """Image ``i`` of a set as the model sees it (resized and cropped, ``CxHxW`` in [0, 1]), read when first asked
    for through ``images.image(i)``; the last ``keep`` are kept."""

    def __init__(self, probe, images, keep: int = 256):
        self.probe, self.images, self.keep = probe, images, keep
        self._memo: OrderedDict[int, object] = OrderedDict()

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i):
        i = int(i)
        if i in self._memo:
            self._memo.move_to_end(i)
            return self._memo[i]
        t = self.probe.display(self.images.image(i))[0]
        self._memo[i] = t
        if len(self._memo) > self.keep:
            self._memo.popitem(last=False)
        return t


class Embedding(Panel):
    """Where a layer puts each image: a 2-D map (PCA or t-SNE) of pooled features, coloured by class.

    ``images`` is any image set :func:`cnnwidgets.image_set` takes — a folder, a Dataset, a DataLoader, a tensor
    ``NxCxHxW`` in [0, 1], a list — with ``labels``/``classes`` for tensors and lists (default: 96 crops of the
    bundled photographs, labelled by photograph). Points are coloured by the set's labels, with a legend of class
    names. Click a point to see its image (read when clicked). Below, the ``k`` images of the set that excite the
    selected channel most.
    """

    layer = T.Unicode().tag(sync=False)
    channel = T.Int(0).tag(sync=False)
    selected = T.Int(-1).tag(sync=False)  #: index of the clicked image, -1 for none

    def __init__(self, probe, images=None, labels=None, layer=None, method: str = "pca", k: int = 9, *, classes=None):
        self.probe = probe
        if images is None:
            images, default_labels = sample_dataset(96, size=probe.transform.input_size[0])
            labels = labels if labels is not None else default_labels
        self.images = image_set(images, labels, classes)  #: the ImageSet (streamed by the analyses)
        n = known_length(self.images)
        known = self.images.labels
        #: each image's class name by position in the set (from the last map once computed), or None
        self.labels: list[str] | None = [self.images.class_name(l) for l in known] if known is not None else None
        self._label_ids = known
        self._indices = None  # set positions of the map's points
        self.thumbs = Thumbs(probe, self.images)  # what the model sees, for the image views, read when shown
        self.k = k
        self.coords: np.ndarray | None = None
        self.result: E.EmbeddingResult | None = None  #: the last map, with the layer's features (top images)
        self.top: E.TopImages | None = None
        self.message = Message()

        convs = probe.require_layers("Embedding")
        self.layer_control = LayerSlider(probe, value=layer or convs[len(convs) // 2].name,
                                         on_move=lambda name: setattr(self, "layer", name))
        self.slider = self.layer_control.slider
        self.method = W.ToggleButtons(options=[("PCA", "pca"), ("t-SNE", "tsne")], value=method, description="map")
        self.pool = W.Dropdown(options=[("mean over space", "mean"), ("max over space", "max")], value="mean", description="pool")
        self.controls = RunControls(self._job, self._frame, total=lambda: n, message=self.message, unit="image",
                                    panel=self, stale=lambda: [self.fig])
        self.controls.start_button.description = "Compute"
        self.controls.start_button.layout.width = "110px"

        self.xs, self.ys = bq.LinearScale(), bq.LinearScale()
        self.marks: list[bq.Scatter] = []
        self._classes: list[str] = []  # class name of each mark, in legend order
        self._class_ids: list[int | None] = []
        self.ax_x = bq.Axis(scale=self.xs, label="component 1")
        self.ax_y = bq.Axis(scale=self.ys, **VERTICAL, label="component 2")
        self.fig = bq.Figure(marks=[], axes=[self.ax_x, self.ax_y], title="Press Compute",
                             layout=W.Layout(width="520px", height="440px"),
                             fig_margin={"top": 50, "bottom": 50, "left": 50, "right": 20})
        self.legend = W.HTML(layout=W.Layout(max_height="400px", overflow="auto", min_width="140px"))
        self._set_classes(known)
        self.picked = image_widget(width="160px")
        self.picked.layout.display = "none"  # no broken-image icon before a click
        self.picked_label = W.HTML("<i>click a point to see its image</i>")

        chans = probe.layer(self.slider.value).channels or 1
        self.channel_picker = W.BoundedIntText(value=0, min=0, max=chans - 1, description="channel", layout=W.Layout(width="180px"))
        self.top_button = W.Button(description=f"Top {k} images", icon="search")
        self.top_image = image_widget(width="420px")
        self.top_image.layout.display = "none"
        self.top_caption = W.HTML()
        self.top_button.on_click(lambda _: self.show_top(wait=False))
        # a layer the map was not computed for: one pass over the set, with progress and Stop
        self.top_controls = RunControls(None, self._top_frame, message=self.message, unit="image", start=False,
                                        pause=False, panel=self, stale=lambda: [self.top_image])

        self.channel_picker.observe(lambda ch: setattr(self, "channel", int(ch["new"])), "value")
        self.layer = self.slider.value
        note = f"<br><span style='color:#8a5a00'>{html.escape(self.images.note)}</span>" if self.images.note else ""
        super().__init__([
            W.HTML(f"<b>Embedding</b> — where <code>{html.escape(probe.name)}</code> puts each image of "
                   f"<i>{html.escape(self.images.description)}</i>{note}"),
            self.slider, self.layer_control.caption, W.HBox([self.method, self.pool]), self.controls, self.message,
            W.HBox([self.fig, W.VBox([self.legend, W.HTML("<hr>"), self.picked_label, self.picked])]),
            W.HTML("<b>Images that excite a channel most</b>"),
            W.HBox([self.channel_picker, self.top_button, self.top_controls]), self.top_caption, self.top_image,
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

    # --- classes: one scatter mark per class, in legend order ------------------------------------------
    def _set_classes(self, label_ids) -> None:
        """Marks and legend for these labels (None: one mark, no classes); kept when the classes are the same."""
        ids = [None] if label_ids is None else class_order(self.images, label_ids)
        if ids == self._class_ids and self.marks:
            return
        self._class_ids = ids
        self._classes = [NO_LABEL if i is None else self.images.class_name(i) for i in ids]
        for m in self.marks:
            m.unobserve(self._clicked, "selected")
        self.marks = [
            bq.Scatter(x=[], y=[], scales={"x": self.xs, "y": self.ys}, colors=[PALETTE[j % len(PALETTE)]], labels=[c],
                       display_legend=False, default_size=48, stroke="white", interactions={"click": "select"},
                       unselected_style={"opacity": 0.5}, selected_style={"stroke": "black", "stroke-width": 2})
            for j, c in enumerate(self._classes)
        ]
        for m in self.marks:
            m.observe(self._clicked, "selected")
        self.fig.marks = self.marks
        if label_ids is None:
            self.legend.value = "<span style='color:#666'>no labels: one colour</span>"
            return
        rows = "".join(f"<div style='line-height:1.4;white-space:nowrap'><span style='color:{PALETTE[j % len(PALETTE)]};"
                       f"font-size:16px'>&#9679;</span> {html.escape(c)}</div>" for j, c in enumerate(self._classes))
        more = (f"<div style='color:#8a5a00'>{len(ids)} classes: colours repeat after {len(PALETTE)}</div>"
                if len(ids) > len(PALETTE) else "")
        self.legend.value = f"<div style='font-weight:bold;line-height:1.6'>class</div>{rows}{more}"

    # --- the map -------------------------------------------------------------------------------
    def _job(self):
        self.mark_weights()
        return E.embedding_steps(self.probe, self.images, self.layer, self.method.value, self.pool.value,
                                 batch_size=self._batch())

    def on_weights_changed(self) -> None:
        """Trained since the map was computed: dim it (and the top images), say so; Compute makes it anew."""
        if self.result is not None:
            self.result = None  # its features are stale: top images are computed anew
            self.fig.add_class("cnnw-stale")
            self.top_image.add_class("cnnw-stale")
            self.message.warn("The model's weights changed since this map was computed (dimmed): press Compute.")

    def _frame(self, item, final):
        if not isinstance(item.value, E.EmbeddingResult):
            return
        self.result = item.value
        self.fig.remove_class("cnnw-stale")
        self.coords = np.asarray(item.value.coords)
        self._indices = np.asarray(item.info["indices"])
        ids = item.info["labels"]
        self._label_ids = ids
        if ids is not None:  # labels by position in the set (a shuffled loader's are those of this pass)
            names = {int(i): self.images.class_name(l) for i, l in zip(self._indices, ids)}
            self.labels = [names.get(i, "") for i in range(int(self._indices.max()) + 1)]
        self._set_classes(ids)
        self._draw(item.value.layer, item.value.method)

    def _rows(self, j: int) -> np.ndarray:
        """Rows of the map (points) in mark ``j``'s class."""
        if self._label_ids is None:
            return np.arange(len(self.coords))
        return np.flatnonzero(np.asarray(self._label_ids) == self._class_ids[j])

    def _draw(self, layer, method):
        for j, m in enumerate(self.marks):
            idx = self._rows(j)
            with m.hold_sync():
                m.x, m.y = self.coords[idx, 0], self.coords[idx, 1]
                m.selected = None
        for scale, v in ((self.xs, self.coords[:, 0]), (self.ys, self.coords[:, 1])):
            lo, hi = float(v.min()), float(v.max())
            pad = 0.06 * (hi - lo) or 1.0
            scale.min, scale.max = lo - pad, hi + pad  # no point on the frame's edge
        names = {"pca": ("PC 1", "PC 2"), "tsne": ("t-SNE 1", "t-SNE 2")}[method]
        self.ax_x.label, self.ax_y.label = names
        self.fig.title = f"{'PCA' if method == 'pca' else 't-SNE'} of {len(self.coords)} images"
        self._map_layer = layer

    def _batch(self) -> int:
        """Images per forward: 8 on a CPU keeps the kernel's peak memory small (a Binder has 2 GB), 32 on a GPU."""
        return 8 if self.probe.device.type == "cpu" else 32

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
        if mark not in self.marks or self.coords is None:
            return
        idx = int(self._indices[self._rows(self.marks.index(mark))[int(sel[0])]])
        for m in self.marks:
            if m is not mark:
                m.selected = None
        self.selected = idx

    @T.observe("selected")
    def _on_selected(self, change):
        i = change["new"]
        if i < 0:
            return
        try:
            thumb = self.thumbs[i]
        except Exception as e:  # an image that cannot be read back (a shuffled loader's not kept)
            self.message.exception(e)
            return
        set_image(self.picked, render.upscale(render.image_rgb(thumb), 160))
        self.picked.layout.display = None
        name = self.labels[i] if self.labels is not None and i < len(self.labels) else ""
        self.picked_label.value = f"image {i}" + (f" · <b>{html.escape(name)}</b>" if name else "")

    # --- top images ----------------------------------------------------------------------------
    def show_top(self, wait: bool = True):
        """Find and show the ``k`` images that excite the selected channel most: from the map's features when it was
        computed for this layer (no forward), else in one pass over the set (with progress and Stop; ``wait``: return
        when it is done)."""
        self.check_weights()
        r = self.result
        try:
            if r is not None and r.layer == self.probe.layer(self.layer).name:
                self._show_top(r.top(self.channel, self.k))
                return self.top
            job = E.top_images_steps(self.probe, self.images, self.layer, self.channel, k=self.k, batch_size=self._batch())
        except Exception as e:
            self.message.exception(e)
            return None
        runner = self.top_controls.run(job, known_length(self.images))
        if wait:
            runner.join()
        return self.top

    def _top_frame(self, item, final) -> None:
        if isinstance(item.value, E.TopImages):
            self._show_top(item.value)

    def _show_top(self, top: E.TopImages) -> None:
        self.top = top
        self.top_image.remove_class("cnnw-stale")
        tiles = np.stack([render.image_rgb(self.thumbs[i]) for i in self.top.indices])
        set_image(self.top_image, render.mosaic(tiles, cols=min(len(tiles), 5), pad=4))
        self.top_image.layout.display = None
        scores = ", ".join(f"{s:.2f}" for s in self.top.scores)
        self.top_caption.value = (f"{html.escape(top.layer)}, channel {top.channel}: max activation {scores} "
                                  "(best first)")

    # --- static --------------------------------------------------------------------------------
    def figure(self, **kwargs):
        import matplotlib.pyplot as plt

        ncols = 2 if self.top is not None else 1
        fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 5), squeeze=False)
        ax = axes[0, 0]
        if self.coords is not None:
            for j, c in enumerate(self._classes):
                idx = self._rows(j)
                ax.scatter(self.coords[idx, 0], self.coords[idx, 1], s=20, color=PALETTE[j % len(PALETTE)], label=c)
            if self._label_ids is not None:
                ax.legend(fontsize=8, title="class", loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        ax.set_title(f"{self._map_layer}: {self.fig.title}" if self.coords is not None else self.fig.title)
        if self.top is not None:
            tiles = np.stack([render.image_rgb(self.thumbs[i]) for i in self.top.indices])
            axes[0, 1].imshow(render.mosaic(tiles, cols=min(len(tiles), 5), pad=4))
            axes[0, 1].set_title(f"top {len(tiles)} images: {self.layer} channel {self.channel}")
            axes[0, 1].axis("off")
        fig.tight_layout()
        return fig
