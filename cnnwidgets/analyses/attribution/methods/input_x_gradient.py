"""Input × Gradient (Shrikumar et al. 2016): each pixel's value times the score's gradient there."""
from ..base import Method, register
from ..common import channel_words


@register
class InputXGradient(Method):
    name = "input_x_gradient"
    label = "Input × Gradient"
    order = 25

    def legend(self, a):
        return f"pixel value × ∂ score / ∂ pixel, summed over {channel_words(a.image.shape[0])} (black pixels get 0)"

    def attribute(self, probe, fn, x, target, o):
        from captum.attr import InputXGradient as Captum

        return Captum(fn).attribute(x.clone().requires_grad_(), target=target), {}
