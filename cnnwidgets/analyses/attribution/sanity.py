"""Sanity check for attribution maps (Adebayo et al., 2018, "Sanity Checks for Saliency Maps").

Randomise the model's weights from the top (logits) down, one group of layers more at each step
(cascading), and recompute the map each time. A map that stays the same while the model is destroyed
is not explaining the model. Runs on :meth:`Probe.copy`: the user's model is never touched.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import nn

from ...runner import Step
from .api import attribute_steps
from .common import check_classifier, top_classes


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps (ties get average ranks)."""
    from scipy.stats import spearmanr

    a, b = np.ravel(a), np.ravel(b)
    if np.all(a == a[0]) or np.all(b == b[0]):
        return 0.0
    return float(spearmanr(a, b)[0])


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two maps, each scaled to [0, 1] first."""
    from skimage.metrics import structural_similarity

    def unit(m):
        m = np.asarray(m, np.float64)
        r = m.max() - m.min()
        return (m - m.min()) / r if r > 0 else np.zeros_like(m)

    return float(structural_similarity(unit(a), unit(b), data_range=1.0))


def _weighted(probe) -> list:
    """Layers with their own weights (conv, linear, norm), top (output side) first."""
    out = []
    for l in reversed(list(probe.all_layers)):
        own = [p for p in l.module.parameters(recurse=False)]
        if own and isinstance(l.module, (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm)):
            out.append(l)
    return out


def cascade_groups(probe, steps: int = 5) -> list[list[str]]:
    """Layer names randomised at each step: the classifier alone first, then the rest, top down,
    in ``steps - 1`` groups of convolutions (each norm layer goes with the conv before it)."""
    layers = _weighted(probe)
    if not layers:
        raise ValueError(f"{probe.name} has no conv/linear layers to randomise.")
    blocks: list[list[str]] = []
    pending: list[str] = []
    for l in layers:  # top first: a norm is met before its conv
        pending.append(l.name)
        if not isinstance(l.module, nn.modules.batchnorm._BatchNorm):
            blocks.append(pending)
            pending = []
    if pending:
        blocks[-1].extend(pending) if blocks else blocks.append(pending)
    head, rest = blocks[0], blocks[1:]
    groups = [head]
    k = max(1, steps - 1)
    if rest:
        edges = np.linspace(0, len(rest), min(k, len(rest)) + 1).round().astype(int)
        for a, b in zip(edges[:-1], edges[1:]):
            groups.append([n for blk in rest[a:b] for n in blk])
    return groups


@torch.no_grad()
def _randomize(module: nn.Module, gen: torch.Generator) -> None:
    for name, p in module.named_parameters(recurse=False):
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            p.copy_(torch.ones_like(p) if name == "weight" else torch.zeros_like(p))
        else:
            fan_in = max(1, p[0].numel()) if p.ndim > 1 else max(1, p.numel())
            p.copy_((torch.randn(p.shape, generator=gen) / np.sqrt(fan_in)).to(p.device, p.dtype))
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
        module.running_mean.zero_()
        module.running_var.fill_(1.0)


def sanity_check(probe, image, method: str = "saliency", target: int | None = None, steps: int = 5,
                 seed: int = 0, progress: bool = False, options: dict | None = None, stop=None,
                 **opts) -> Iterator[Step]:
    """Cascading randomisation: yields ``Step(i, total, Attribution, info)`` for the trained model
    (i = 0) and after each group of top layers is re-initialised (random normal / sqrt(fan-in), from a
    generator seeded with ``seed``). ``info``: ``randomized`` (layer names so far), ``group`` (this step's),
    ``label``, ``spearman`` and ``ssim`` of the absolute map against the trained model's, ``final`` (True).
    ``target`` stays the trained model's top-1. ``progress=True`` also yields the map being computed as it
    sharpens (``info["final"]`` False, ``value`` partial or None), so a job can stop between two of them.
    The method's options come as keywords or as ``options={...}`` (Integrated Gradients' ``steps`` is not the
    number of randomisation steps). ``stop``: an Event that ends the job within one layer (see ``attribute_steps``)."""
    opts = {**(options or {}), **opts}
    check_classifier(probe)
    attribute_steps(probe, image, method, target, **opts)  # method, options and target checked before any work
    return _cascade(probe, image, method, target, steps, seed, progress, opts, stop)


def _cascade(probe, image, method, target, steps, seed, progress, opts, stop) -> Iterator[Step]:
    if target is None:
        target = top_classes(probe, image, 1)[0][0]
    clone = probe.copy()  # the weights copied once; the model itself is never touched
    groups = cascade_groups(clone, steps)
    total = len(groups)
    gen = torch.Generator().manual_seed(int(seed))
    ref = None
    done: list[str] = []
    for i in range(total + 1):
        info = {"randomized": list(done), "group": [], "label": "trained model"}
        if i:
            g = groups[i - 1]
            for name in g:
                _randomize(clone.layer(name).module, gen)
            done = done + g
            short = ".".join(g[-1].split(".")[:2])
            info = {"randomized": list(done), "group": list(g),
                    "label": f"randomised down to {short}" if len(done) > 1 else f"randomised {short}"}
        a = None
        for s in attribute_steps(clone, image, method, target, stop=stop, **opts):
            a = s.value
            if progress and (a is None or a.partial):
                yield Step(i, total, a, {**info, "final": False, "status": s.info["status"]})
        if a is None or a.partial:  # stopped
            return
        m = a.as_map("abs")
        if ref is None:
            ref = m
        yield Step(i, total, a, {**info, "spearman": spearman(ref, m) if i else 1.0, "ssim": ssim(ref, m) if i else 1.0,
                                 "final": True})


cascading_randomization = sanity_check
