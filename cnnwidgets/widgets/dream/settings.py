"""The Dream panel's settings: mode, recipe, layer, what to maximise, and how (steps, learning rate, size, seed)."""
from __future__ import annotations

import math

import ipywidgets as W

from ...analyses.dream import PRESETS
from ...analyses.dream import jobs as J
from .._base import LayerSlider
from .._controls import ImageInput

LEARNING_RATES = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]
MODE_LABELS = {J.SINGLE: "one image", J.ATLAS: "atlas of channels", J.DEEPDREAM: "DeepDream a photo",
               J.COMPARE: "compare networks"}
KIND_LABELS = {J.CHANNEL: "one channel", J.NEURON: "one neuron", J.LAYER: "whole layer"}


def _row(label: str, *widgets) -> W.HBox:
    return W.HBox([W.HTML(f"<b style='color:#333'>{label}</b>", layout=W.Layout(width="80px")), *widgets],
                  layout=W.Layout(align_items="center", flex_flow="row wrap"))


def size_slider(probe, value: int) -> W.IntSlider:
    """A slider of image sizes around ``value`` (the default size: the model's, or 128 px on a CPU), in steps that
    keep ``value`` on the slider (16 px, or 4 px for a 28 px model)."""
    own = min(probe.transform.input_size)
    lo = min(32, value)
    step = math.gcd(value, 16)
    return W.IntSlider(value=value, min=lo, max=max(512, own, value), step=step, description="image size",
                       style={"description_width": "80px"}, layout=W.Layout(width="300px"))


class SettingsView(W.VBox):
    """The settings of the next run, as widgets; :meth:`settings` reads them as :class:`~cnnwidgets.analyses.dream.jobs.
    Settings`. ``neuron_row``: the picker's sliders, shown under "Maximise" for a neuron."""

    def __init__(self, probe, layer: str, *, compare: bool, steps: int, size: int | None, photo, message,
                 neuron_row: W.Widget, on_layer):
        self.probe = probe
        modes = [J.SINGLE, J.ATLAS, J.DEEPDREAM] + ([J.COMPARE] if compare else [])
        self.mode_buttons = W.ToggleButtons(options=[(MODE_LABELS[m], m) for m in modes], value=J.SINGLE,
                                            style={"button_width": "160px"})
        self.preset_buttons = W.ToggleButtons(
            options=[(J.RECIPES[p], p) for p in ("naive", "regularized")], value="regularized",
            tooltips=["plain pixels, Adam lr 0.1, each step rescaled to [0, 1]: the image stays high-frequency noise",
                      "a Fourier-space image with natural colours, moved a little each step (pad, jitter, scale, rotate): "
                      "recognisable patterns"],
            style={"button_width": "320px"})
        self.layer_control = LayerSlider(probe, value=layer, on_move=on_layer)
        self.objective_buttons = W.ToggleButtons(options=[(KIND_LABELS[k], k) for k in J.KINDS], value=J.CHANNEL,
                                                 tooltips=["the mean of one channel's map", "one unit at (x, y) of a map",
                                                           "the mean of the whole layer"],
                                                 style={"button_width": "110px"})
        self.channel_slider = W.IntSlider(value=0, min=0, max=1, description="channel", continuous_update=False,
                                          style={"description_width": "95px"}, layout=W.Layout(width="400px"))
        style = {"description_width": "80px"}
        self.steps_slider = W.IntSlider(value=steps, min=1, max=max(2048, steps), step=1, description="steps", style=style,
                                        layout=W.Layout(width="300px"))
        self.lr_slider = W.SelectionSlider(options=LEARNING_RATES, value=PRESETS["regularized"].lr,
                                           description="learning rate", style={"description_width": "90px"},
                                           layout=W.Layout(width="320px"))
        self.size_slider = size_slider(probe, size or J.default_size(probe))
        self.seed_box = W.BoundedIntText(value=0, min=0, max=2**31 - 1, description="seed",
                                         style={"description_width": "40px"}, layout=W.Layout(width="140px"))
        self.atlas_slider = W.IntSlider(value=16, min=2, max=64, description="channels", style=style,
                                        layout=W.Layout(width="300px"))
        self.atlas_hint = W.HTML("<span style='color:#555'>from the chosen channel on, one image each, in one batch</span>")
        self.octaves_slider = W.IntSlider(value=4, min=1, max=6, description="octaves", style=style,
                                          layout=W.Layout(width="300px"))
        self.photo = ImageInput(probe, photo, message)
        self.neuron_row = neuron_row
        self.recipe_row = _row("Recipe", self.preset_buttons)
        self.run_row = W.HBox([self.steps_slider, self.lr_slider, self.size_slider, self.seed_box],
                              layout=W.Layout(flex_flow="row wrap"))
        self.atlas_row = W.HBox([self.atlas_slider, self.atlas_hint], layout=W.Layout(align_items="center"))
        self.deepdream_row = W.HBox([self.octaves_slider, self.photo], layout=W.Layout(flex_flow="row wrap"))
        super().__init__([
            _row("Mode", self.mode_buttons),
            self.recipe_row,
            self.layer_control.slider, self.layer_control.caption,
            _row("Maximise", self.objective_buttons, self.channel_slider),
            neuron_row, self.run_row, self.atlas_row, self.deepdream_row,
        ])

    def show_for(self, mode: str, kind: str, spatial: bool) -> None:
        """Show the widgets that matter for ``mode`` and objective ``kind`` (``spatial``: the layer has maps)."""
        def show(w, on):
            w.layout.display = None if on else "none"
        show(self.recipe_row, mode != J.DEEPDREAM)
        show(self.atlas_row, mode == J.ATLAS)
        show(self.deepdream_row, mode == J.DEEPDREAM)
        show(self.neuron_row, kind == J.NEURON and spatial and mode in (J.SINGLE, J.COMPARE))
        show(self.channel_slider, kind != J.LAYER)
        self.channel_slider.description = "first channel" if mode == J.ATLAS else ("channel" if spatial else "unit")

    def settings(self, layer: str, channel: int, mode: str, preset: str, kind: str, position) -> J.Settings:
        x, y = position if kind == J.NEURON else (None, None)
        return J.Settings(layer=layer, channel=channel, mode=mode, objective=kind, x=x, y=y, preset=preset,
                          steps=self.steps_slider.value, lr=self.lr_slider.value, size=self.size_slider.value,
                          seed=self.seed_box.value, atlas=self.atlas_slider.value, octaves=self.octaves_slider.value)
