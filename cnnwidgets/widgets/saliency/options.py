"""The option controls of every attribution method, built from its :class:`Option` specs."""
from __future__ import annotations

import ipywidgets as W

from ...analyses import attribution as A

STYLE = {"description_width": "initial"}


def control(opt: A.Option) -> W.Widget:
    """A slider or dropdown for one option spec, set to its default."""
    if opt.kind == "choice":
        return W.Dropdown(options=opt.labels, value=opt.default, description=opt.text, style=STYLE,
                          layout=W.Layout(width="auto"))
    lo, hi, step = opt.slider or (opt.min or 0, max(opt.default * 4, 1), 1)
    if opt.kind == "int":
        return W.IntSlider(opt.default, min=lo, max=hi, step=step, description=opt.text, style=STYLE,
                           continuous_update=False)
    return W.FloatSlider(opt.default, min=lo, max=hi, step=step, description=opt.text, style=STYLE,
                         continuous_update=False)


class OptionControls:
    """``controls[method][option]``: one control per option with ``control=True`` of each registered method;
    options of kind ``"layer"`` share :attr:`layer` (a dropdown of the layers Grad-CAM can use)."""

    def __init__(self, probe, on_change):
        self.layer = W.Dropdown(options=[(l.label, l.name) for l in A.spatial_layers(probe)], style=STYLE,
                                layout=W.Layout(width="420px"))
        self.controls: dict[str, dict[str, W.Widget]] = {}
        for m in A.registered(probe):
            row = {}
            for opt in m.options:
                if not opt.control:
                    continue
                if opt.kind == "layer":
                    self.layer.description = opt.text
                    row[opt.name] = self.layer
                else:
                    row[opt.name] = control(opt)
                    row[opt.name].observe(lambda ch, name=m.name: on_change(name), "value")
            self.controls[m.name] = row

    def row(self, method: str) -> list[W.Widget]:
        return list(self.controls.get(method, {}).values())

    def values(self, method: str) -> dict:
        """The options the controls set for ``method`` (keywords of ``attribute``)."""
        return {k: w.value for k, w in self.controls.get(method, {}).items()}

    def uses_layer(self, method: str) -> bool:
        return self.layer in self.controls.get(method, {}).values()

    def __getitem__(self, method: str) -> dict[str, W.Widget]:
        return self.controls[method]
