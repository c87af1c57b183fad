"""The NTU ML homework's Integrated Gradients (HW9, ``IntegratedGradients``), reproduced exactly."""
import torch

from ..base import Method, Option, Pace, Partial, register, spread


@register
class HomeworkIntegratedGradients(Method):
    """The gradient of the class's logit at ``k / steps`` x the image, ``k = 0 .. steps - 1`` (a zero baseline, a
    left Riemann sum), averaged: the *mean path gradient*. The homework stops there; Integrated Gradients
    multiplies it by (image - baseline), which makes the map's sum equal f(image) - f(baseline) (completeness).
    ``delta`` is how far this map's sum is from that. ``"integrated_gradients"`` with ``steps=10,
    approximation="riemann_left", baseline="black"`` is this map times the image."""

    name = "integrated_gradients_homework"
    label = "Integrated Gradients (as in the homework)"
    short = "IG (homework)"
    general = False
    slow = True
    unit = "path step"
    order = 130
    options = (
        Option("steps", "int", 10, "steps", min=1, slider=(5, 100, 5), help="how many points on the path from black"),
        # one point per backward, as the homework: a batch rounds the convolutions differently, and near the black
        # end max-pooling windows hold near ties, where such rounding sends a gradient to another pixel
        Option("batch_size", "int", 1, min=1, control=False, help="most path points per backward pass"),
    )

    def legend(self, a):
        delta = f"; its sum misses f(image) − f(black) by {a.delta:.3g}" if a.delta is not None else ""
        return (f"mean gradient of the class score along the path from a black image, {a.options['steps']} steps, "
                f"not multiplied by (image − black){delta}")

    def total(self, o, x):
        return o["steps"]

    def steps(self, probe, fn, x, target, o):
        n = o["steps"]
        order = spread(n)  # any prefix of the path points spans the whole path
        acc = torch.zeros_like(x)
        pace = Pace(o["batch_size"])
        for i, j in pace.chunks(n):
            with pace.timed(j - i):
                pts = torch.cat([x * k / n for k in order[i:j]]).requires_grad_()
                (g,) = torch.autograd.grad(fn(pts)[:, target].sum(), pts)
                acc += g.sum(0, keepdim=True)
            if j < n:
                yield Partial(j, acc / j)
        raw = acc / n
        with torch.no_grad():
            ends = fn(torch.cat([x, torch.zeros_like(x)]))[:, target].float()
        yield Partial(n, raw, {"delta": abs(float(raw.sum()) - float(ends[0] - ends[1]))})
