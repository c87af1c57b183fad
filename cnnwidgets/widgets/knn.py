"""KNNAccuracy: a bar per layer, how well its features tell the classes apart (k-NN accuracy over an image set)."""
from __future__ import annotations

import html

import bqplot as bq
import ipywidgets as W
import numpy as np
import traitlets as T

from ..analyses import knn
from ..imagesets import image_set, known_length
from ._base import VERTICAL, Message, Panel, RunControls
from .cka_heatmap import short_name


class KNNAccuracy(Panel):
    """Where, going deeper, the classes become separable: the k-NN accuracy of each layer's pooled features over a
    labelled image set (a folder of class folders, a Dataset, a DataLoader...), one streamed pass with progress.

    >>> cw.KNNAccuracy(probe, "photos/")          # press Compute; click a bar to select its layer

    Trait: ``layer`` (the clicked bar's layer, for linking).
    """

    layer = T.Unicode("").tag(sync=False)

    def __init__(self, probe, images, layers=None, *, k: int = 5, test: float | None = None, batch_size: int = 32):
        self.probe = probe
        self.images = image_set(images)
        self.layers = [l.name for l in (probe.require_layers("k-NN accuracy") if layers is None else probe._resolve(layers))]
        self.test = test
        self.batch_size = batch_size
        self.result: knn.KNNResult | None = None
        self.message = Message()
        n = known_length(self.images)
        self.k_picker = W.BoundedIntText(value=k, min=1, max=99, description="neighbours", layout=W.Layout(width="170px"))
        self.pool = W.Dropdown(options=[("mean over space", "mean"), ("max over space", "max")], value="mean",
                               description="pool", layout=W.Layout(width="240px"))
        self.controls = RunControls(self._job, self._frame, total=lambda: None if n is None else n + len(self.layers),
                                    message=self.message, unit="step", panel=self, stale=lambda: [self.fig])
        self.controls.start_button.description = "Compute"
        self.controls.start_button.layout.width = "110px"
        self.xs, self.ys = bq.OrdinalScale(), bq.LinearScale(min=0.0, max=1.0)
        self.bars = bq.Bars(x=[], y=[], scales={"x": self.xs, "y": self.ys}, colors=["#1f77b4"],
                            interactions={"click": "select"}, selected_style={"fill": "#ff7f0e"})
        self.chance = bq.Lines(x=[], y=[], scales={"x": self.xs, "y": self.ys}, colors=["#d62728"], line_style="dashed")
        self.fig = bq.Figure(marks=[self.bars, self.chance], title="Press Compute",
                             axes=[bq.Axis(scale=self.xs, label="layer (input → output)", tick_rotate=-35),
                                   bq.Axis(scale=self.ys, **VERTICAL, label="k-NN accuracy", tick_format=".0%")],
                             layout=W.Layout(width="640px", height="380px"),
                             fig_margin={"top": 40, "bottom": 90, "left": 60, "right": 20})
        self.summary = W.HTML()
        self.bars.observe(self._clicked, "selected")
        super().__init__([
            W.HTML(f"<b>k-NN accuracy per layer</b> — how well each layer of <code>{html.escape(probe.name)}</code> "
                   f"tells apart the classes of <i>{html.escape(self.images.description)}</i>: each image's class is "
                   "guessed from its most similar images (cosine of the layer's pooled features)"),
            W.HBox([self.k_picker, self.pool]), self.controls, self.message, self.fig, self.summary])

    def _job(self):
        self.mark_weights()
        return knn.knn_steps(self.probe, self.images, self.layers, k=int(self.k_picker.value), pool=self.pool.value,
                             test=self.test, batch_size=self.batch_size)

    def _frame(self, item, final) -> None:
        res = item.value
        if not isinstance(res, knn.KNNResult):
            return
        self.result = res
        self.fig.remove_class("cnnw-stale")
        names = [short_name(n) for n in res.layers]
        with self.bars.hold_sync():
            self.xs.domain = [short_name(n) for n in self.layers]
            self.bars.x, self.bars.y = names, np.asarray(res.accuracy)
        if names:
            self.chance.x, self.chance.y = [names[0], short_name(self.layers[-1])], [res.chance, res.chance]
        self.fig.title = f"{res.how}, {res.k} neighbours, {res.images} images"
        if res.accuracy:
            best = int(np.argmax(res.accuracy))
            self.summary.value = (f"best: <b>{html.escape(res.layers[best])}</b> {res.accuracy[best]:.0%} · last: "
                                  f"{res.accuracy[-1]:.0%} · <span style='color:#d62728'>dashed: chance "
                                  f"({res.chance:.0%}, always the most frequent class)</span>")

    def compute(self, wait: bool = True) -> knn.KNNResult | None:
        """Compute every layer's accuracy (what Compute does); ``wait``: return when it is done."""
        runner = self.controls.start()
        if wait and runner is not None:
            runner.join()
        return self.result

    def on_weights_changed(self) -> None:
        if self.result is not None:
            self.fig.add_class("cnnw-stale")
            self.message.warn("The model's weights changed since these accuracies were computed (dimmed): press Compute.")

    def _clicked(self, change) -> None:
        sel = change["new"]
        if self.result is not None and sel is not None and len(sel):
            self.layer = self.result.layers[int(sel[0])]

    def figure(self, **kwargs):
        import matplotlib.pyplot as plt

        if self.result is None:
            raise ValueError("Nothing computed yet: press Compute.")
        r = self.result
        fig, ax = plt.subplots(figsize=(max(5, 0.45 * len(r.layers) + 2), 3.6))
        ax.bar(range(len(r.layers)), r.accuracy, color="#1f77b4")
        ax.axhline(r.chance, color="#d62728", ls="--", label=f"chance ({r.chance:.0%})")
        ax.set_xticks(range(len(r.layers)), [short_name(n) for n in r.layers], rotation=45, ha="right", fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("k-NN accuracy")
        ax.set_title(f"{r.how}, {r.k} neighbours, {r.images} images", fontsize=10)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig
