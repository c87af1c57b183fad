"""Guided Grad-CAM: guided backpropagation times Grad-CAM."""
import torch

from .... import hooks
from ..base import Method, Option, register
from ..common import cam_layer
from .gradcam import layer_gradcam


@register
class GuidedGradCam(Method):
    name = "guided_gradcam"
    label = "Guided Grad-CAM"
    order = 50
    options = (Option("layer", "layer", None, "Grad-CAM layer", help="a layer with spatial maps; None: the last block"),)

    def legend(self, a):
        return "guided backprop × Grad-CAM (guided only where the model uses nn.ReLU)"

    def attribute(self, probe, fn, x, target, o):
        from captum.attr import LayerAttribution, LayerGradCam

        l = cam_layer(probe, o["layer"])
        if l.reshape is not None:
            cam = layer_gradcam(probe, fn, x, target, l)
        else:
            cam = LayerGradCam(fn, fn.layer(l.name)).attribute(x, target=target, relu_attributions=True).detach()
        # guided backprop as Captum's GuidedBackprop computes it, except that a ReLU whose output needs no gradient
        # (Swin V2's position-bias MLP runs on constants) is left alone instead of failing
        xg = x.detach().clone().requires_grad_(True)
        with hooks.guided_relus(fn):
            out = fn(xg)
            guided, = torch.autograd.grad(out[:, target].sum(), xg)
        up = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
        return guided * up, {"layer": l.name}
