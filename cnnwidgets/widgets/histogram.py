"""Histogram: weights, biases and activations of one layer, and a sortable table of every parameter."""
from __future__ import annotations

import html

import bqplot as bq
import ipywidgets as W
import numpy as np
import traitlets as T

from ..analyses import stats
from ._base import VERTICAL, LayerSlider, Message, Panel, nice_ticks
from ._controls import ImageInput

COLUMNS = [  # (sort key, header, width in characters)
    ("name", "parameter", 31), ("shape", "shape", 12), ("size", "size", 9), ("mean", "mean", 9), ("std", "std", 9),
    ("min", "min", 9), ("max", "max", 9), ("zeros", "zeros", 7),
]
CHAR_PX = 7.25  # width of one character of the table's 12px monospace font
_CSS = ("<style>.cnnw-table select{font-family:Menlo,Consolas,'DejaVu Sans Mono',monospace;font-size:12px;}"
        ".cnnw-table-head button{font-family:Menlo,Consolas,'DejaVu Sans Mono',monospace;font-size:12px;"
        "padding:0 2px;text-align:left;}.cnnw-table-head button.cnnw-num{text-align:right;padding-right:8px}</style>")


def _g(v: float) -> str:
    return "nan" if v != v else f"{v:.3g}"


def _stats_html(s: stats.Stats) -> str:
    rows = [("mean", _g(s.mean)), ("std", _g(s.std)), ("min", _g(s.min)), ("max", _g(s.max)),
            ("zeros", f"{100 * s.zeros:.1f}%"), ("values", f"{s.count:,}")]
    if not s.finite:
        rows.append(("NaN / ±inf", f"<span style='color:#b00020'>{s.nan} / {s.inf}</span>"))
    cells = "".join(f"<tr><td style='color:#666;padding-right:8px'>{k}</td><td style='text-align:right'>{v}</td></tr>"
                    for k, v in rows)
    return f"<table style='font-size:12px;line-height:1.25'>{cells}</table>"


class _Chart:
    """One bqplot histogram (Bars of numpy counts) with a title and the statistics beside it."""

    def __init__(self, title: str, color: str, width: int = 235, height: int = 200):
        self.x, self.y = bq.LinearScale(), bq.LinearScale(min=0.0)
        self.bars = bq.Bars(x=[0.0], y=[0.0], scales={"x": self.x, "y": self.y}, padding=0.05, colors=[color])
        self.figure = bq.Figure(
            marks=[self.bars], padding_y=0.0, padding_x=0.02,
            axes=[bq.Axis(scale=self.x, label="value", tick_format=".2~g"),
                  bq.Axis(scale=self.y, **VERTICAL, label="count", tick_format=".2~s",
                          label_offset="35px")],
            fig_margin=dict(top=10, bottom=40, left=50, right=12),
            layout=W.Layout(width=f"{width}px", height=f"{height}px"))
        self.title = W.HTML(f"<b>{title}</b>")
        self.stats = W.HTML()
        self.hist: stats.Histogram | None = None
        self.data_stats: stats.Stats | None = None
        self.name = ""
        if self.figure.has_trait("display_toolbar"):  # bqplot >= 0.13
            self.figure.display_toolbar = False
        self.box = W.VBox([self.title, W.HBox([self.figure, self.stats], layout=W.Layout(align_items="center"))],
                          layout=W.Layout(margin="0 10px 8px 0", width="350px"))

    def show(self, name: str, values, bins: int, what: str) -> None:
        self.name = name
        if values is None:
            self.hist = self.data_stats = None
            self.title.value = f"<b>{what}</b>"
            self.stats.value = f"<div style='color:#666;line-height:1.35;width:220px'>{html.escape(name)}</div>"
            self.figure.layout.display = "none"
            return
        h = stats.histogram(values, bins)
        s = stats.describe(values)
        self.hist, self.data_stats = h, s
        shape = "×".join(map(str, np.shape(values))) or "scalar"
        self.title.value = (f"<div style='line-height:1.3'><b>{what}</b> <code>{html.escape(name)}</code><br>"
                            f"<span style='color:#666;font-size:12px'>{shape}, {bins} bins</span></div>")
        self.stats.value = _stats_html(s)
        with self.figure.hold_sync():
            self.bars.x = h.centers
            self.bars.y = h.counts
            ax, ay = self.figure.axes  # round ticks inside the data (bqplot's num_ticks splits the exact range)
            ax.tick_values = nice_ticks(float(np.min(h.centers)), float(np.max(h.centers)), 4)
            ay.tick_values = nice_ticks(0.0, float(np.max(h.counts)), 4)
        self.figure.layout.display = None


class Histogram(Panel):
    """Distributions of one layer's weights, biases and activations (seed 003), and every parameter's statistics.

    >>> h = cw.Histogram(probe, cw.sample_image("chelsea"))
    >>> h.layer = "features.0"            # or move the slider; link it to FeatureMaps.layer
    >>> h.sort_by, h.descending = "std", True; h.parameter = "features.3.weight"

    Traits: ``layer`` (module name, linkable), ``parameter`` (the table's selected state_dict key),
    ``sort_by`` (one of :data:`cnnwidgets.analyses.stats.SORT_KEYS`) and ``descending``.
    """

    layer = T.Unicode().tag(sync=False)
    parameter = T.Unicode().tag(sync=False)
    sort_by = T.Unicode("order").tag(sync=False)
    descending = T.Bool(False).tag(sync=False)

    def __init__(self, probe, image=None, layer=None, *, bins: int = 50):
        self.probe = probe
        self.bins = bins
        self.message = Message()
        self._x = None
        self.param_layers = [l for l in probe.all_layers if stats.module_parameters(l.module)]
        if not self.param_layers:
            raise ValueError(f"{probe.name} has no layers with parameters to show.")
        self._read_parameters()

        if layer is not None:
            first = probe.layer(layer).name
        else:
            first = probe.layers[0].name if len(probe.layers) else self.param_layers[0].name
        self.layer_control = LayerSlider(probe, self.param_layers, value=first,
                                         on_move=lambda name: setattr(self, "layer", name))
        self.slider, self.layer_label = self.layer_control.slider, self.layer_control.caption
        self.input = ImageInput(probe, image, self.message)
        self.weights = _Chart("weights", "#3b6ea8")
        self.bias = _Chart("bias", "#d9822b")
        self.acts = _Chart("activations", "#4f9a4f")
        self.selected = _Chart("selected parameter", "#7a4fa0")

        self.head_buttons = []
        for key, title, width in COLUMNS:
            b = W.Button(description=title, layout=W.Layout(width=f"{width * CHAR_PX:.0f}px", height="24px",
                                                              margin="0"),
                         tooltip=f"sort by {title}")
            b.on_click(lambda _, k=key: self.sort(k))
            if key not in ("name", "shape"):
                b.add_class("cnnw-num")
            self.head_buttons.append(b)
        self.table = W.Select(options=[], rows=14, layout=W.Layout(width=f"{sum(c[2] for c in COLUMNS) * CHAR_PX + 24:.0f}px"))
        self.table.add_class("cnnw-table")
        head = W.HBox(self.head_buttons, layout=W.Layout(margin="0 0 0 2px"))
        head.add_class("cnnw-table-head")
        self.table_title = W.HTML()

        super().__init__([
            W.HTML(_CSS + "<b>Histograms</b> — the distribution of the chosen layer's weights, biases and "
                   "activations (for the input image), and statistics of every parameter of the model."),
            self.slider, self.layer_label, self.input, self.message,
            W.HBox([self.weights.box, self.bias.box, self.acts.box], layout=W.Layout(flex_flow="row wrap")),
            self.table_title,
            W.HBox([W.VBox([head, self.table]), self.selected.box], layout=W.Layout(flex_flow="row wrap")),
        ])

        self.add_class("cnnw-histogram")
        for chart, cls in ((self.weights, "weights"), (self.bias, "bias"), (self.acts, "activations"),
                           (self.selected, "selected")):
            chart.figure.add_class(f"cnnw-hist-{cls}")
        self.table.observe(self._on_row, "value")
        self.input.on_change(self._on_image)
        self._fill_table()
        self.layer = first
        self._on_image(self.input.image)

    def _read_parameters(self) -> None:
        """The table's statistics, from the weights as they are now (recomputed when they change)."""
        self._state = self.probe.named_tensors()
        self.rows = stats.parameter_table(self._state, self.probe.parameter_names())
        self._by_name = {r.name: r for r in self.rows}
        self.mark_weights()

    def on_weights_changed(self) -> None:
        """Trained or edited since: the table, the layer's histograms and the selected parameter, anew."""
        self._read_parameters()
        self._fill_table()
        self._show_parameters()
        self._show_activations()
        if self.parameter:
            self.selected.show(self.parameter, self._values(self.parameter), self.bins, "selected")

    # --- public --------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Show the weights as they are now (any interaction does this too when the weights changed)."""
        if not self.check_weights():
            self.on_weights_changed()

    def sort(self, key: str) -> None:
        """Sort the table by ``key``; the same key again flips the direction (as a header click does)."""
        if key == "shape":
            key = "size"
        if key == self.sort_by:
            self.descending = not self.descending
        else:
            with self.hold_trait_notifications():
                self.sort_by = key
                self.descending = key not in ("order", "name")

    def set_image(self, image, name: str = "your image") -> None:
        try:
            self.input.set_image(image, name)
        except Exception as e:
            self.message.exception(e)

    @property
    def table_rows(self) -> list[stats.ParameterRow]:
        """The table's rows in the order shown."""
        return list(self._sorted)

    # --- observers -----------------------------------------------------------------------------
    @T.validate("layer")
    def _valid_layer(self, proposal):
        return self.probe.layer(proposal["value"]).name

    @T.validate("sort_by")
    def _valid_sort(self, proposal):
        if proposal["value"] not in stats.SORT_KEYS:
            raise T.TraitError(f"sort_by must be one of {stats.SORT_KEYS}, got {proposal['value']!r}.")
        return proposal["value"]

    @T.validate("parameter")
    def _valid_parameter(self, proposal):
        v = proposal["value"]
        if v and v not in self._by_name:
            import difflib

            close = difflib.get_close_matches(v, list(self._by_name), n=3)
            raise T.TraitError(f"No parameter {v!r} in the state_dict." + (f" Close: {close}." if close else ""))
        return v

    @T.observe("layer")
    def _layer_changed(self, change) -> None:
        self.check_weights()
        self.layer_control.show(change["new"])
        self._show_parameters()
        self._show_activations()
        params = [r.name for r in self.rows if r.module == change["new"]]
        if params and self.parameter not in params:
            self.parameter = params[0]

    @T.observe("parameter")
    def _parameter_changed(self, change) -> None:
        name = change["new"]
        if self.table.value != name and name in [o[1] for o in self.table.options]:
            self.table.value = name
        if not name:
            return
        self.check_weights()
        self.selected.show(name, self._values(name), self.bins, "selected")
        module = self._by_name[name].module
        if module and module != self.layer and module in self.probe.all_layers:
            self.layer = module

    @T.observe("sort_by", "descending")
    def _sort_changed(self, change) -> None:
        if not self.check_weights():
            self._fill_table()

    def _on_row(self, change) -> None:
        if change["new"]:
            self.parameter = change["new"]

    def _on_image(self, image) -> None:
        self.message.clear()
        try:
            self._x = self.probe.prepare(image)
        except Exception as e:
            self.message.exception(e)
            return
        self._show_activations()

    # --- drawing -------------------------------------------------------------------------------
    def _values(self, name: str):
        t = self._state.get(name)
        return None if t is None else stats._np(t.detach().float())

    def _show_parameters(self) -> None:
        w, b = self._state.get(f"{self.layer}.weight"), self._state.get(f"{self.layer}.bias")
        self.weights.show(f"{self.layer}.weight" if w is not None else "this layer has no weights",
                          None if w is None else stats._np(w.detach().float()), self.bins, "weights")
        self.bias.show(f"{self.layer}.bias" if b is not None else "this layer has no bias (bias=False)",
                       None if b is None else stats._np(b.detach().float()), self.bins, "bias")

    def _show_activations(self) -> None:
        if self._x is None or not self.layer:
            return
        try:
            a = self.probe.activations(self._x, self.layer, preprocess=False)
        except Exception as e:
            self.message.exception(e)
            self.acts.show("failed for this image", None, self.bins, "activations")
            return
        self.acts.show(f"{self.layer} output ({self.input.name})", stats._np(a[0].float()), self.bins, "activations")

    def _fill_table(self) -> None:
        self._sorted = stats.sort_rows(self.rows, self.sort_by, self.descending)
        options = [(self._format(r), r.name) for r in self._sorted]
        keep = self.parameter
        self.table.options = options
        if keep in self._by_name:
            self.table.value = keep
        arrow = "▼" if self.descending else "▲"
        for (key, title, _), b in zip(COLUMNS, self.head_buttons):
            active = key == self.sort_by
            b.description = f"{title} {arrow}" if active else title
            b.button_style = "info" if active else ""
        order = "model order" if self.sort_by == "order" else f"{self.sort_by}, {'descending' if self.descending else 'ascending'}"
        self.table_title.value = (f"<div style='line-height:1.35'><b>every parameter</b> ({len(self.rows)} tensors of the state_dict, BatchNorm's "
                                  f"num_batches_tracked left out) — sorted by {order}. <span style='color:#666'>"
                                  f"Click a header to sort, a row to see its histogram.</span></div>")

    @staticmethod
    def _format(r: stats.ParameterRow) -> str:
        def cell(text: str, width: int, left: bool = False) -> str:
            text = text if len(text) < width else text[: width - 2] + "…"
            return text.ljust(width) if left else text.rjust(width - 1) + " "

        s = r.stats
        w = [c[2] for c in COLUMNS]
        name = r.name if len(r.name) < w[0] else "…" + r.name[-(w[0] - 2):]
        shape = "×".join(map(str, r.shape)) or "scalar"
        vals = [cell(name, w[0], True), cell(shape, w[1], True), cell(f"{s.count:,}", w[2]), cell(_g(s.mean), w[3]),
                cell(_g(s.std), w[4]), cell(_g(s.min), w[5]), cell(_g(s.max), w[6]), cell(f"{100 * s.zeros:.1f}%", w[7])]
        return "".join(vals).replace(" ", "\u00a0")

    # --- static --------------------------------------------------------------------------------
    def parameters_figure(self, bins: int | None = None, cols: int = 4):
        """A matplotlib Figure (not registered with pyplot) of one ``bins``-bin histogram (default: the panel's,
        50) per state_dict entry of the table (every one but ``num_batches_tracked``), in the table's order, titled
        with the entry's name, its mean, std (ddof=1), min and max (seed 003's figures, all at once)."""
        from matplotlib.figure import Figure

        bins = self.bins if bins is None else int(bins)
        if bins < 1 or int(cols) < 1:
            raise ValueError(f"bins and cols must be positive whole numbers, got bins={bins}, cols={cols}.")
        rows = self.table_rows
        cols = min(int(cols), len(rows))
        nrow = -(-len(rows) // cols)
        fig = Figure(figsize=(3.4 * cols, 2.5 * nrow), layout="constrained")
        axes = fig.subplots(nrow, cols, squeeze=False).ravel()
        for ax, r in zip(axes, rows):
            h, st = stats.histogram(self._state[r.name], bins=bins), r.stats
            ax.bar(h.centers, h.counts, width=h.width, color="#3b6ea8" if r.trainable else "#7a7a7a")
            ax.set_title(f"{r.name} {'×'.join(map(str, r.shape))}\nmean {_g(st.mean)} std {_g(st.std)}\n"
                         f"min {_g(st.min)} max {_g(st.max)}", fontsize=7)
            ax.tick_params(labelsize=6)
        for ax in axes[len(rows):]:
            ax.axis("off")
        return fig

    def figure(self, **kwargs):
        """A matplotlib figure of the four histograms with their statistics."""
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
        for ax, chart, what in zip(axes.ravel(), (self.weights, self.bias, self.acts, self.selected),
                                   ("weights", "bias", "activations", "selected")):
            if chart.hist is None:
                ax.text(0.5, 0.5, chart.name or "nothing selected", ha="center", va="center", transform=ax.transAxes)
                ax.set_title(what)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            h, s = chart.hist, chart.data_stats
            ax.bar(h.centers, h.counts, width=h.width, color=chart.bars.colors[0], edgecolor="white", linewidth=0.3)
            ax.set_title(f"{what}: {chart.name}", fontsize=10)
            ax.set_xlabel("value")
            ax.set_ylabel("count")
            ax.text(0.98, 0.95, f"mean {_g(s.mean)}\nstd {_g(s.std)}\nmin {_g(s.min)}\nmax {_g(s.max)}\n"
                    f"zeros {100 * s.zeros:.1f}%", transform=ax.transAxes, ha="right", va="top", fontsize=8,
                    bbox=dict(boxstyle="round", fc="white", ec="#ccc"))
        fig.suptitle(self.probe.layer(self.layer).label)
        fig.tight_layout()
        return fig
