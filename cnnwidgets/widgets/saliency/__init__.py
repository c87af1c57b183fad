"""Saliency: which pixels made the model pick this class? Every registered attribution method, one panel.

>>> sal = cw.Saliency(probe, cw.sample_image("chelsea"), compare=[cw.Probe(cw.load_model("resnet18"))])

Small views, each in its own file: the option controls built from each method's specs (``options``),
the display controls and the words around a map (``display``), the Map tab (``mapview``), the grid tabs
(``grids``: all methods, compare models, sanity check) and the matplotlib figure (``figure``); ``panel``
wires them. All maths is in :mod:`cnnwidgets.analyses.attribution` and its ``attribution_display``.
"""
from .panel import Saliency

__all__ = ["Saliency"]
