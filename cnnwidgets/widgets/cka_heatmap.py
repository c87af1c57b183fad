"""CKAHeatmap: a clickable CKA matrix (layers x layers, channels x channels, or model A x model B).

The maths is in :mod:`cnnwidgets.analyses.cka`; this panel only draws. Matrix of up to
``GRID_MAX`` rows and columns: a bqplot ``GridHeatMap`` (one SVG cell each: hover tooltip with the
value, per-cell clicks). Larger (512 x 512 channels): a bqplot ``HeatMap`` (one canvas, so the
browser does not freeze) under a transparent bqplot ``Image`` mark whose clicks report the pointer in
data coordinates, mapped to the cell by rounding.
"""
from __future__ import annotations

import html

import bqplot as bq
import ipywidgets as W
import numpy as np
import traitlets as T

from .. import render
from ..analyses import cka
from ..images import sample_batch
from ..imagesets import image_set, known_length
from ._base import VERTICAL, Message, Panel, RunControls, image_widget, set_image

GRID_MAX = 64  #: above this many rows or columns, the canvas HeatMap is used
MODES = ("layers", "channels", "models")
MAP_PX = 150
_CLEAR_PNG = render.encode(np.zeros((1, 1, 3), np.uint8), "png")


def short_name(name: str) -> str:
    """``_blocks.3._project_conv`` -> ``block3.project``; ``layer4.1.conv2`` stays; for axis ticks."""
    parts = [p.strip("_") for p in name.split(".")]
    parts = [p[:-5] if p.endswith("_conv") else p for p in parts]
    if len(parts) > 1 and parts[0] in ("blocks", "layers", "stages") and parts[1].isdigit():
        parts = [f"block{parts[1]}"] + parts[2:]
    return ".".join(parts)


class GridHeatMap(bq.GridHeatMap):
    """bqplot's GridHeatMap whose ``selected`` stays an integer array: bqplot reads the front end's
    ``[[row, col]]`` selection as an object-dtype array, which it then cannot send back, so ``get_state()`` raised
    and a reload left every widget of the notebook on "Loading widget..."."""

    @T.validate("selected")
    def _int_selection(self, proposal):
        v = proposal["value"]
        if v is not None and np.asarray(v).dtype == object:
            v = np.asarray(np.asarray(v).tolist(), dtype=np.int64).reshape(-1, 2)
        return v


def _transparent(w: int = 4, h: int = 4) -> bytes:
    from PIL import Image
    import io

    buf = io.BytesIO()
    Image.new("RGBA", (w, h), (0, 0, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


class CKAHeatmap(Panel):
    """Linear CKA between layers (or channels of one layer, or the layers of two models), live and clickable.

    >>> hm = cw.CKAHeatmap(probe, cw.sample_batch(64))                         # layers x layers
    >>> hm = cw.CKAHeatmap(probe, images, mode="channels", layer="_blocks.15")  # channels x channels
    >>> hm = cw.CKAHeatmap(probe, images, mode="models", other=probe_b)         # model A x model B

    Click a cell: the two layers' (channels') maps for the chosen image appear side by side, and
    ``selected`` / ``layer_a`` / ``layer_b`` (and ``channel`` in channels mode) change.
    """

    selected = T.Tuple().tag(sync=False)  #: (row name, column name) of the clicked cell
    layer_a = T.Unicode("").tag(sync=False)  #: layer of the clicked row
    layer_b = T.Unicode("").tag(sync=False)  #: layer of the clicked column
    layer = T.Unicode("").tag(sync=False)  #: the layer whose channels are compared (channels mode)
    channel = T.Int(0).tag(sync=False)  #: channel of the clicked row (channels mode)
    image_index = T.Int(0).tag(sync=False)  #: which image the maps are shown for

    def __init__(self, probe, images=None, mode: str = "layers", layer=None, other=None, layers=None, *,
                 estimator: str | None = None, kernel: str = "linear", batch_size: int = 16, cluster: bool = True,
                 autostart: bool = True, run_mode: str = "auto"):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
        if mode == "models" and other is None:
            raise ValueError("mode='models' needs other=Probe(second_model): its layers are the columns.")
        self.probe = probe
        self.other = other
        self.mode = mode
        self.images = sample_batch(32) if images is None else images
        self._set = image_set(self.images)
        self.n_images = known_length(self._set)  #: None for a set that is only streamed (an IterableDataset's loader)
        self.layers = layers
        self.kernel = kernel
        self.estimator = estimator or ("biased" if mode == "channels" else "unbiased")
        self.batch_size = batch_size
        self.result: cka.CKAResult | None = None
        self.order: np.ndarray | None = None  # displayed index -> matrix index (channels, clustered)
        self._display = None
        self.message = Message()
        if mode == "channels":
            lay = probe.layer(layer if layer is not None else probe.layers[len(probe.layers) // 2].name)
            self.layer = lay.name
        elif layer is not None:
            self.layer = probe.layer(layer).name

        self.title = W.HTML()
        self.estimator_picker = W.Dropdown(options=[("minibatch (unbiased)", "unbiased"), ("full batch (biased, exact)", "biased")],
                                           value=self.estimator, description="estimator", layout=W.Layout(width="300px"))
        self.kernel_picker = W.Dropdown(options=["linear", "rbf"], value=kernel, description="kernel",
                                        layout=W.Layout(width="170px"), style={"description_width": "50px"})
        self.cluster_box = W.Checkbox(value=cluster, description="cluster channels", indent=False,
                                      layout=W.Layout(width="150px", display="" if mode == "channels" else "none"))
        self.controls = RunControls(self._make_job, self._on_frame, total=self._total, fps=4.0, message=self.message,
                                    mode=run_mode, on_start=self._on_start, unit="batch", panel=self,
                                    stale=lambda: [self.figure_widget, self.pair_box])

        # heatmap
        self._cs = bq.ColorScale(scheme="Blues", min=0.0, max=1.0)
        self._caxis = bq.ColorAxis(scale=self._cs, **{**VERTICAL, "side": "right"}, label="CKA", tick_format=".1f")
        self.figure_widget = bq.Figure(marks=[], axes=[], fig_margin=dict(top=30, bottom=100, left=110, right=100),
                                       layout=W.Layout(width="660px", height="620px"), title="")
        self.hover = W.HTML("<span style='color:#666'>hover a cell for its value; click it to compare the pair</span>")

        # the selected pair
        self.pair_title = W.HTML("<b>Click a cell</b> to see the two feature maps side by side.")
        self.image_slider = W.IntSlider(value=0, min=0, max=max(0, (self.n_images or 1) - 1), description="image",
                                        layout=W.Layout(width="300px"), style={"description_width": "45px"})
        self.input_view = image_widget(width=f"{MAP_PX}px")
        self.map_a, self.map_b = image_widget(width=f"{MAP_PX}px"), image_widget(width=f"{MAP_PX}px")
        self.cap_in, self.cap_a, self.cap_b = W.HTML("input"), W.HTML(), W.HTML()
        cell = lambda cap, img: W.VBox([cap, img], layout=W.Layout(width=f"{MAP_PX + 14}px", margin="0 6px 0 0"))  # noqa: E731
        self.pair_box = W.HBox([cell(self.cap_in, self.input_view), cell(self.cap_a, self.map_a), cell(self.cap_b, self.map_b)],
                               layout=W.Layout(visibility="hidden"))  # until a cell is clicked
        self.pair_note = W.HTML()
        self.summary = W.HTML()
        self.image_slider.observe(lambda ch: setattr(self, "image_index", int(ch["new"])), "value")
        self.cluster_box.observe(lambda ch: self.result is not None and self.result.final and self._draw(self.result, True), "value")
        for w, cls in ((self, "cnnw-cka"), (self.figure_widget, "cnnw-cka-figure"), (self.map_a, "cnnw-cka-map-a"),
                       (self.map_b, "cnnw-cka-map-b"), (self.pair_title, "cnnw-cka-pair"), (self.hover, "cnnw-cka-hover")):
            w.add_class(cls)
        right = W.VBox([self.pair_title, self.image_slider, self.pair_box, self.pair_note],
                       layout=W.Layout(width=f"{3 * (MAP_PX + 20) + 10}px", margin="30px 0 0 10px"))
        options = W.HBox([self.estimator_picker, self.kernel_picker, self.cluster_box], layout=W.Layout(flex_flow="row wrap"))
        super().__init__([self.title, options, self.controls, self.message, W.HBox([W.VBox([self.figure_widget, self.hover, self.summary], layout=W.Layout(flex="0 0 auto", width="670px")), right])])
        self._update_title()
        if autostart:
            self.autostart(self.controls)  # a background thread now, or (foreground) once the panel is on screen

    # --- computing -----------------------------------------------------------------------------
    def on_weights_changed(self) -> None:
        """The model changed since this matrix was computed: say so and dim it until Start computes it again."""
        if self.result is not None:
            self.figure_widget.add_class("cnnw-stale")
            self.summary.value = ("<span style='color:#8a5a00'><b>The model's weights changed since this was computed</b> "
                                  "(dimmed): press Start to compute it again.</span>")

    def _on_start(self) -> None:
        self.mark_weights()
        self.figure_widget.remove_class("cnnw-stale")
        self.estimator = self.estimator_picker.value
        self.kernel = self.kernel_picker.value

    def _total(self):
        return None if self.n_images is None else len(cka._splits(self.n_images, self.batch_size))

    def _make_job(self):
        kw = dict(batch_size=self.batch_size, estimator=self.estimator, kernel=self.kernel)
        s = self._set  # the panel's own set: a streamed loader's images seen in the pass can be shown afterwards
        if self.mode == "layers":
            return cka.layer_similarity_steps(self.probe, s, self.layers, **kw)
        if self.mode == "channels":
            return cka.channel_similarity_steps(self.probe, s, self.layer, **kw)
        return cka.model_similarity_steps(self.probe, self.other, s, self.layers, None, **kw)

    def _on_frame(self, item, final: bool) -> None:
        res = getattr(item, "value", None)
        if res is None:
            return
        self.result = res
        self._draw(res, final)
        if final:
            dead = sorted(set(res.dead_rows) | set(res.dead_cols))
            text = f"done: {res.images} images, {res.estimator} {res.kernel} CKA."
            if dead:
                shown = ", ".join(short_name(d) for d in dead[:12]) + (" …" if len(dead) > 12 else "")
                self.summary.value = (f"<span style='color:#8a5a00'>{html.escape(text)} {len(dead)} dead/constant "
                                      f"(CKA 0 with all others, 1 with itself): {html.escape(shown)}</span>")
            else:
                self.summary.value = f"<span style='color:#444'>{html.escape(text)}</span>"
            self.check_weights()  # trained while it ran: the matrix mixes weights, and says so

    @T.observe("layer")
    def _layer_changed(self, change) -> None:
        if self.mode == "channels" and change["old"] and change["new"] != change["old"]:
            self.result = None
            self._update_title()
            self.controls.start()

    # --- drawing -------------------------------------------------------------------------------
    def _labels(self, names, probe):
        if self.mode == "channels":
            return [n.rsplit(":", 1)[1] for n in names]
        return [short_name(n) for n in names]

    def _update_title(self) -> None:
        what = {"layers": f"layers of <code>{self.probe.name}</code>",
                "channels": f"channels of <code>{html.escape(self.layer)}</code> ({self.probe.name})",
                "models": f"layers of <code>{self.probe.name}</code> (rows) and <code>{self.other.name if self.other else ''}</code> (columns)"}[self.mode]
        self.title.value = (f"<b style='font-size:15px'>CKA similarity between {what}</b><br>"
                            f"<span style='color:#555'>over {self.n_images or 'the'} images · dark blue = the two represent the images "
                            f"alike (1), white = unrelated (0)</span>")

    def _draw(self, res: cka.CKAResult, final: bool) -> None:
        m = res.matrix
        order_r = order_c = None
        if self.mode == "channels" and self.cluster_box.value and final:
            order_r = order_c = cka.cluster_order(m)
        self.order = order_r
        if order_r is not None:
            m = m[np.ix_(order_r, order_c)]
        rows = [res.rows[i] for i in (order_r if order_r is not None else range(len(res.rows)))]
        cols = [res.cols[i] for i in (order_c if order_c is not None else range(len(res.cols)))]
        self._display = (m, rows, cols)
        big = max(m.shape) > GRID_MAX
        ch = "channels, clustered order (click a cell for ids)" if order_r is not None and big else "channel"
        axis_label = {"layers": ("layer", "layer"), "channels": (ch, ch),
                      "models": (f"{self.probe.name} layer", f"{self.other.name if self.other else ''} layer")}[self.mode]
        key = (big, m.shape, tuple(rows), tuple(cols))
        if getattr(self, "_fig_key", None) != key:
            self._fig_key = key
            self._build(m, rows, cols, big, axis_label)
        elif big:
            self._mark.color = m.astype(np.float32)
        else:
            self._mark.color = m
        if self.n_images is None:  # a streamed set: the images seen so far can be shown
            self.image_slider.max = max(0, res.images - 1)
        self.figure_widget.title = (f"{res.images} of {self.n_images or 'the'} images" if not res.final else
                                    f"{res.images} images{' · channels clustered' if order_r is not None else ''}")

    def _build(self, m, rows, cols, big, axis_label) -> None:
        if big:  # one canvas + a transparent image on top for clicks
            xs, ys = bq.LinearScale(min=-0.5, max=m.shape[1] - 0.5), bq.LinearScale(min=-0.5, max=m.shape[0] - 0.5, reverse=True)
            mark = bq.HeatMap(color=m.astype(np.float32), x=np.arange(m.shape[1]), y=np.arange(m.shape[0]),
                              scales={"x": xs, "y": ys, "color": self._cs})
            click = bq.Image(image=W.Image(value=_transparent(), format="png"), x=[-0.5, m.shape[1] - 0.5],
                             y=[-0.5, m.shape[0] - 0.5], scales={"x": xs, "y": ys})
            click.on_element_click(self._on_image_click)
            marks = [mark, click]
            clustered = self.order is not None
            ticks = lambda k: [] if clustered else list(range(0, k, max(1, int(np.ceil(k / 8 / 16)) * 16)))  # noqa: E731
            ax = bq.Axis(scale=xs, label=axis_label[1], tick_values=ticks(m.shape[1]), tick_format="d")
            ay = bq.Axis(scale=ys, **VERTICAL, label=axis_label[0], tick_values=ticks(m.shape[0]),
                         tick_format="d", label_offset="45px")
            self.hover.value = "<span style='color:#666'>click a cell to see its value and the two maps</span>"
        else:
            xs, ys = bq.OrdinalScale(), bq.OrdinalScale(reverse=True)  # row 0 at the top, like a matrix
            rl, cl = self._labels(rows, self.probe), self._labels(cols, self.other or self.probe)
            mark = GridHeatMap(color=m, row=rl, column=cl, scales={"row": ys, "column": xs, "color": self._cs},
                                  stroke="white", null_color="#eeeeee",
                                  anchor_style={"stroke": "#ff2d2d", "stroke-width": "3px"},
                                  tooltip=bq.Tooltip(fields=["row", "column", "color"], labels=["row", "column", "CKA"],
                                                     formats=["", "", ".3f"]),
                                  interactions={"hover": "tooltip", "click": "select"})
            mark.on_element_click(self._on_cell_click)
            mark.on_hover(self._on_hover)
            marks = [mark]
            small = max(m.shape) > 24
            style = {"font-size": "9px" if small else "11px"}
            rotate = -90 if max(m.shape) > 8 else -30
            ax = bq.Axis(scale=xs, label=axis_label[1], tick_rotate=rotate, tick_style=style, label_offset="75px")
            ay = bq.Axis(scale=ys, **VERTICAL, label=axis_label[0], tick_style=style, label_offset="85px")
        self._mark = mark
        self.figure_widget.marks = marks
        self.figure_widget.axes = [ax, ay, self._caxis]

    # --- clicks --------------------------------------------------------------------------------
    def _on_hover(self, mark, content) -> None:
        d = content.get("data", {}) if isinstance(content, dict) else {}
        if "color" in d:
            self.hover.value = f"{html.escape(str(d.get('row')))} × {html.escape(str(d.get('column')))}: <b>CKA {float(d['color']):.3f}</b>"

    def _on_cell_click(self, mark, content) -> None:
        d = content.get("data", {}) if isinstance(content, dict) else {}
        r = d.get("row_num", d.get("rowNum"))
        c = d.get("column_num", d.get("columnNum"))
        if r is None or c is None:  # older bqplot: labels only
            m, rows, cols = self._display
            rl, cl = self._labels(rows, self.probe), self._labels(cols, self.other or self.probe)
            r, c = rl.index(d.get("row")), cl.index(d.get("column"))
        self.select_cell(int(r), int(c))

    def _on_image_click(self, mark, content) -> None:
        d = content.get("data", {}) if isinstance(content, dict) else {}
        self.select_cell(int(round(float(d.get("click_y", -1)))), int(round(float(d.get("click_x", -1)))))

    def select_cell(self, row: int, col: int) -> tuple | None:
        """Select the displayed cell (row, col), as a click does; returns the (row name, column name) pair."""
        self.check_weights()
        if self._display is None:
            return None
        m, rows, cols = self._display
        if not (0 <= row < len(rows) and 0 <= col < len(cols)):
            return None
        self._value = float(m[row, col])
        self.selected = (rows[row], cols[col])
        return self.selected

    @T.observe("selected")
    def _selected_changed(self, change) -> None:
        a, b = change["new"] if change["new"] else ("", "")
        if not a:
            return
        if self.mode == "channels":
            self.layer_a = self.layer_b = self.layer
            self.channel = int(a.rsplit(":", 1)[1])
        else:
            self.layer_a, self.layer_b = a, b
        self.hover.value = f"selected {html.escape(self._short(a))} × {html.escape(self._short(b))}: <b>CKA {self._value:.3f}</b>"
        self._show_pair()

    @T.observe("image_index")
    def _image_changed(self, change) -> None:
        self.image_slider.value = int(change["new"])
        if self.selected:
            self._show_pair()

    def _short(self, name: str) -> str:
        return f"channel {name.rsplit(':', 1)[1]}" if self.mode == "channels" else short_name(name)

    def _image(self, i: int):
        return [self._set.image(i)]

    def pair_maps(self):
        """The maps shown for the selected pair: (map A HxW, map B HxW, caption A, caption B)."""
        a, b = self.selected
        img = self._image(self.image_index)
        if self.mode == "channels":
            acts = self.probe.activations(img, self.layer)[0]
            ca, cb = int(a.rsplit(":", 1)[1]), int(b.rsplit(":", 1)[1])
            return (acts[ca].numpy(), acts[cb].numpy(), f"channel {ca}", f"channel {cb}")
        pa, pb = self.probe, (self.other if self.mode == "models" else self.probe)
        ma = pa.activations(img, a)[0]
        mb = pb.activations(img, b)[0]
        mean = lambda t: (t.float().mean(0) if t.ndim == 3 else t.float().reshape(1, -1)).numpy()  # noqa: E731
        return (mean(ma), mean(mb), f"{short_name(a)} · mean of {ma.shape[0]} ch", f"{short_name(b)} · mean of {mb.shape[0]} ch")

    def _show_pair(self) -> None:
        try:
            map_a, map_b, cap_a, cap_b = self.pair_maps()
            img = self.probe.display(self._image(self.image_index))[0]
            set_image(self.input_view, render.upscale(render.image_rgb(img), MAP_PX))
            self.pair_box.layout.visibility = "visible"
            for w, mp in ((self.map_a, map_a), (self.map_b, map_b)):
                set_image(w, render.upscale(render.colorize(render.normalize(mp)), MAP_PX))
            a, b = self.selected
            self.cap_in.value = f"<b>image {self.image_index}</b>"
            self.cap_a.value = f"<b title='{html.escape(a)}'>{html.escape(cap_a)}</b>"
            self.cap_b.value = f"<b title='{html.escape(b)}'>{html.escape(cap_b)}</b>"
            full = lambda n: html.escape(n if self.mode == "channels" else self._full_label(n))  # noqa: E731
            self.pair_title.value = (f"<b>CKA {self._value:.3f}</b> between <code>{html.escape(self._short(a))}</code> and "
                                     f"<code>{html.escape(self._short(b))}</code>")
            self.pair_note.value = (f"<span style='color:#555;font-size:12px'>rows: {full(a)}<br>columns: {full(b)}<br>"
                                    "maps: viridis, each scaled to its own min–max</span>")
        except Exception as e:
            self.message.exception(e)

    def _full_label(self, name: str) -> str:
        for p in (self.probe, self.other):
            if p is not None and name in p.all_layers:
                return p.all_layers[name].label
        return name

    # --- static --------------------------------------------------------------------------------
    def figure(self, **kwargs):
        """Matplotlib figure: the heatmap with its colour bar, and the selected pair's maps if any."""
        import matplotlib.pyplot as plt

        if self._display is None:
            raise RuntimeError("Nothing computed yet: start the panel (or wait for it) before figure()/save().")
        m, rows, cols = self._display
        pair = bool(self.selected)
        fig = plt.figure(figsize=(11 if pair else 7.5, 6.5))
        ax = fig.add_axes([0.12, 0.16, 0.5 if pair else 0.72, 0.74])
        im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, label="CKA")
        clustered = self.order is not None and max(m.shape) > GRID_MAX
        if clustered:  # positions are not channel ids any more
            ax.set_xticks([])
            ax.set_yticks([])
        if max(m.shape) <= GRID_MAX:
            ax.set_xticks(range(len(cols)), self._labels(cols, None), rotation=60, ha="right", fontsize=7)
            ax.set_yticks(range(len(rows)), self._labels(rows, None), fontsize=7)
        name = {"layers": "layer", "channels": "channel", "models": "layer"}[self.mode]
        axis = f"{name} (clustered order)" if clustered else name
        ax.set_xlabel(axis if self.mode != "models" else f"{self.other.name} layer")
        ax.set_ylabel(axis if self.mode != "models" else f"{self.probe.name} layer")
        subject = {"layers": self.probe.name, "channels": f"{self.layer} ({self.probe.name})",
                   "models": f"{self.probe.name} vs {self.other.name if self.other else ''}"}[self.mode]
        n = self.result.images if self.result else self.n_images
        ax.set_title(f"CKA between {name}s of {subject}\n{n} images", fontsize=10)
        if pair:
            map_a, map_b, cap_a, cap_b = self.pair_maps()
            for k, (mp, cap) in enumerate(((map_a, cap_a), (map_b, cap_b))):
                a2 = fig.add_axes([0.72, 0.55 - 0.42 * k, 0.25, 0.35])
                a2.imshow(mp, cmap="viridis")
                a2.set_title(cap, fontsize=8)
                a2.axis("off")
            fig.text(0.72, 0.94, f"CKA {self._value:.3f} · image {self.image_index}", fontsize=10)
        return fig
