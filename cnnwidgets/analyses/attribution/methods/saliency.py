"""The vanilla gradient: |d score / d pixel| of the class's score (the NTU homework takes its loss's gradient instead:
``saliency_homework``)."""
from ..base import Method, register
from ..common import channel_words


@register
class VanillaGradient(Method):
    name = "saliency"
    label = "Vanilla gradient (saliency)"
    short = "Vanilla gradient"
    signed = False
    gradient = True
    order = 10

    def legend(self, a):
        return f"|∂ score / ∂ pixel|, max over {channel_words(a.image.shape[0])}"

    def attribute(self, probe, fn, x, target, o):
        from captum.attr import Saliency

        return Saliency(fn).attribute(x.clone().requires_grad_(), target=target, abs=False), {}
