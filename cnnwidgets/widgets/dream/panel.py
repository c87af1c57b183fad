"""Dream: watch an image form that makes a layer, channel or neuron fire (the jobs are cnnwidgets.analyses.dream.jobs)."""
from __future__ import annotations

import traitlets as T

from ...analyses.dream import PRESETS
from ...analyses.dream import jobs as J
from ...probe import whole_number
from .._base import Message, Panel, RunControls
from .canvas import Canvas, frame_rgb, to_rgb
from .gallery import Gallery
from .picker import NeuronPicker
from .settings import SettingsView


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


class Dream(Panel):
    """Watch an image form that makes a layer, channel or neuron of ``probe``'s model fire.

    >>> d = cw.Dream(probe, layer="_blocks.8._project_conv", channel=5); d     # press Start
    >>> d.preset = "naive"          # plain gradient ascent (noise-like), to compare with "regularized"
    >>> d.mode = "atlas"            # 16 channels of the layer, optimised together in one batch
    >>> d.save("dream.png")         # the current image (or atlas), the objective curve and the gallery

    Traits for linking: ``layer`` and ``channel``; also ``mode`` (single / atlas / deepdream / compare),
    ``preset`` (naive / regularized) and ``objective`` (channel / neuron / layer). ``compare``: more
    probes to dream side by side with the same objective (the layer at the same relative depth).
    ``size``: the image size (default: the model's input size, at most 128 px on a CPU).
    ``objective``, ``preset`` and ``mode`` set those traits at once (``Dream(probe, "layer2", 5, preset="naive")``).
    ``run_mode``: ``"auto"`` (a background thread, or the foreground on Colab), ``"thread"``, ``"foreground"``.
    """

    layer = T.Unicode().tag(sync=False)
    channel = T.Int(0).tag(sync=False)
    mode = T.Unicode(J.SINGLE).tag(sync=False)
    preset = T.Unicode("regularized").tag(sync=False)
    objective = T.Unicode(J.CHANNEL).tag(sync=False)

    def __init__(self, probe, layer=None, channel=None, *, compare=(), photo=None, steps: int | None = None,
                 size: int | None = None, run_mode: str = "auto", fps: float = 15.0, objective: str = J.CHANNEL,
                 preset: str = "regularized", mode: str | None = None):
        for arg, value, allowed in (("objective", objective, J.KINDS), ("preset", preset, tuple(J.RECIPES)),
                                    ("mode", mode, (None, *J.MODES))):
            if value not in allowed:
                raise ValueError(f"{arg} must be one of {[a for a in allowed if a is not None]}, got {value!r}.")
        names = probe.require_layers("Dream")
        start = probe.layer(layer).name if layer is not None else names.names[len(names) // 2]
        if channel is not None:
            channel = J.check_channel(probe, start, channel)  # 2.7 or 99: an error, not channel 2 or the last one
        steps = 256 if steps is None else whole_number(steps, "the number of steps")
        size = None if size is None else whole_number(size, "the image size")
        if steps < 1 or (size is not None and size < 1):
            raise ValueError(f"steps and size are positive whole numbers, got steps={steps}, size={size}.")
        self.probe = probe
        self.others = list(compare)
        self.message = Message()
        self.result = None  # the last Frame
        self.current = None  # what the canvas shows, H x W x 3 uint8 at the images' resolution
        self._job = None
        self._run_weights = None

        self.picker = NeuronPicker()
        self.settings_view = SettingsView(probe, start, compare=bool(self.others), steps=steps, size=size, photo=photo,
                                          message=self.message, neuron_row=self.picker.sliders,
                                          on_layer=lambda name: setattr(self, "layer", name))
        self.canvas_view = Canvas(side=self.picker.figure)
        self.canvas = self.canvas_view.image  # the image widget itself (what scripts and tests read)
        self.gallery = Gallery(on_keep=self.keep)
        self.controls = RunControls(self._make_job, self._on_frame, total=lambda: self._job.total if self._job else None,
                                    fps=fps, message=_Relay(self), mode=run_mode, on_start=self._on_start,
                                    stale=lambda: [self.canvas], panel=self)
        v = self.settings_view
        for name in ("steps_slider", "lr_slider", "size_slider", "seed_box", "atlas_slider", "octaves_slider",
                     "channel_slider", "photo"):
            setattr(self, name, getattr(v, name))
        self.layer_slider, self.x_slider, self.y_slider = v.layer_control.slider, self.picker.x_slider, self.picker.y_slider
        super().__init__([v, self.controls, self.message, self.canvas_view, self.gallery])
        self.add_class("cnnwidgets-dream")

        T.link((v.mode_buttons, "value"), (self, "mode"))
        T.link((v.preset_buttons, "value"), (self, "preset"))
        T.link((v.objective_buttons, "value"), (self, "objective"))
        self.layer = start
        self._on_layer()
        T.link((v.channel_slider, "value"), (self, "channel"))
        if channel is not None:
            self.channel = channel
        self.preset, self.objective = preset, objective
        if mode is not None:
            self.mode = mode
        self.observe(lambda ch: (v.layer_control.show(ch["new"]), self._on_layer()), "layer")
        self.observe(lambda ch: self._on_mode(), ["mode", "objective"])
        self.observe(lambda ch: self._on_preset(), "preset")
        v.size_slider.observe(lambda ch: self._update_map(), "value")
        self._on_mode()

    # --- reactions -----------------------------------------------------------------------------------
    @T.validate("layer")
    def _valid_layer(self, proposal):
        """An unknown layer name keeps the current layer and says so in the message line."""
        try:
            return self.probe.layer(proposal["value"]).name
        except (KeyError, IndexError, TypeError) as e:
            self.message.exception(e)
            return self.layer

    @T.validate("channel")
    def _valid_channel(self, proposal):
        """A channel out of range (set by code or a linked panel) keeps the current channel and says so."""
        try:
            return J.check_channel(self.probe, self.layer, proposal["value"])
        except (TypeError, ValueError) as e:
            self.message.exception(e)
            return self.channel

    def _on_layer(self):
        n = self.probe.layer(self.layer).channels or 1
        self.settings_view.channel_slider.max = max(0, n - 1)  # a larger channel moves down to the last one
        self._on_mode()

    def _on_mode(self):
        spatial = self.probe.layer(self.layer).spatial
        self.settings_view.show_for(self.mode, self.objective, spatial)
        self.picker.figure.layout.display = None if self.objective == J.NEURON and spatial and self.mode in (
            J.SINGLE, J.COMPARE) else "none"
        if self.mode == J.DEEPDREAM:
            self.lr_slider.value = J.DEEPDREAM_LR
            self.steps_slider.value = min(self.steps_slider.value, 80)
        else:
            self._on_preset()
        self._update_map()

    def _on_preset(self):
        if self.mode != J.DEEPDREAM:
            self.lr_slider.value = PRESETS[self.preset].lr

    def _update_map(self):
        """The neuron sliders' ranges: the layer's map size at the chosen image size."""
        if self.objective != J.NEURON or not self.probe.layer(self.layer).spatial:
            return
        try:
            hw = J.map_size(self.probe, self.layer, self.size_slider.value)
        except Exception as e:  # a size the model refuses: said in the message line
            self.message.exception(e)
            return
        if hw is not None:
            self.picker.set_map(*hw)

    def _finished(self, text):
        """RunControls' end-of-run line; a NaN stop keeps its own warning."""
        if self.result is not None and self.result.message:
            return
        self.message.info(f"{text} · {self._job.caption if self._job else ''}")

    # --- jobs ----------------------------------------------------------------------------------------
    def _on_start(self):
        self.check_weights()  # images made before a training step are labelled in the gallery
        self.mark_weights()
        self._run_weights = self._weights_seen
        self.result = None

    def _make_job(self):
        v = self.settings_view
        s = v.settings(self.layer, self.channel, self.mode, self.preset, self.objective, self.picker.position)
        photo = v.photo.image if self.mode == J.DEEPDREAM else None
        self._job = J.plan(self.probe, s, others=self.others, photo=photo, photo_name=v.photo.name)
        self.canvas_view.reset(self._job.labels)
        return self._job.frames

    def _on_frame(self, frame, final):
        if frame is None:
            return
        self.result = frame
        if frame.message:
            self.message.warn(frame.message)
        rgb = frame_rgb(frame)
        self.current = rgb
        octave = (frame.info or {}).get("octave")
        where = f" · octave {octave} of {frame.info['octaves']}" if octave and "octaves" in frame.info else ""
        self.canvas_view.show(rgb, final, f"step {frame.step} / {frame.total}{where} · {self._job.caption}")
        self.canvas_view.plot(frame.history)
        if final:
            if self.mode in (J.SINGLE, J.COMPARE):
                self.picker.set_image(to_rgb(frame.steps[0].image)[0])
            self.keep()

    @property
    def history(self) -> list[list[float]]:
        """The objective per step of the last run, one list per dream."""
        return self.result.history if self.result is not None else []

    # --- gallery and live weights --------------------------------------------------------------------
    def keep(self, caption: str | None = None) -> None:
        """Put the current image in the gallery (done at the end of every run)."""
        if self.current is None:
            return
        step = f" · step {self.result.step}" if self.result is not None else ""
        self.gallery.add(self.current, caption or (self._job.caption + step if self._job else "image"), self._run_weights)

    def clear_gallery(self) -> None:
        self.gallery.clear()

    def on_weights_changed(self) -> None:
        n = self.gallery.mark_outdated(self.probe.weights_version())
        if n:
            self.message.warn(f"The model's weights changed: {n} image{'s' if n > 1 else ''} in the gallery "
                              "were made before (marked ⚠). Press Start to dream with the weights as they are now.")

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
        """A matplotlib figure: ``"current"`` (the image or atlas and its objective curve), ``"gallery"``, or ``"all"``."""
        from .static import figure

        return figure(self, what)

    def save_image(self, path) -> str:
        """Write the current image (or atlas) itself as a lossless PNG, at its own resolution."""
        if self.current is None:
            raise ValueError("Nothing to save yet: press Start first.")
        from PIL import Image

        Image.fromarray(self.current).save(path)
        return str(path)
