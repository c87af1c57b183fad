"""Grad-CAM (Selvaraju et al. 2017) on any layer with spatial maps, a transformer's token layers included."""
import torch

from ..base import Method, Option, register
from ..common import cam_layer


def layer_gradcam(probe, fn, x, target, layer) -> torch.Tensor:
    """Grad-CAM of ``layer`` as ``1x1xhxw`` (the layer's grid), ReLU-ed, for layers the Probe reshapes (token
    sequences and channels-last maps), whose raw output Captum's layer hooks would see as it is: the maps and their
    gradient as every panel sees them (:meth:`~cnnwidgets.Probe.layer_gradient`)."""
    a, g = probe.layer_gradient((x - fn.mean) / fn.std, layer, lambda out: out[:, target].sum())
    w = g.mean(dim=(2, 3), keepdim=True)
    return torch.relu((w * a).sum(dim=1, keepdim=True))


@register
class GradCam(Method):
    name = "gradcam"
    label = "Grad-CAM"
    signed = False
    order = 40
    options = (Option("layer", "layer", None, "Grad-CAM layer", help="a layer with spatial maps; None: the last block"),)

    def legend(self, a):
        return "class-weighted activations of the layer, ReLU, upsampled"

    def attribute(self, probe, fn, x, target, o):
        from captum.attr import LayerAttribution, LayerGradCam

        l = cam_layer(probe, o["layer"])
        if l.reshape is not None:
            cam = layer_gradcam(probe, fn, x, target, l)
        else:
            cam = LayerGradCam(fn, fn.layer(l.name)).attribute(x, target=target, relu_attributions=True)
        coarse = cam.detach()[0, 0].float().cpu().numpy()
        up = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
        return up, {"layer": l.name, "coarse": coarse}
