"""Adam for the dream's parameters: written out in five in-place tensor operations when they are small.

For a small parameter (one image's spectrum: 150 k numbers) the update is ``torch.optim.Adam``'s
(default settings, L2 ``weight_decay``) to the bit: a test checks it. ``torch.optim.Adam.step``
runs ~100 Python calls per step (device checks, grouping, hooks); right after a network's backward,
with the interpreter's caches cold, they took 0.25-0.3 ms on the benchmark's CPU, a tenth of what
the dream adds to a small layer's forward+backward. Large parameters (an atlas) go to torch's fused
kernel, which reads and writes each tensor once where the five operations take ~18 passes.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch


SMALL = 1 << 20  #: parameters up to this many numbers in all take the written-out path


def make(params: Iterable[torch.Tensor], lr: float, weight_decay: float = 0.0):
    """An Adam for ``params``: :class:`Adam` when they are small, else ``torch.optim.Adam`` with its
    fused kernel where the device has one (both have ``step()`` and ``zero_grad()``)."""
    params = list(params)
    if sum(p.numel() for p in params) <= SMALL:
        return Adam(params, lr=lr, weight_decay=weight_decay)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


class Adam:
    """``Adam(params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)`` with ``step()`` and
    ``zero_grad()``, as ``torch.optim.Adam`` (no amsgrad, no param groups)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.params = list(params)
        self.lr, (self.beta1, self.beta2), self.eps, self.weight_decay = float(lr), betas, float(eps), float(weight_decay)
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        bias1 = 1 - self.beta1 ** self.steps
        bias2_sqrt = math.sqrt(1 - self.beta2 ** self.steps)
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            g = p.grad
            if g is None:
                continue
            if self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = v.sqrt().div_(bias2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / bias1)
