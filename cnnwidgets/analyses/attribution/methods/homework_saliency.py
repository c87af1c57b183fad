"""The NTU ML homework's saliency map (HW9, ``compute_saliency_maps``), reproduced exactly."""
import torch

from ..base import Method, register
from ..common import channel_words, minmax


@register
class HomeworkSaliency(Method):
    """The gradient of the cross-entropy loss for the class (the homework's label) w.r.t. the pixels; the map is
    |gradient| max over colour channels, min-max scaled to [0, 1] per image. The loss's gradient also pushes
    every other class down, so it differs from the class score's (``"saliency"``, the vanilla gradient)."""

    name = "saliency_homework"
    label = "Saliency (as in the homework)"
    short = "Saliency (homework)"
    signed = False
    gradient = True
    general = False  # listed in the panel for every classifier, but not in "All methods"
    order = 110

    def legend(self, a):
        return (f"|∂ cross-entropy loss / ∂ pixel|, max over {channel_words(a.image.shape[0])} (the homework's "
                "compute_saliency_maps, which then scales it to [0, 1])")

    def reduce(self, raw):
        return minmax(super().reduce(raw))

    def attribute(self, probe, fn, x, target, o):
        x = x.clone().requires_grad_()
        loss = torch.nn.functional.cross_entropy(fn(x).float(), torch.tensor([target], device=x.device))
        (g,) = torch.autograd.grad(loss, x)
        return g, {}
