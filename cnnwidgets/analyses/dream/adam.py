"""Adam for the dream's parameters: torch's fused Adam kernel, called directly, or written out.

``torch.optim.Adam.step`` runs ~100 Python calls per step (device checks, grouping, hooks), a
noticeable part of what the dream adds to a small layer's forward+backward. :class:`Adam` calls the
kernel behind ``torch.optim.Adam(fused=True)`` itself (one call that reads and writes each tensor
once): the same update to the bit (a test checks it). That kernel is private API
(``torch._fused_adam_``): where it is missing (an older torch on a CPU, as 2.0; a device without it) or
:data:`.backend.PUBLIC_TORCH` is set, the update is written out in five public in-place operations,
``torch.optim.Adam``'s default update (to the bit where torch writes it the same way, else to rounding).
"""
from __future__ import annotations

import math
from typing import Iterable

import torch

from . import backend


def make(params: Iterable[torch.Tensor], lr: float, weight_decay: float = 0.0) -> "Adam":
    """An :class:`Adam` for ``params`` (``step()`` and ``zero_grad()``)."""
    return Adam(params, lr=lr, weight_decay=weight_decay)


class Adam:
    """``Adam(params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=None)`` with ``step()`` and
    ``zero_grad()``, as ``torch.optim.Adam`` (L2 ``weight_decay``; no amsgrad, no param groups).
    ``fused=None`` uses torch's fused kernel when it runs here (else the written-out update); ``fused=False``
    the written-out update; :data:`.backend.PUBLIC_TORCH` rules the fused kernel out in every case."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, fused: bool | None = None):
        self.params = list(params)
        self.lr, (self.beta1, self.beta2), self.eps, self.weight_decay = float(lr), betas, float(eps), float(weight_decay)
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = 0
        self._step_t = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]  # the fused kernel keeps its step counts in tensors
        self.fused = (fused is not False) and _fused_available(self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.steps += 1
        have = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not have:
            return
        if self.fused:
            ps = [self.params[i] for i in have]
            steps = [self._step_t[i] for i in have]
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(ps, [p.grad for p in ps], [self.exp_avg[i] for i in have], [self.exp_avg_sq[i] for i in have],
                               [], steps, amsgrad=False, lr=self.lr, beta1=self.beta1, beta2=self.beta2,
                               weight_decay=self.weight_decay, eps=self.eps, maximize=False, grad_scale=None, found_inf=None)
            return
        bias1 = 1 - self.beta1 ** self.steps
        bias2_sqrt = math.sqrt(1 - self.beta2 ** self.steps)
        for i in have:
            p, m, v = self.params[i], self.exp_avg[i], self.exp_avg_sq[i]
            g = p.grad
            if self.weight_decay:
                g = g.add(p, alpha=self.weight_decay)
            m.lerp_(g, 1 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = v.sqrt().div_(bias2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-self.lr / bias1)


def _fused_available(params: list[torch.Tensor]) -> bool:
    """Whether ``torch._fused_adam_`` may update these parameters here (:func:`.backend.private_ok`: not with
    ``PUBLIC_TORCH``; else tried once per device type on a scratch tensor)."""
    if not params or params[0].dtype != torch.float32:
        return False
    return backend.private_ok("fused_adam", params[0].device, _try_fused)


def _try_fused(device: torch.device) -> bool:
    if not hasattr(torch, "_fused_adam_"):
        return False
    with torch.no_grad():
        p = [torch.zeros(4, device=device)]
        g = [torch.ones_like(p[0])]
        m, v, s = [torch.zeros_like(p[0])], [torch.zeros_like(p[0])], [torch.ones((), device=device)]
        torch._fused_adam_(p, g, m, v, [], s, amsgrad=False, lr=0.1, beta1=0.9, beta2=0.999, weight_decay=0.0,
                           eps=1e-8, maximize=False, grad_scale=None, found_inf=None)
    return bool(torch.isfinite(p[0]).all()) and float(p[0][0]) < 0
