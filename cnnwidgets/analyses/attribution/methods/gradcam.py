"""Grad-CAM (Selvaraju et al. 2017) on any layer with spatial maps."""
from ..base import Method, Option, register
from ..common import cam_layer


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
        cam = LayerGradCam(fn, fn.layer(l.name)).attribute(x, target=target, relu_attributions=True)
        coarse = cam.detach()[0, 0].float().cpu().numpy()
        up = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
        return up, {"layer": l.name, "coarse": coarse}
