"""Guided Grad-CAM: guided backpropagation times Grad-CAM."""
import warnings

from ..base import Method, Option, register
from ..common import cam_layer


@register
class GuidedGradCam(Method):
    name = "guided_gradcam"
    label = "Guided Grad-CAM"
    order = 50
    options = (Option("layer", "layer", None, "Grad-CAM layer", help="a layer with spatial maps; None: the last block"),)

    def legend(self, a):
        return "guided backprop × Grad-CAM (guided only where the model uses nn.ReLU)"

    def attribute(self, probe, fn, x, target, o):
        from captum.attr import GuidedGradCam as Captum

        l = cam_layer(probe, o["layer"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            attr = Captum(fn, fn.layer(l.name)).attribute(x, target=target, interpolate_mode="bilinear")
        return attr, {"layer": l.name}
