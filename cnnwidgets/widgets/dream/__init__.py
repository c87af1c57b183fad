"""The Dream panel, in small views: :mod:`.settings` (what to dream and how), :mod:`.canvas` (the image as it forms
and the objective per step), :mod:`.picker` (the neuron position), :mod:`.gallery` (finished images), wired by
:mod:`.panel`. The jobs themselves are :mod:`cnnwidgets.analyses.dream.jobs`."""
from ...analyses.dream.jobs import ATLAS, COMPARE, DEEPDREAM, SINGLE
from .panel import Dream

__all__ = ["Dream", "SINGLE", "ATLAS", "DEEPDREAM", "COMPARE"]
