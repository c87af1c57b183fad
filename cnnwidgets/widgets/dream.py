"""Dream: a live canvas for activation maximisation and DeepDream (the engine is cnnwidgets.analyses.dream)."""
from __future__ import annotations

import html
import threading

import bqplot as bq
import ipywidgets as W
import numpy as np
import traitlets as T

from .. import render
from ..analyses import dream as D
from ._base import IPYW8, LayerSlider, Message, Panel, RunControls, nice_ticks, set_image
from ._controls import ImageInput

SINGLE, ATLAS, DEEPDREAM, COMPARE = "single", "atlas", "deepdream", "compare"
NAIVE, REGULARIZED = "naive", "regularized"
CANVAS_PX = 384  # the canvas is drawn this wide in the notebook
GALLERY_MAX = 12
LEARNING_RATES = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def _rgb(image) -> np.ndarray:
    """``N x C x H x W`` in [0, 1] (CPU tensor) -> ``N x H x W x 3`` uint8."""
    a = image.clamp(0, 1).numpy()
    if a.shape[1] == 1:
        a = np.repeat(a, 3, axis=1)
    return (a.transpose(0, 2, 3, 1) * 255).round().astype(np.uint8)


class _Relay(Message):
    """The message line RunControls writes to: errors go to the panel's line, the end-of-run line to
    ``panel._finished`` (so a NaN warning is not overwritten by "done")."""

    def __init__(self, panel):
        super().__init__()
        self._panel = panel

    def info(self, text):
        self._panel._finished(text)

    def error(self, text):
        self._panel.message.error(text)

    def warn(self, text):
        self._panel.message.warn(text)

    def clear(self):
        self._panel.message.clear()


def _label(text: str, width: str = "auto") -> W.HTML:
    return W.HTML(f"<b style='color:#333'>{html.escape(text)}</b>", layout=W.Layout(width=width))


class Dream(Panel):
    """Watch an image form that makes a layer, channel or neuron of ``probe``'s model fire.

    >>> d = cw.Dream(probe, layer="_blocks.8._project_conv", channel=5); d     # press Start
    >>> d.preset = "naive"          # seed 001's plain gradient ascent, to compare with "regularized"
    >>> d.mode = "atlas"            # 16 channels of the layer, optimised together in one batch
    >>> d.save("dream.png")         # the current image (or atlas), the loss curve and the gallery

    Traits for linking: ``layer`` and ``channel``; also ``mode`` (single / atlas / deepdream / compare),
    ``preset`` (naive / regularized) and ``objective`` (channel / neuron / layer). ``compare``: more
    probes to dream side by side with the same objective (the layer at the same relative depth).
    ``run_mode``: ``"auto"`` (a background thread, or the foreground on Colab), ``"thread"``, ``"foreground"``.
    """

    layer = T.Unicode().tag(sync=False)
    channel = T.Int(0).tag(sync=False)
    mode = T.Unicode(SINGLE).tag(sync=False)
    preset = T.Unicode(REGULARIZED).tag(sync=False)
    objective = T.Unicode("channel").tag(sync=False)

    def __init__(self, probe, layer=None, channel=None, *, compare=(), photo=None, steps: int | None = None,
                 size: int | None = None, run_mode: str = "auto", fps: float = 15.0):
        self.probe = probe
        self.others = list(compare)
        self.message = Message()
        self.history: list[list[float]] = []  # objective per step, one list per series
        self.gallery: list[tuple[np.ndarray, str]] = []
        self.current: np.ndarray | None = None  # what the canvas shows, H x W x 3
        self.result = None  # the last DreamStep
        self._lock = threading.Lock()
        self._caption = ""
        self._run_mode = SINGLE
        gpu = probe.device.type != "cpu"
        default_size = min(probe.transform.input_size) if gpu else 128

        # --- objective -----------------------------------------------------------------------------
        names = probe.layers.names
        start = probe.layer(layer).name if layer is not None else names[len(names) // 2]
        self.layer_control = LayerSlider(probe, value=start, on_move=lambda name: setattr(self, "layer", name))
        self.layer_slider = self.layer_control.slider
        self.objective_buttons = W.ToggleButtons(options=[("channel", "channel"), ("neuron", "neuron"), ("whole layer", "layer")],
                                                 value="channel", tooltips=["mean of one channel's map", "one unit at (x, y)",
                                                 "mean of the whole layer (DeepDream)"], style={"button_width": "96px"})
        self.channel_slider = W.IntSlider(0, 0, 1, description="channel", continuous_update=False, layout=W.Layout(width="360px"))
        self.x_slider = W.IntSlider(0, 0, 1, description="x", continuous_update=False, layout=W.Layout(width="250px"))
        self.y_slider = W.IntSlider(0, 0, 1, description="y", continuous_update=False, layout=W.Layout(width="250px"))

        # --- settings ------------------------------------------------------------------------------
        self.mode_buttons = W.ToggleButtons(
            options=[("one image", SINGLE), ("atlas", ATLAS), ("DeepDream", DEEPDREAM)] + ([("compare networks", COMPARE)] if self.others else []),
            value=SINGLE, style={"button_width": "130px"})
        self.preset_buttons = W.ToggleButtons(
            options=[("naive (seed 001)", NAIVE), ("regularized (Lucent)", REGULARIZED)], value=REGULARIZED,
            tooltips=["plain pixels, Adam lr 0.1, min-max rescale: high-frequency noise",
                      "FFT + decorrelated colour + pad/jitter/scale/rotate: recognisable patterns"],
            style={"button_width": "160px"})
        style = {"description_width": "70px"}
        self.steps_slider = W.IntSlider(steps or 256, 10, 2000, step=10, description="steps", style=style, layout=W.Layout(width="300px"))
        self.lr_slider = W.SelectionSlider(options=LEARNING_RATES, value=0.05, description="learning rate",
                                           style={"description_width": "90px"}, layout=W.Layout(width="320px"))
        self.size_slider = W.IntSlider(size or default_size, 32, 512, step=16, description="image size", style=style,
                                       layout=W.Layout(width="300px"))
        self.atlas_slider = W.IntSlider(16, 2, 64, description="channels", style=style, layout=W.Layout(width="300px"),
                                        tooltip="atlas: this many channels, from the chosen one on")
        self.octaves_slider = W.IntSlider(4, 1, 6, description="octaves", style=style, layout=W.Layout(width="300px"))
        self.seed_box = W.BoundedIntText(0, 0, 2**31 - 1, description="seed", style={"description_width": "40px"},
                                         layout=W.Layout(width="140px"))
        self.photo = ImageInput(probe, photo, self.message)

        # --- canvas, picker, loss curve, gallery ---------------------------------------------------
        self.canvas = W.Image(format="png", layout=W.Layout(width=f"{CANVAS_PX}px", min_height="64px"))
        self.canvas.add_class("cnnwidgets-dream-canvas")
        self.caption = W.HTML()
        xs, ys = bq.LinearScale(), bq.LinearScale()
        self.loss_lines = bq.Lines(x=np.zeros(0), y=np.zeros(0), scales={"x": xs, "y": ys}, colors=COLORS, stroke_width=2,
                                   display_legend=False)
        self.loss_figure = bq.Figure(marks=[self.loss_lines], axes=[bq.Axis(scale=xs, label="step", tick_format="d"),
                                     bq.Axis(scale=ys, orientation="vertical", label="objective (↑)", tick_format=".3~g")],
                                     title="objective per step", layout=W.Layout(width="340px", height="240px"),
                                     fig_margin={"top": 40, "bottom": 40, "left": 60, "right": 10})
        self._build_picker()
        self.gallery_box = W.HBox(layout=W.Layout(flex_flow="row wrap", overflow="auto"))
        self.keep_button = W.Button(description="Keep", icon="thumb-tack", tooltip="put the current image in the gallery",
                                    layout=W.Layout(width="90px"))
        self.clear_button = W.Button(description="Clear gallery", icon="trash", layout=W.Layout(width="120px"))
        self.keep_button.on_click(lambda _: self.keep())
        self.clear_button.on_click(lambda _: self.clear_gallery())

        self.controls = RunControls(self._make_job, self._on_frame, total=self._total, fps=fps, message=_Relay(self),
                                    mode=run_mode, on_start=self._on_start, panel=self)

        # --- layout --------------------------------------------------------------------------------
        self.objective_row = W.HBox([self.objective_buttons, self.channel_slider])
        self.neuron_row = W.HBox([self.x_slider, self.y_slider, W.HTML("<i>or click the map on the right</i>")])
        self.settings_row = W.HBox([self.steps_slider, self.lr_slider, self.size_slider, self.seed_box],
                                   layout=W.Layout(flex_flow="row wrap"))
        self.mode_row = W.HBox([self.atlas_slider, self.octaves_slider, self.photo], layout=W.Layout(flex_flow="row wrap"))
        self.preset_row = W.HBox([_label("Recipe", "70px"), self.preset_buttons])
        view = W.HBox([W.VBox([self.canvas, self.caption]), W.VBox([self.loss_figure, self.picker])])
        gallery = W.VBox([W.HBox([_label("Gallery", "70px"), self.keep_button, self.clear_button]), self.gallery_box])
        super().__init__([
            W.HBox([_label("Mode", "70px"), self.mode_buttons]),
            self.preset_row,
            self.layer_slider, self.layer_control.caption, self.objective_row, self.neuron_row, self.settings_row, self.mode_row,
            self.controls, self.message, view, gallery,
        ])
        self.add_class("cnnwidgets-dream")

        # --- wiring --------------------------------------------------------------------------------
        T.link((self.mode_buttons, "value"), (self, "mode"))
        T.link((self.preset_buttons, "value"), (self, "preset"))
        T.link((self.objective_buttons, "value"), (self, "objective"))
        self.layer = start
        self._on_layer()
        T.link((self.channel_slider, "value"), (self, "channel"))
        if channel is not None:
            n = self.channel_slider.max + 1
            if not 0 <= int(channel) < n:
                self.message.error(f"Channel {channel} is out of range: layer {start!r} has {n} channels (0..{n - 1}).")
            self.channel = min(max(int(channel), 0), n - 1)
        self.observe(self._on_layer_trait, "layer")
        self.observe(lambda ch: self._on_mode(), ["mode", "objective"])
        self.observe(lambda ch: self._on_preset(), "preset")
        self.size_slider.observe(lambda ch: self._update_map_size(), "value")
        for s in (self.x_slider, self.y_slider):
            s.observe(lambda ch: self._draw_marker(), "value")
        self._on_preset()
        self._on_mode()
        self._show_blank()

    # --- building ------------------------------------------------------------------------------------
    def _build_picker(self):
        """A small bqplot figure of the last image with the layer's map grid: a click picks the neuron."""
        self._px, self._py = bq.LinearScale(min=0, max=1), bq.LinearScale(min=0, max=1)
        self._pick_image = bq.Image(image=W.Image(value=render.encode(np.full((8, 8, 3), 230, np.uint8), "png"), format="png"),
                                    scales={"x": self._px, "y": self._py}, x=[0, 1], y=[0, 1])
        self._marker = bq.Scatter(x=[0.5], y=[0.5], scales={"x": self._px, "y": self._py}, marker="square",
                                  colors=["#ff1744"], stroke="white", default_size=64)
        self._pick_image.on_element_click(self._on_pick)
        self.picker = bq.Figure(marks=[self._pick_image, self._marker], title="click: neuron position",
                                layout=W.Layout(width="240px", height="240px"), padding_x=0, padding_y=0,
                                fig_margin={"top": 30, "bottom": 10, "left": 10, "right": 10})

    # --- reactions -----------------------------------------------------------------------------------
    @T.validate("layer")
    def _valid_layer(self, proposal):
        """An unknown layer name keeps the current layer and says so in the message line."""
        try:
            return self.probe.layer(proposal["value"]).name
        except (KeyError, IndexError, TypeError) as e:
            self.message.exception(e)
            return self.layer

    def _on_layer_trait(self, change):
        self.layer_control.show(change["new"])
        self._on_layer()

    def _on_layer(self):
        info = self.probe.layer(self.layer)
        n = info.channels or 1
        self.channel_slider.max = max(0, n - 1)
        if self.channel > n - 1:
            self.channel = n - 1
        self.channel_slider.description = "channel" if info.spatial else "unit"
        self._update_map_size()

    def _map_hw(self):
        """The layer's map size at the chosen image size (one truncated forward), or None for units."""
        s = self.size_slider.value
        try:
            shapes = D.check(self.probe, D.layer(self.layer), (s, s), self.probe.transform.channels)
        except Exception as e:
            self.message.exception(e)
            return None
        shape = next(iter(shapes.values()))
        return (shape[1], shape[2]) if len(shape) == 3 else None

    def _update_map_size(self):
        if self.objective != "neuron":
            return
        hw = self._map_hw()
        if hw is None:
            self.neuron_row.layout.display = "none"
            return
        h, w = hw
        for s, n in ((self.x_slider, w), (self.y_slider, h)):
            s.max = max(0, n - 1)
        if self.x_slider.value == 0 and self.y_slider.value == 0:
            self.x_slider.value, self.y_slider.value = w // 2, h // 2
        self._draw_marker()

    def _on_mode(self):
        mode, obj = self.mode, self.objective
        show = lambda w, on: setattr(w.layout, "display", None if on else "none")
        show(self.preset_row, mode != DEEPDREAM)
        show(self.atlas_slider, mode == ATLAS)
        show(self.octaves_slider, mode == DEEPDREAM)
        show(self.photo, mode == DEEPDREAM)
        show(self.neuron_row, obj == "neuron" and mode in (SINGLE, COMPARE))
        show(self.picker, obj == "neuron" and mode in (SINGLE, COMPARE))
        show(self.channel_slider, obj != "layer")
        if mode == DEEPDREAM:
            self.lr_slider.value = 0.01
            self.steps_slider.value = min(self.steps_slider.value, 80)
        else:
            self._on_preset()
        if obj == "neuron":
            self._update_map_size()

    def _on_preset(self):
        if self.mode != DEEPDREAM:
            self.lr_slider.value = D.PRESETS[self.preset].lr

    def _on_pick(self, mark, event):
        data = event.get("data", {})
        cx, cy = data.get("click_x"), data.get("click_y")
        if cx is None or cy is None:
            return
        self.x_slider.value = int(min(max(cx, 0), 0.9999) * (self.x_slider.max + 1))
        self.y_slider.value = int(min(max(1 - cy, 0), 0.9999) * (self.y_slider.max + 1))

    def _draw_marker(self):
        w, h = self.x_slider.max + 1, self.y_slider.max + 1
        self._marker.x = [(self.x_slider.value + 0.5) / w]
        self._marker.y = [1 - (self.y_slider.value + 0.5) / h]
        self._marker.default_size = max(16, int((200 / max(w, h)) ** 2))

    def _finished(self, text):
        """RunControls' end-of-run line; a NaN stop keeps its own warning."""
        if self.result is not None and self.result.message:
            return
        self.message.info(f"{text} · {self._caption}")

    # --- jobs ----------------------------------------------------------------------------------------
    def _objective_for(self, probe, layer, channel):
        kind = self.objective
        if kind == "layer":
            return D.layer(layer, "squares" if self.mode == DEEPDREAM else "mean")
        if kind == "neuron" and probe.layer(layer).spatial:
            return D.neuron(layer, channel, self.x_slider.value, self.y_slider.value)
        return D.channel(layer, channel)

    def _matching_layer(self, probe):
        """The layer of ``probe`` at the same relative depth as the chosen one (for compare)."""
        names = self.probe.layers.names
        frac = names.index(self.layer) / max(1, len(names) - 1) if self.layer in names else 1.0
        return probe.layers[round(frac * (len(probe.layers) - 1))]

    def _total(self):
        if self.mode == DEEPDREAM:
            o = self.octaves_slider.value
            return o * max(1, self.steps_slider.value // o)
        return self.steps_slider.value

    def _on_start(self):
        self.history = []
        with self.loss_lines.hold_sync():
            self.loss_lines.x, self.loss_lines.y = np.zeros(0), np.zeros(0)
        self._run_mode = self.mode
        self.result = None

    def _make_job(self):
        mode, steps, lr, size, seed = self.mode, self.steps_slider.value, self.lr_slider.value, self.size_slider.value, self.seed_box.value
        preset = self.preset
        if mode == DEEPDREAM:
            o = self.octaves_slider.value
            obj = self._objective_for(self.probe, self.layer, self.channel) if self.objective != "layer" else self.layer
            gen = D.deepdream(self.probe, self.photo.image, obj, steps=max(1, steps // o), octaves=o, lr=lr, size=size, seed=seed)
            self._caption = f"{self.layer} · {self.objective}{'' if self.objective == 'layer' else f' {self.channel}'} · photo {self.photo.name}"
            return self._track([gen])
        if mode == ATLAS:
            n_ch = self.probe.layer(self.layer).channels or 1
            cs = [c % n_ch for c in range(self.channel, self.channel + self.atlas_slider.value)]
            gen = D.dream(self.probe, D.channels(self.layer, cs), steps=steps, preset=preset, lr=lr, size=size, seed=seed)
            self._caption = f"{self.layer} · channels {cs[0]}–{cs[-1]} · {preset}"
            return self._track([gen], atlas=True)
        if mode == COMPARE:
            gens, names = [], []
            for p in [self.probe] + self.others:
                lay = self.layer if p is self.probe else self._matching_layer(p).name
                ch = self.channel % (p.layer(lay).channels or 1)
                gens.append(D.dream(p, self._objective_for(p, lay, ch), steps=steps, preset=preset, lr=lr, size=size, seed=seed))
                names.append(f"{p.name}: {lay}:{ch}")
            self._caption = " | ".join(names) + f" · {preset}"
            return self._track(gens)
        obj = self._objective_for(self.probe, self.layer, self.channel)
        gen = D.dream(self.probe, obj, steps=steps, preset=preset, lr=lr, size=size, seed=seed)
        self._caption = f"{obj.name} · {preset} · {size}px"
        return self._track([gen])

    def _track(self, gens, atlas=False):
        """One job from one or more dreams run in step (compare): records every step's objective."""
        self.history = [[] for _ in gens]

        def job():
            try:
                while True:
                    items = []
                    for g, hist in zip(gens, self.history):
                        s = next(g, None)
                        if s is None:
                            return
                        items.append(s)
                        if s.message is None:
                            hist.append(float(np.mean(s.objectives)) if s.objectives else s.objective)
                    yield items[0] if len(items) == 1 else D.DreamStep(items[0].step, items[0].total, items, None,
                                                                        image=None, message=next((s.message for s in items if s.message), None))
                    if any(s.message for s in items):
                        return
            finally:
                for g in gens:
                    g.close()
        return job()

    # --- frames --------------------------------------------------------------------------------------
    def _frame_rgb(self, item) -> np.ndarray:
        if isinstance(item.value, list):  # compare: one tile per network
            tiles = [_rgb(s.image)[0] for s in item.value if s.image is not None]
            h = max(t.shape[0] for t in tiles)
            tiles = [t if t.shape[0] == h else render.upscale(t, h) for t in tiles]
            return render.mosaic(np.stack(tiles), cols=len(tiles), pad=4)
        rgb = _rgb(item.image)
        return rgb[0] if len(rgb) == 1 else render.mosaic(rgb, pad=2)

    def _on_frame(self, item, final):
        if item is None:
            return
        self.result = item
        if item.message:
            self.message.warn(item.message)
        has_image = item.image is not None or isinstance(item.value, list)
        if has_image:
            rgb = self._frame_rgb(item)
            with self._lock:
                self.current = rgb
            set_image(self.canvas, rgb, "png" if final else "jpeg", quality=90)
        self.caption.value = f"<span style='color:#555'>step {item.step} / {item.total} · {html.escape(self._caption)}</span>"
        hist = [h[:] for h in self.history]
        n = min((len(h) for h in hist), default=0)
        if n >= 2:  # bqplot squeezes a single point to a scalar
            y = np.array(hist[0][:n]) if len(hist) == 1 else np.array([h[:n] for h in hist])
            with self.loss_lines.hold_sync():
                self.loss_lines.x = np.arange(1, n + 1)
                self.loss_lines.y = y
            finite = y[np.isfinite(y)]
            for axis, (lo, hi) in zip(self.loss_figure.axes, ((1, n), (finite.min(), finite.max()) if finite.size else (0, 1))):
                ticks = nice_ticks(lo, hi)
                if not np.array_equal(np.asarray(axis.tick_values if axis.tick_values is not None else []), ticks):
                    axis.tick_values = ticks
        if final and has_image:
            if self.mode in (SINGLE, COMPARE):
                self._pick_image.image = W.Image(value=render.encode(self.current, "png"), format="png")
            self.keep()

    def _show_blank(self):
        rgb = np.full((128, 128, 3), 235, np.uint8)
        set_image(self.canvas, rgb, "png")
        self.caption.value = "<span style='color:#555'>Press <b>Start</b>: the image forms step by step.</span>"

    # --- gallery -------------------------------------------------------------------------------------
    def keep(self, caption: str | None = None) -> None:
        """Put the current image in the gallery (done at the end of every run)."""
        if self.current is None:
            return
        cap = caption or f"{self._caption} · step {self.result.step if self.result else '?'}"
        self.gallery.append((self.current.copy(), cap))
        self.gallery = self.gallery[-GALLERY_MAX:]
        self._draw_gallery()

    def clear_gallery(self) -> None:
        self.gallery = []
        self._draw_gallery()

    def _draw_gallery(self):
        items = []
        for rgb, cap in self.gallery:
            img = W.Image(value=render.encode(rgb, "png"), format="png", layout=W.Layout(width="128px"))
            items.append(W.VBox([img, W.HTML(f"<div style='width:128px;font-size:10px;line-height:1.2;color:#444;overflow-wrap:anywhere'>{html.escape(cap)}</div>")],
                                layout=W.Layout(margin="2px 6px 2px 0")))
        self.gallery_box.children = items

    # --- control (scripting) -------------------------------------------------------------------------
    def start(self):
        """Start a run (as the Start button does); returns the Runner."""
        return self.controls.start()

    def stop(self) -> None:
        self.controls.stop()

    def join(self, timeout: float | None = None) -> bool:
        return self.controls.join(timeout)

    @property
    def runner(self):
        return self.controls.runner

    # --- static --------------------------------------------------------------------------------------
    def figure(self, what: str = "all"):
        """A matplotlib figure: ``"current"`` (the image or atlas and its objective curve),
        ``"gallery"``, or ``"all"``."""
        import matplotlib.pyplot as plt

        if what not in ("all", "current", "gallery"):
            raise ValueError(f"what must be 'all', 'current' or 'gallery', got {what!r}.")
        show_cur = what in ("all", "current")
        show_gal = what in ("all", "gallery") and self.gallery
        if what == "gallery" and not self.gallery:
            raise ValueError("The gallery is empty: run a dream first (each finished run is kept).")
        rows = (1 if show_cur else 0) + (1 if show_gal else 0)
        ncol = max(2 if show_cur else 1, min(len(self.gallery), 6) if show_gal else 1)
        grow = -(-len(self.gallery) // ncol) if show_gal else 0
        fig = plt.figure(figsize=(2.2 * ncol + 1, 3.6 * (1 if show_cur else 0) + 2.4 * grow), constrained_layout=True)
        gs = fig.add_gridspec((1 if show_cur else 0) + grow, ncol, height_ratios=[1.5] * (1 if show_cur else 0) + [1] * grow)
        if show_cur:
            ax = fig.add_subplot(gs[0, : max(1, ncol // 2)])
            ax.imshow(self.current if self.current is not None else np.full((8, 8, 3), 235, np.uint8))
            ax.set_title(self._caption or "no run yet", fontsize=8)
            ax.axis("off")
            ax2 = fig.add_subplot(gs[0, max(1, ncol // 2):])
            for i, h in enumerate(self.history):
                ax2.plot(np.arange(1, len(h) + 1), h, color=COLORS[i % len(COLORS)])
            ax2.set_xlabel("step")
            ax2.set_ylabel("objective")
            ax2.set_title("objective per step", fontsize=9)
        if show_gal:
            r0 = 1 if show_cur else 0
            for i, (rgb, cap) in enumerate(self.gallery):
                ax = fig.add_subplot(gs[r0 + i // ncol, i % ncol])
                ax.imshow(rgb)
                ax.set_title(cap, fontsize=6, wrap=True)
                ax.axis("off")
        return fig

    def save_image(self, path) -> str:
        """Write the current image (or atlas) itself as a lossless PNG, at its own resolution."""
        if self.current is None:
            raise ValueError("Nothing to save yet: press Start first.")
        from PIL import Image

        Image.fromarray(self.current).save(path)
        return str(path)
