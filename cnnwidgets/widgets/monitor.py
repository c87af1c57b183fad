"""Monitor: watch a CNN learn while a plain PyTorch loop trains it in the cell, and compare checkpoints afterwards.

>>> monitor = cw.Monitor(probe, images=x[:64]); monitor        # shows the panels
>>> for step in range(1000):
...     loss = F.cross_entropy(model(xb), yb); opt.zero_grad(); loss.backward(); opt.step()
...     monitor.step(loss=loss)                                  # records; snapshots and redraws now and then
>>> monitor.save_snapshots("run.npz"); cw.Monitor.load("run.npz", probe)

The recording is :mod:`cnnwidgets.analyses.monitor`; this module only draws. Redraws are throttled in time
(``refresh`` seconds), snapshots come every ``every`` steps or, by default, every ``seconds`` seconds (and never
take more than about 5% of the time: the interval stretches when a snapshot is slow).
"""
from __future__ import annotations

import copy
import html
import time

import bqplot as bq
import ipywidgets as W
import numpy as np
import torch
import traitlets as T

from .. import render
from ..analyses import monitor as M
from ._base import VERTICAL, Message, Panel, nice_ticks, set_image

TITLE = {"font-size": "14px"}
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
MAX_LINE_POINTS = 1500
MAX_CKA_COLUMNS = 40
MAX_TILES = 64
#: a snapshot takes at most about this share of the training time (time-based snapshots stretch their interval)
SNAPSHOT_SHARE = 0.05


def _check_every(every, seconds) -> tuple[int | None, float]:
    if every is not None:
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)):
            raise TypeError(f"every is a number of training steps between snapshots (a whole number >= 1), or None for "
                            f"a snapshot every `seconds` seconds; got {every!r}.")
        if every < 1:
            raise ValueError(f"every={every}: every is the number of training steps between snapshots, a whole number "
                             ">= 1 (or None: a snapshot every `seconds` seconds).")
        every = int(every)
    try:
        seconds = float(seconds)
    except (TypeError, ValueError):
        raise TypeError(f"seconds is a number of seconds between snapshots, got {seconds!r}.") from None
    if not seconds > 0 or not np.isfinite(seconds):
        raise ValueError(f"seconds={seconds}: the time between snapshots must be a positive number of seconds.")
    return every, seconds


def _thin(n: int, most: int) -> np.ndarray:
    """At most ``most`` indices of ``range(n)``, evenly spread, the first and the last included."""
    if n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(int))


def _grid(rows: list, cols: list, color: np.ndarray):
    """A GridHeatMap's rows, columns and colours with at least two of each (bqplot squeezes a single row or column
    away, then refuses the array): a blank row or column is added, drawn empty."""
    if len(rows) < 2:
        rows, color = rows + [" "], np.concatenate([color, np.full((1, color.shape[1]), np.nan)])
    if len(cols) < 2:
        cols, color = cols + [" "], np.concatenate([color, np.full((color.shape[0], 1), np.nan)], axis=1)
    return rows, cols, color


def _step_axis(scale, axis, lo: float, hi: float, whole: bool = True) -> None:
    """An axis of training steps from ``lo`` to ``hi`` with round ticks (bqplot's own split the exact range)."""
    if hi <= lo:
        hi = lo + 1
    scale.min, scale.max = lo, hi
    ticks = nice_ticks(lo, hi, 5)
    axis.tick_values = ticks[ticks == np.round(ticks)] if whole else ticks


def _fmt(v: float) -> str:
    return "—" if v is None or not np.isfinite(v) else f"{v:.4g}"


class _Bars:
    """A small bqplot histogram (counts between edges) with a title."""

    def __init__(self, color: str, xlabel: str, width: int = 300, height: int = 170):
        self.x, self.y = bq.LinearScale(), bq.LinearScale(min=0.0)
        self.bars = bq.Bars(x=[0.0], y=[0.0], scales={"x": self.x, "y": self.y}, padding=0.05, colors=[color])
        self.figure = bq.Figure(marks=[self.bars], padding_y=0.0, padding_x=0.02, title="", title_style=TITLE,
                                axes=[bq.Axis(scale=self.x, label=xlabel, tick_format=".2~g", num_ticks=4),
                                      bq.Axis(scale=self.y, **VERTICAL, label="count", tick_format=".2~s", num_ticks=3,
                                              label_offset="35px")],
                                fig_margin=dict(top=30, bottom=40, left=50, right=12),
                                layout=W.Layout(width=f"{width}px", height=f"{height}px"))
        if self.figure.has_trait("display_toolbar"):
            self.figure.display_toolbar = False

    def show(self, counts, edges, title: str) -> None:
        self.figure.title = title
        if counts is None:
            self.figure.layout.visibility = "hidden"
            return
        self.figure.layout.visibility = "visible"
        centers = (np.asarray(edges[:-1]) + np.asarray(edges[1:])) / 2
        with self.figure.hold_sync():
            self.bars.x = centers
            self.bars.y = np.asarray(counts, np.float64)


class Monitor(Panel):
    """Watch a model train: the loss, weight and gradient norms per layer, a layer's feature maps and histograms,
    and how far each layer has moved from the start (CKA), updated while the loop runs.

    ``probe``: a :class:`~cnnwidgets.Probe` of the model being trained. ``image``: the probe image whose feature
    maps are shown; ``images``: a few probe images (say 32-64) for dead units and CKA (4 at least). ``every``:
    training steps between snapshots, or None (default) for a snapshot every ``seconds`` seconds. ``layers``: the
    layers watched (default every conv layer); ``layer``: the one whose maps are shown first. ``memory``: bytes kept
    for maps and histograms. ``refresh``: seconds between redraws.

    Call :meth:`step` once per training step, after ``loss.backward()`` (the gradient statistics read ``.grad``),
    or use it as a context manager. :meth:`save_snapshots` writes the run; :meth:`load` and
    :meth:`from_checkpoints` show saved runs and checkpoints in the same panels.
    """

    layer = T.Unicode().tag(sync=False)

    def __init__(self, probe=None, image=None, images=None, every: int | None = None, *, seconds: float = 1.0,
                 layers=None, layer=None, cka: bool = True, memory: int = 256 * 2**20, refresh: float = 0.5,
                 max_snapshots: int = 1000, max_points: int = 100_000, _history: M.History | None = None):
        self._every, self._seconds = _check_every(every, seconds)
        self.refresh = float(refresh)
        self.probe = probe
        if _history is None:
            if probe is None:
                raise TypeError("Monitor needs the Probe of the model you train: cw.Monitor(cw.Probe(model, ...), image).")
            self.recorder = M.Recorder(probe, image, images, layers=layers, cka=cka, memory=memory,
                                       max_snapshots=max_snapshots, max_points=max_points)
            self.history = self.recorder.history
        else:
            self.recorder = None
            self.history = _history
        h = self.history
        self._count = 0
        self._loss_steps_pending: list = []
        self._loss_values_pending: list = []
        self._last_snap_step = 0
        self._last_snap_time = time.perf_counter()
        self._last_draw = 0.0
        self._shown = False
        self._drawn = None  # (snapshots, last step) the snapshot views were drawn from
        self.draws = 0

        self.message = Message()
        self.header = W.HTML()
        # loss
        self._lx, self._ly = bq.LinearScale(min=0.0, max=1.0), bq.LinearScale(min=0.0, max=1.0)  # set: no loss yet
        self.loss_line = bq.Lines(x=[], y=[], scales={"x": self._lx, "y": self._ly}, colors=["#1f77b4"],
                                  stroke_width=1.5)
        self.bad_marks = bq.Scatter(x=[], y=[], scales={"x": self._lx, "y": self._ly}, colors=["#d62728"],
                                    marker="triangle-down", default_size=48)
        self._lx_axis = bq.Axis(scale=self._lx, label="training step", tick_format="~s")
        self._ly_axis = bq.Axis(scale=self._ly, **VERTICAL, tick_format=".3~g")
        self.loss_figure = bq.Figure(marks=[self.loss_line, self.bad_marks], title="loss", title_style=TITLE,
                                     axes=[self._lx_axis, self._ly_axis],
                                     fig_margin=dict(top=30, bottom=40, left=55, right=15),
                                     layout=W.Layout(width="420px", height="260px"))
        # weight / gradient norms
        self._nx, self._ny = bq.LinearScale(min=0.0, max=1.0), bq.LogScale()
        self._nx_axis = bq.Axis(scale=self._nx, label="training step", tick_format="~s")
        self.norm_lines = bq.Lines(x=[0, 1], y=[1.0, 1.0], visible=False, scales={"x": self._nx, "y": self._ny}, colors=COLORS,
                                   labels=["-"])  # no markers: bqplot logs errors for markers at NaN
        self.norm_legend = W.HTML()  # beside the chart, not on it: it never hides a line
        self.norm_figure = bq.Figure(marks=[self.norm_lines], title="norm of each layer's weights", title_style=TITLE,
                                     axes=[self._nx_axis,
                                           bq.Axis(scale=self._ny, **VERTICAL, tick_format=".2~g")],
                                     fig_margin=dict(top=30, bottom=40, left=55, right=15),
                                     layout=W.Layout(width="420px", height="260px"))
        self.norm_kind = W.ToggleButtons(options=[("weights", "weight norm"), ("gradients", "grad norm")],
                                         value="weight norm", description="norm of",
                                         style={"button_width": "90px", "description_width": "50px"})
        names = h.param_names
        default = [n for n, s in h.params if n.endswith("weight") and len(s) >= 2][:6] or names[:4]
        self.norm_select = W.SelectMultiple(options=names, value=tuple(default), rows=min(6, max(2, len(names))),
                                            description="layers", layout=W.Layout(width="410px"),
                                            style={"description_width": "50px"})
        for fig in (self.loss_figure, self.norm_figure):
            if fig.has_trait("display_toolbar"):
                fig.display_toolbar = False
        # the chosen snapshot and layer
        self.slider = W.IntSlider(min=0, max=0, value=0, description="snapshot", continuous_update=True,
                                  readout=False, layout=W.Layout(width="420px"), style={"description_width": "60px"})
        self.slider_label = W.HTML()
        self._follow = True
        fl = h.frame_layers
        labels = dict(zip(h.layers, h.labels))
        self.layer_select = W.Dropdown(options=[(labels.get(n, n), n) for n in fl], description="layer",
                                       layout=W.Layout(width="420px"), style={"description_width": "60px"})
        self.maps = W.Image(format="png", layout=W.Layout(max_width="420px", object_fit="contain"))
        self.maps_caption = W.HTML()
        self.act_hist = _Bars("#2a9d8f", "activation")
        self.weight_hist = _Bars("#3b6ea8", "weight")
        # CKA to the reference
        self._cs = bq.ColorScale(min=0.0, max=1.0, scheme="viridis")
        self._cr, self._cc = bq.OrdinalScale(reverse=True), bq.OrdinalScale()
        rows, cols, color = _grid(list(h.layers), ["0"], np.full((len(h.layers), 1), np.nan))
        self.cka_mark = bq.GridHeatMap(color=color, row=rows, column=cols,
                                       scales={"row": self._cr, "column": self._cc, "color": self._cs},
                                       stroke="white", null_color="#eeeeee",
                                       tooltip=bq.Tooltip(fields=["row", "column", "color"], labels=["layer", "step", "CKA"],
                                                          formats=["", "", ".3f"]),
                                       interactions={"hover": "tooltip"})
        first = "the first checkpoint" if any(h.names) else "step 0"
        self.cka_figure = bq.Figure(
            marks=[self.cka_mark], title=f"how much each layer still resembles {first} (CKA: 1 = unchanged)",
            title_style=TITLE,
            axes=[bq.Axis(scale=self._cc, label="training step", tick_rotate=-45, tick_style={"font-size": "9px"}),
                  bq.Axis(scale=self._cr, **VERTICAL, tick_style={"font-size": "10px"})],
            fig_margin=dict(top=30, bottom=55, left=110, right=20),
            layout=W.Layout(width="850px", height=f"{min(440, 110 + 22 * len(h.layers))}px"))
        self.cka_scale = W.HTML()  # the colour scale, in words (bqplot's colour axis is unreadable in a short chart)
        if self.cka_figure.has_trait("display_toolbar"):
            self.cka_figure.display_toolbar = False
        cka_on = self.recorder.cka_on if self.recorder is not None else bool(np.isfinite(h.cka_matrix()).any())
        why = ("The CKA map is off (cka=False)." if not cka and _history is None else
               "The CKA map needs 4 probe images or more: Monitor(probe, images=x[:64]).")
        self.cka_note = W.HTML("" if cka_on else f"<span style='color:#666'>{why}</span>")
        if not cka_on:
            self.cka_figure.layout.display = "none"

        top = W.HBox([W.VBox([self.loss_figure]), W.VBox([self.norm_figure, self.norm_legend, self.norm_kind,
                                                          self.norm_select])])
        middle = W.HBox([W.VBox([self.layer_select, self.maps, self.maps_caption], layout=W.Layout(width="430px")),
                         W.VBox([self.act_hist.figure, self.weight_hist.figure])])
        super().__init__([self.header, self.message, top, W.HBox([self.slider, self.slider_label]), middle,
                          self.cka_figure, self.cka_scale, self.cka_note])
        self.layer = layer_name = (probe.layer(layer).name if layer is not None and probe is not None else
                                   (layer if layer is not None else (fl[0] if fl else "")))
        if layer_name and layer_name not in fl:
            raise ValueError(f"layer={layer!r} is not one of the layers watched: {', '.join(fl)}.")
        self.layer_select.value = layer_name or None
        self.layer_select.observe(lambda c: setattr(self, "layer", c["new"]), "value")
        self.observe(self._on_layer, "layer")
        self.slider.observe(self._scrubbed, "value")
        self.norm_kind.observe(lambda c: self._draw_norms(), "value")
        self.norm_select.observe(lambda c: self._draw_norms(), "value")
        self.draw()

    # --- the training loop's side ------------------------------------------------------------------
    def step(self, loss=None, step: int | None = None) -> None:
        """Record one training step: its ``loss`` (a number or a one-element tensor; NaN/inf are recorded, marked
        and the run goes on), and ``step`` (default: one more than the last). Takes a snapshot and redraws when due."""
        if self.recorder is None:
            raise RuntimeError("This Monitor shows saved snapshots and records nothing; to watch a training run, make "
                               "one with cw.Monitor(probe, image).")
        if step is None:
            self._count += 1
        else:
            self._count = M._whole(step, "step")
        s = self._count
        value = M.loss_value(loss)
        if value is not None:
            self._loss_steps_pending.append(s)
            self._loss_values_pending.append(value)
            if len(self._loss_steps_pending) >= 256:
                self._flush()
        now = time.perf_counter()
        if self._every is not None:
            due = s - self._last_snap_step >= self._every
        else:
            gap = max(self._seconds, self.recorder.last_seconds / SNAPSHOT_SHARE)
            due = now - self._last_snap_time >= gap
        if due:
            self.snapshot(s)
        if now - self._last_draw >= self.refresh:
            self.draw()

    def snapshot(self, step: int | None = None) -> None:
        """Take a snapshot now (at ``step``, default the last step recorded)."""
        if self.recorder is None:
            raise RuntimeError("This Monitor shows saved snapshots and records nothing.")
        s = self._count if step is None else M._whole(step, "step")
        self._flush()
        if self.recorder.snapshot(s):  # older snapshots were thinned: keep them evenly spaced
            if self._every is not None:
                self._every *= 2
            else:
                self._seconds *= 2
        self._last_snap_step = s
        self._last_snap_time = time.perf_counter()

    def finish(self) -> None:
        """End of the run: a last snapshot at the last step (if it has none) and a final redraw."""
        if self.recorder is not None and self._count and (not self.history.steps or self.history.steps[-1] != self._count):
            self.snapshot(self._count)
        self._flush()
        self.draw()

    def _flush(self) -> None:
        if not self._loss_steps_pending:
            return
        vals = self._loss_values_pending
        tensors = [v for v in vals if isinstance(v, torch.Tensor)]
        if tensors:
            dev = tensors[0].device
            got = iter(torch.stack([t.to(dev, torch.float64) for t in tensors]).cpu().tolist())
            vals = [next(got) if isinstance(v, torch.Tensor) else v for v in vals]
        before = self.history.bad_count
        self.history.add_losses(self._loss_steps_pending, vals)
        self._loss_steps_pending, self._loss_values_pending = [], []
        if self.history.bad_count != before:
            self._last_draw = 0.0  # show a NaN at once

    def __enter__(self) -> "Monitor":
        if not self._shown:
            try:
                from IPython import get_ipython

                if get_ipython() is not None and getattr(get_ipython(), "kernel", None) is not None:
                    from IPython.display import display

                    display(self)
            except ImportError:
                pass
        return self

    def __exit__(self, *exc) -> None:
        self.finish()

    def _ipython_display_(self, **kwargs):
        self._shown = True
        super()._ipython_display_(**kwargs)

    # --- drawing --------------------------------------------------------------------------------------
    def draw(self) -> None:
        """Redraw everything from the history (:meth:`step` does it at most every ``refresh`` seconds)."""
        self._last_draw = time.perf_counter()
        self.draws += 1
        h = self.history
        n = len(h)
        follow = self._follow or self.slider.value >= self.slider.max
        with self.slider.hold_trait_notifications():
            self.slider.max = max(0, n - 1)
            if follow:
                self.slider.value = self.slider.max
        self._draw_header()
        self._draw_loss()
        key = (n, h.steps[-1] if n else None)
        if key != self._drawn:  # the rest changes only with a new snapshot
            self._drawn = key
            self._draw_norms()
            self._draw_frame()
            self._draw_cka()

    def _draw_header(self) -> None:
        h = self.history
        s, v = h.losses()
        if not len(v) and any(h.names):  # checkpoints: no loss, one snapshot per file
            self.header.value = (f"<b>Checkpoints</b> · {html.escape(h.model)} · {len(h)} file{'s' if len(h) != 1 else ''}: "
                                 f"{html.escape(', '.join(h.names))}")
            self.loss_figure.layout.display = "none"
            self._nx_axis.label = "checkpoint (in the order given)"
            self.cka_figure.axes[0].label = "checkpoint"
            return
        finite = v[np.isfinite(v)] if len(v) else v
        last = f"loss {v[-1]:.4g}" if len(v) else "no loss yet"  # nan / inf written as such
        where = "" if self.recorder is None else f" · last snapshot took {1000 * self.recorder.last_seconds:.0f} ms"
        step = h.steps[-1] if h.steps else 0
        step = max(step, int(s[-1]) if len(s) else 0)
        self.header.value = (f"<b>Training monitor</b> · {html.escape(h.model)} · step {step} · {last}"
                             f"{' (lowest ' + _fmt(finite.min()) + ')' if len(finite) else ''} · "
                             f"{len(h)} snapshot{'s' if len(h) != 1 else ''}{where}")
        if h.bad_count:
            bs, _ = h.bad_losses()
            self.message.warn(f"⚠ the loss was NaN or infinite at {h.bad_count} step{'s' if h.bad_count > 1 else ''} "
                              f"(first at step {int(bs[0])}): red marks on the loss curve. The run went on; the weights "
                              "may be NaN from there (lower the learning rate?).")

    def _draw_loss(self) -> None:
        s, v = self.history.losses()
        if not len(s):
            return
        keep = _thin(len(s), MAX_LINE_POINTS)
        y = np.where(np.isfinite(v), v, np.nan)
        finite = y[np.isfinite(y)]
        if not len(finite):  # bqplot's front end cannot draw a line of NaN only: the red marks show them
            keep = keep[:0]
        bs, _ = self.history.bad_losses()
        with self.loss_figure.hold_sync():
            _step_axis(self._lx, self._lx_axis, float(s[0]), float(s[-1]))
            if len(finite):
                lo, hi = float(finite.min()), float(finite.max())
                pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 1.0
                self._ly.min, self._ly.max = (max(0.0, lo - pad) if lo >= 0 else lo - pad), hi + pad
                self._ly_axis.tick_values = nice_ticks(self._ly.min, self._ly.max, 5)
            self.loss_line.x = s[keep].astype(np.float64)
            self.loss_line.y = y[keep]
            top = self._ly.max if self._ly.max is not None else 1.0
            self.bad_marks.x = bs[-200:].astype(np.float64)
            self.bad_marks.y = np.full(len(bs[-200:]), top)

    def _draw_norms(self) -> None:
        h = self.history
        if not len(h):
            return
        kind = self.norm_kind.value
        sel = [n for n in self.norm_select.value]
        idx = [h.param_names.index(n) for n in sel]
        ser = h.series(kind)[:, idx].T if idx else np.full((1, len(h)), np.nan)
        ser = np.where(np.isfinite(ser) & (ser > 0), ser, np.nan)
        what = "weights" if kind == "weight norm" else "gradients"
        if not np.isfinite(ser).any():  # nothing to draw yet (no gradient before training): bqplot fails on NaN only
            self.norm_lines.visible = False
            self.norm_figure.title = f"norm of each layer's {what}: none yet" + (
                " (call monitor.step after loss.backward())" if kind == "grad norm" and len(h) > 1 else "")
            return
        self.norm_lines.visible = True
        x = np.asarray(h.steps, np.float64)
        if len(x) < 2:  # bqplot squeezes a 1 x 1 array to a scalar, which it then refuses: the point twice
            x = np.append(x, x[-1])
            ser = np.concatenate([ser, ser[:, -1:]], axis=1)
        finite = ser[np.isfinite(ser)]
        lo, hi = float(finite.min()), float(finite.max())
        self.norm_legend.value = "<div style='font-size:12px;line-height:1.5;max-width:410px'>" + " ".join(
            f"<span style='white-space:nowrap;margin-right:10px'><span style='color:{COLORS[k % len(COLORS)]}'>━━</span> "
            f"{html.escape(n)}</span>" for k, n in enumerate(sel)) + "</div>"
        with self.norm_figure.hold_sync():
            _step_axis(self._nx, self._nx_axis, float(x[0]), float(x[-1]), whole=True)
            self._ny.min, self._ny.max = lo / 1.15, hi * 1.15  # set, not left to the front end (bqplot 0.12 logs errors)
            self.norm_lines.labels = sel or ["-"]
            self.norm_lines.x = x
            self.norm_lines.y = ser
            self.norm_figure.title = f"norm of each layer's {what}"

    def _scrubbed(self, change) -> None:
        self._follow = change["new"] >= self.slider.max
        self._draw_frame()

    def _on_layer(self, change) -> None:
        if change["new"] in [o[1] for o in self.layer_select.options] and self.layer_select.value != change["new"]:
            self.layer_select.value = change["new"]
        self._draw_frame()

    def _draw_frame(self) -> None:
        h = self.history
        n = len(h)
        if not n or not self.layer:
            return
        i = min(self.slider.value, n - 1)
        src, f = h.frame(i, self.layer)
        if h.names[i]:
            self.slider_label.value = (f"<span style='line-height:2'>checkpoint {i + 1} of {n}: "
                                       f"<b>{html.escape(h.names[i])}</b></span>")
        else:
            self.slider_label.value = (f"<span style='line-height:2'>step <b>{h.steps[i]}</b> · snapshot {i + 1} of {n}"
                                       f"{' (latest)' if i == n - 1 else ''}</span>")
        if f is None:
            self.maps_caption.value = "<span style='color:#666'>no maps kept for this layer</span>"
            return
        maps = f.maps.astype(np.float32)
        if maps.ndim == 1:
            maps = maps[:, None, None]
        c = maps.shape[0]
        shown = maps[:MAX_TILES]
        tiles = render.colorize(render.normalize(shown, "channel"))
        mosaic = render.mosaic(tiles, pad=1)
        set_image(self.maps, render.upscale(mosaic, 240), "png")
        note = f"first {MAX_TILES} of {c} channels" if c > MAX_TILES else f"{c} channels"
        other = f" · from the nearest snapshot kept ({when})" if src != i else ""
        li = h.layers.index(self.layer) if self.layer in h.layers else None
        dead = (f" · {100 * h.dead[i][li]:.0f}% dead units over the probe images"
                if li is not None and np.isfinite(h.dead[i][li]) else "")
        when = h.names[src] or f"step {h.steps[src]}"
        self.maps_caption.value = (f"<span style='font-size:12px'>feature maps of the probe image at {when}"
                                   f" ({note}, each scaled to its own range){dead}{other}</span>")
        self.act_hist.show(f.act_counts, f.act_edges, f"activations of {self.layer} ({when})")
        self.weight_hist.show(f.w_counts, f.w_edges, f"weights of {self.layer} ({when})")

    def _draw_cka(self) -> None:
        h = self.history
        if self.cka_figure.layout.display == "none" or not len(h):
            return
        m = h.cka_matrix()
        cols = _thin(m.shape[1], MAX_CKA_COLUMNS)
        steps = [str(h.steps[j]) if not h.names[j] else h.names[j] for j in cols]
        rows, steps, color = _grid(list(h.layers), steps, m[:, cols])
        low = np.nanmin(color) if np.isfinite(color).any() else 0.0
        self._cs.min = lo = float(min(0.9, np.floor(low * 10) / 10))  # small moves stay visible; the scale says the range
        self.cka_scale.value = (
            "<div style='font-size:12px;margin-left:110px;display:flex;align-items:center;gap:6px'>"
            f"<span>{lo:.1f} or less: changed most</span><span style='display:inline-block;width:160px;height:10px;"
            "background:linear-gradient(to right,#440154,#3b528b,#21918c,#5ec962,#fde725)'></span>"
            "<span>1.0: as at the start</span></div>")
        with self.cka_mark.hold_sync(), self.cka_mark.hold_trait_notifications():  # validated together
            self.cka_mark.row = rows
            self.cka_mark.column = steps
            self.cka_mark.color = color

    # --- files ------------------------------------------------------------------------------------------
    def save_snapshots(self, path) -> str:
        """Write the run (losses, statistics, maps and histograms) to one ``.npz`` file (no pickle); returns its path."""
        self._flush()
        return self.history.save(path)

    @classmethod
    def load(cls, path, probe=None, **kwargs) -> "Monitor":
        """The panels of a run saved with :meth:`save_snapshots`. With ``probe``, the file must be of its model."""
        params = None if probe is None else [(n, tuple(p.shape)) for n, p in probe.model.named_parameters()]
        return cls(probe, _history=M.History.load(path, params), **kwargs)

    @classmethod
    def from_checkpoints(cls, model, paths, images=None, image=None, **kwargs) -> "Monitor":
        """The panels of a list of saved state dicts (``torch.save(model.state_dict(), path)``; loaded weights-only
        into a copy of ``model``, which stays as it is): one snapshot per file, CKA against the first.

        ``model``: the module (or a Probe of it: its preprocessing is used). Other keyword arguments go to the
        Probe (``input_size=``, ``mean=``, ``std=``) and to the recording (``layers=``)."""
        from ..probe import Probe

        rec_keys = ("layers", "cka", "memory", "bins")
        rec = {k: kwargs.pop(k) for k in rec_keys if k in kwargs}
        if isinstance(model, Probe):
            probe = Probe(copy.deepcopy(model.model), device=model.device, transform=model.transform,
                          classes=model.classes)
        else:
            probe = Probe(copy.deepcopy(model), **kwargs)
        history = M.from_checkpoints(probe, paths, image=image, images=images, **rec)
        return cls(probe, _history=history)

    # --- Lightning ----------------------------------------------------------------------------------------
    def lightning_callback(self):
        """A PyTorch Lightning ``Callback`` that calls :meth:`step` after every training batch and :meth:`finish` at
        the end (``Trainer(callbacks=[monitor.lightning_callback()])``). Lightning is imported here only."""
        return lightning_callback(self)

    # --- static -------------------------------------------------------------------------------------------
    def figure(self, **kwargs):
        """A matplotlib figure: the loss, the norms of the selected layers' weights, and the maps at the chosen snapshot."""
        import matplotlib.pyplot as plt

        h = self.history
        fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
        s, v = h.losses()
        ax[0].plot(s, np.where(np.isfinite(v), v, np.nan))
        bs, _ = h.bad_losses()
        if len(bs):
            ax[0].plot(bs, np.full(len(bs), np.nanmax(np.where(np.isfinite(v), v, np.nan))), "v", color="#d62728",
                       label="NaN/inf loss")
            ax[0].legend()
        ax[0].set(title="loss", xlabel="training step")
        ser = h.series(self.norm_kind.value)
        for n in self.norm_select.value:
            ax[1].plot(h.steps, ser[:, h.param_names.index(n)], marker="o", ms=3, label=n)
        ax[1].set(title=f"{self.norm_kind.value}", xlabel="training step", yscale="log")
        ax[1].legend(fontsize=7)
        ax[2].axis("off")
        if self.maps.value:
            ax[2].imshow(render.decode(self.maps.value))
            ax[2].set_title(f"{self.layer} at step {h.steps[min(self.slider.value, len(h) - 1)]}")
        fig.tight_layout()
        return fig


def lightning_callback(monitor: Monitor):
    """See :meth:`Monitor.lightning_callback`. Subclasses Lightning's ``Callback`` when Lightning is installed (it
    checks the type); the hooks are plain methods, so a trainer that calls them by name works either way."""
    base = object
    for mod in ("lightning.pytorch", "pytorch_lightning"):
        try:
            base = __import__(mod, fromlist=["Callback"]).Callback
            break
        except ImportError:
            continue

    class MonitorCallback(base):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *args):
            loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
            monitor.step(loss=loss, step=int(getattr(trainer, "global_step", monitor._count + 1)))

        def on_train_end(self, trainer, pl_module):
            monitor.finish()

    return MonitorCallback()
