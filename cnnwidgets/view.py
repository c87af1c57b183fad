"""The Probe's private view of a user's model: the same modules and weights, never the user's objects.

Every forward cnnwidgets runs goes through a *view*: a structural copy of the model whose modules are
new objects (so hooks, the eval flag and ``requires_grad=False`` are its own) and whose parameters and
buffers alias the user's storage (so it sees the latest weights, costs no copy, and a training step in
another cell neither breaks it nor is broken by it: the aliases have their own autograd version
counters). Where the Probe runs on another device or in another precision than the model (a CPU model
on a GPU Probe, a bfloat16 model), the view reads float32 copies on the Probe's device instead, which
:meth:`Mirror.sync` refreshes when the weights change.

:func:`fingerprint` tells when the weights changed, including edits through ``.data`` (pruning code,
``w.data.mul_(...)``, ``w.data = t``) that bump no autograd version.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np
import torch
from torch import nn

from . import hooks


def _keep_hook(hook) -> bool:
    """Forward pre-hooks a view keeps: the ones that compute a weight (old-style weight_norm / spectral_norm),
    without which the module cannot run. A user's own hooks (recording, printing) stay on the user's model."""
    mod = type(hook).__module__ or ""
    return mod.startswith(("torch.nn.utils.weight_norm", "torch.nn.utils.spectral_norm"))


def modules_and_tensors(model: nn.Module):
    """Every module (each once, shared ones too) and every parameter and buffer of ``model``."""
    mods = list(model.modules())
    tensors = []
    for m in mods:
        tensors += [t for t in m._parameters.values() if t is not None]
        tensors += [t for t in m._buffers.values() if t is not None]
    return mods, tensors


def structure_key(model: nn.Module) -> tuple:
    """Cheap: changes when a module, tensor or plain attribute (``model.use_attention = False``) is replaced, or
    a tensor's storage (``w.data = t``), shape or device changes; not when values change in place (see
    :func:`fingerprint`) nor when the model is switched between train and eval."""
    mods, tensors = modules_and_tensors(model)
    attrs = tuple(id(v) for m in mods for k, v in m.__dict__.items() if k != "training")
    return (tuple(map(id, mods)), attrs, tuple((id(t), t.data_ptr(), t.shape, t.dtype, t.device) for t in tensors))


#: below this many bytes a CPU tensor is summed by numpy (less overhead per call than torch's ops)
_SMALL = 1 << 18


def _digest(t: torch.Tensor) -> list:
    """Two numbers that change when ``t``'s values change: the sum of its bytes read as 64-bit integers, wrapping
    around (any single bit; exact and order-free), and, for floating tensors, the sum of its values (which weighs
    each element by its size, so edits that move sign bits in step, ``w.mul_(-1)``, cannot cancel out as they can
    in a wrapping sum). Python numbers for small CPU tensors, 0-d tensors on ``t``'s device otherwise."""
    flat = t.detach().contiguous().reshape(-1)
    b = flat.view(torch.uint8)
    n8 = b.numel() // 8 * 8
    if flat.device.type == "cpu" and b.numel() < _SMALL:
        a = b.numpy()
        out = [int(a[:n8].view(np.uint64).sum(dtype=np.uint64)) + int(a[n8:].sum(dtype=np.uint64))]
        if t.is_complex():
            out.append(complex(flat.numpy().sum(dtype=np.complex128)))
        elif t.is_floating_point():
            v = flat.numpy() if flat.dtype != torch.bfloat16 else flat.float().numpy()
            out.append(float(v.sum(dtype=np.float64)))
        return out
    out = [b[:n8].view(torch.int64).sum() + b[n8:].sum(dtype=torch.int64)]
    if t.is_complex():
        out.append(torch.view_as_real(flat).sum().to(torch.float64))
    elif t.is_floating_point():
        out.append(flat.sum(dtype=torch.float32 if t.element_size() < 4 else None).to(torch.float64))
    return out


def fingerprint(model: nn.Module) -> str:
    """A short hex digest of the model's structure and of every bit of its weights and buffers.

    Reads every weight twice (its cost: ``benchmarks/private_view.py``); catches in-place edits that
    bump no autograd version (``w.data.mul_(2)``, ``w.data[mask] = 0``, ``w.data.neg_()``) as well as training
    steps, ``load_state_dict`` and replaced tensors or modules."""
    mods, tensors = modules_and_tensors(model)
    h = hashlib.blake2b(digest_size=16)
    h.update(str(hash(structure_key(model))).encode())
    sums = [x for t in tensors for x in _digest(t)]
    kinds = {(x.device, x.dtype) for x in sums if isinstance(x, torch.Tensor)}
    for device, dtype in kinds:  # one transfer per device and kind of sum
        picked = [i for i, x in enumerate(sums) if isinstance(x, torch.Tensor) and (x.device, x.dtype) == (device, dtype)]
        for i, v in zip(picked, torch.stack([sums[i] for i in picked]).tolist()):
            sums[i] = v
    h.update(repr(sums).encode())
    return h.hexdigest()


class Mirror:
    """Where each user tensor is read from in views: the tensor itself (same device, float32 or not floating),
    or a float32 copy on ``device`` that :meth:`sync` refreshes."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.copies: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(user tensor) -> (user tensor, copy)

    def _same_device(self, t: torch.Tensor) -> bool:
        return t.device.type == self.device.type and (self.device.index is None or t.device.index == self.device.index)

    def source(self, t: torch.Tensor) -> torch.Tensor:
        """The tensor a view aliases for user tensor ``t``."""
        if self._same_device(t) and not (t.is_floating_point() and t.dtype != torch.float32):
            return t
        hit = self.copies.get(id(t))
        if hit is None or hit[0] is not t or hit[1].shape != t.shape:
            dtype = torch.float32 if t.is_floating_point() else t.dtype
            hit = (t, t.detach().to(self.device, dtype, copy=True))
            self.copies[id(t)] = hit
        return hit[1]

    def sync(self) -> None:
        """Copy the user's current values into every mirrored tensor."""
        with torch.no_grad():
            for t, c in self.copies.values():
                c.copy_(t.detach())

    @property
    def active(self) -> bool:
        return bool(self.copies)


def build(model: nn.Module, mirror: Mirror, clone: bool = False) -> nn.Module:
    """A view of ``model``: new module objects (shared submodules stay shared), in eval mode, with no hooks
    but the weight-computing ones, whose parameters (``requires_grad=False``) and buffers alias
    ``mirror.source(t)``'s storage; ``clone=True`` gives them their own copy instead (:meth:`Probe.copy`)."""
    memo: dict[int, nn.Module] = {}

    def tensor(t, param):
        src = mirror.source(t).detach()
        data = src.clone() if clone else src.data  # .data: an alias with its own version counter
        return nn.Parameter(data, requires_grad=False) if param else data

    def copy(mod: nn.Module) -> nn.Module:
        hit = memo.get(id(mod))
        if hit is not None:
            return hit
        new = mod.__class__.__new__(mod.__class__)
        memo[id(mod)] = new
        d = dict(mod.__dict__)
        d["_parameters"] = {k: None if p is None else tensor(p, True) for k, p in mod._parameters.items()}
        d["_buffers"] = {k: None if b is None else tensor(b, False) for k, b in mod._buffers.items()}
        d["_modules"] = {k: None if s is None else copy(s) for k, s in mod._modules.items()}
        for name in hooks.HOOK_DICTS:
            if name in d:
                d[name] = OrderedDict((k, h) for k, h in d[name].items()
                                      if name == "_forward_pre_hooks" and _keep_hook(h))
        d["training"] = False
        new.__dict__ = d
        return new

    return copy(model)
