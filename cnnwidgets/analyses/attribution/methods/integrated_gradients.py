"""Integrated Gradients (Sundararajan et al. 2017), path steps taken coarse to fine so the map sharpens."""
import numpy as np
import torch

from ..base import Method, Option, Pace, Partial, register, spread
from ..common import BASELINE_LABELS, make_baseline

RULES = (("gausslegendre", "Gauss–Legendre"), ("riemann_trapezoid", "trapezoid"), ("riemann_left", "left Riemann"),
         ("riemann_right", "right Riemann"), ("riemann_middle", "midpoint"))


def path_rule(approximation: str, n: int) -> tuple[list[float], list[float]]:
    """``(weights, alphas)`` of the ``n`` points on the path, as Captum's ``IntegratedGradients(method=...)``
    takes them (Gauss-Legendre nodes scaled to [0, 1], or a Riemann sum)."""
    if approximation == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(n)
        return (0.5 * w).tolist(), (0.5 * (1 + nodes)).tolist()
    weights = [1 / n] * n
    if approximation == "riemann_trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
        return weights, torch.linspace(0, 1, n).tolist()
    lo, hi = {"riemann_left": (0, 1 - 1 / n), "riemann_right": (1 / n, 1),
              "riemann_middle": (1 / (2 * n), 1 - 1 / (2 * n))}[approximation]
    return weights, torch.linspace(lo, hi, n).tolist()


@register
class IntegratedGradients(Method):
    name = "integrated_gradients"
    label = "Integrated Gradients"
    slow = True
    unit = "path step"
    order = 30
    options = (
        Option("steps", "int", 50, "steps", min=1, slider=(5, 300, 5),
               help="how many points on the path from the baseline to the image"),
        Option("baseline", "choice", "black", "baseline", choices=BASELINE_LABELS,
               help="the reference image the path starts from"),
        Option("approximation", "choice", "gausslegendre", choices=RULES, control=False,
               help="the rule that places the points and weighs them"),
        Option("batch_size", "int", 25, min=1, control=False, help="most path points per backward pass"),
        Option("seed", "int", 0, control=False, help="of the random-noise baseline"),
    )

    def legend(self, a):
        o = a.options
        delta = f"; completeness error {a.delta:.2g}" if a.delta is not None else ""
        steps = f"{a.done} of {o['steps']} steps so far" if a.partial else f"{o['steps']} steps"
        return f"gradients along the path from a {dict(BASELINE_LABELS)[o['baseline']]} to the image, {steps}{delta}"

    def check(self, o, x):
        if o["approximation"] != "gausslegendre" and o["steps"] < 2:
            raise ValueError(f"Integrated Gradients: a Riemann sum needs steps ≥ 2, got {o['steps']}.")

    def total(self, o, x):
        return o["steps"]

    def steps(self, probe, fn, x, target, o):
        from captum.attr import Saliency

        n = o["steps"]
        weights, alphas = path_rule(o["approximation"], n)
        w = torch.tensor(weights).float().to(x.device)
        base = make_baseline(probe, x, o["baseline"], o["seed"])
        order = spread(n)  # any prefix of the path points spans the whole path
        acc = torch.zeros_like(x)
        seen = 0.0
        pace = Pace(o["batch_size"])
        for i, j in pace.chunks(n):
            idx = order[i:j]
            with pace.timed(j - i):
                pts = torch.cat([base + alphas[k] * (x - base) for k in idx]).requires_grad_()
                g = Saliency(fn).attribute(pts, target=target, abs=False)
                acc += (g * w[idx].view(-1, 1, 1, 1)).sum(0, keepdim=True)
            seen += float(w[idx].sum())
            if j < n:  # a coarser sum over the points so far, scaled to the path's whole weight
                yield Partial(j, acc * (x - base) * (float(w.sum()) / seen))
        raw = acc * (x - base)
        with torch.no_grad():
            ends = fn(torch.cat([x, base]))[:, target].float()
        delta = float(raw.sum()) - float(ends[0] - ends[1])  # completeness: sum = f(image) - f(baseline)
        yield Partial(n, raw, {"delta": abs(delta)})
