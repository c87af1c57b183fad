"""The NTU ML homework's SmoothGrad (HW9, ``smooth_grad``), reproduced exactly, and beside it the same code with
the noise the SmoothGrad paper intends."""
import torch

from ..base import Method, Option, Pace, Partial, register
from ..common import channel_words, minmax


def homework_noise_std(x: torch.Tensor, level: float = 0.4, intended: bool = False) -> float:
    """The noise's standard deviation for image ``x``. The homework computes ``sigma = level / (max - min)`` and
    draws with standard deviation ``sigma ** 2`` (0.16 for a [0, 1] image at level 0.4); the paper means
    ``level * (max - min)`` (0.4)."""
    spread = float(x.max() - x.min())
    return level * spread if intended else (level / spread) ** 2


@register
class HomeworkSmoothGrad(Method):
    """|∂ cross-entropy loss / ∂ pixel| averaged over noisy copies of the image (one Gaussian draw per copy, in
    the homework's order, from a seeded generator instead of torch's global one), then min-max scaled to [0, 1]."""

    name = "smoothgrad_homework"
    label = "SmoothGrad (as in the homework)"
    short = "SmoothGrad (homework)"
    signed = False
    gradient = True
    general = False
    slow = True
    unit = "sample"
    order = 120
    intended = False  #: the noise the paper intends (level x range) instead of the homework's (level / range)²
    options = (
        Option("samples", "int", 500, "samples", min=1, slider=(10, 500, 10), help="how many noisy copies are averaged"),
        Option("level", "float", 0.4, "noise level", min=0.0, slider=(0.0, 1.0, 0.05),
               help="the homework's param_sigma_multiplier"),
        Option("batch_size", "int", 25, min=1, control=False, help="most copies per backward pass"),
        Option("seed", "int", 0, control=False, help="of the noise generator"),
    )

    def legend(self, a):
        n = a.done if a.partial else a.options["samples"]
        std = homework_noise_std(torch.as_tensor(a.image), a.options["level"], self.intended)
        why = "level × range, as intended" if self.intended else "(level / range)², as the homework draws it"
        return (f"mean |∂ loss / ∂ pixel| over {n} noisy copies, noise std {std:.3g} ({why}); "
                f"max over {channel_words(a.image.shape[0])}, scaled to [0, 1]")

    def reduce(self, raw):
        return minmax(super().reduce(raw))

    def total(self, o, x):
        return o["samples"]

    def steps(self, probe, fn, x, target, o):
        n = o["samples"]
        std = homework_noise_std(x, o["level"], self.intended)
        g = torch.Generator().manual_seed(o["seed"])
        acc = torch.zeros_like(x)
        pace = Pace(o["batch_size"])
        for i, j in pace.chunks(n):
            with pace.timed(j - i):
                noise = torch.stack([torch.empty(x.shape[1:]).normal_(0.0, std, generator=g) for _ in range(j - i)])
                noisy = (x + noise.to(x.device)).requires_grad_()
                y = torch.full((j - i,), target, device=x.device)
                # a sum of per-copy losses: each copy's gradient is its own loss's, as in the homework's loop
                loss = torch.nn.functional.cross_entropy(fn(noisy).float(), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, noisy)
                acc += grad.abs().sum(0, keepdim=True)
            yield Partial(j, minmax(acc / j))


@register
class IntendedSmoothGrad(HomeworkSmoothGrad):
    """The homework's SmoothGrad with the noise the paper intends: standard deviation ``level x (max - min)``."""

    name = "smoothgrad_homework_fixed"
    label = "SmoothGrad (homework, noise as intended)"
    short = "SmoothGrad (intended noise)"
    order = 121
    intended = True
