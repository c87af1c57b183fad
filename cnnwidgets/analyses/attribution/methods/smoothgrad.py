"""SmoothGrad (Smilkov et al. 2017): the gradient averaged over noisy copies of the image, sharpening as
copies accumulate."""
import torch

from ..base import Method, Option, Pace, Partial, register
from ..common import channel_words


def smoothgrad_noise(x: torch.Tensor, samples: int, noise: float, seed: int) -> torch.Tensor:
    """The ``samples`` noisy copies of ``x`` (samples x C x H x W), Gaussian with std ``noise`` x the
    pixel range, from a seeded generator (reproducible, and the same for batched and looped runs)."""
    g = torch.Generator().manual_seed(int(seed))
    eps = torch.randn((samples, *x.shape[1:]), generator=g) * float(noise)
    return x + eps.to(x.device, x.dtype)


@register
class SmoothGrad(Method):
    name = "smoothgrad"
    label = "SmoothGrad"
    signed = False
    gradient = True
    slow = True
    unit = "sample"
    order = 20
    options = (
        Option("samples", "int", 50, "samples", min=1, slider=(5, 200, 5), help="how many noisy copies are averaged"),
        Option("noise", "float", 0.15, "noise σ", min=0.0, slider=(0.0, 0.5, 0.05),
               help="the noise's standard deviation, as a fraction of the pixel range"),
        Option("batch_size", "int", 25, min=1, control=False, help="most copies per backward pass"),
        Option("seed", "int", 0, control=False),
    )

    def legend(self, a):
        n = a.done if a.partial else a.options["samples"]
        return (f"mean gradient over {n} noisy cop{'y' if n == 1 else 'ies'} (σ = {a.options['noise']:g}), |·| max "
                f"over {channel_words(a.image.shape[0])}")

    def total(self, o, x):
        return o["samples"]

    def steps(self, probe, fn, x, target, o):
        from captum.attr import Saliency

        noisy = smoothgrad_noise(x, o["samples"], o["noise"], o["seed"])
        acc = torch.zeros_like(x)
        pace = Pace(o["batch_size"])
        for i, j in pace.chunks(o["samples"]):
            with pace.timed(j - i):
                g = Saliency(fn).attribute(noisy[i:j].clone().requires_grad_(), target=target, abs=False)
                acc += g.sum(0, keepdim=True)
            yield Partial(j, acc / j)
