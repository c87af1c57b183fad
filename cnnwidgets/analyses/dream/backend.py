"""The one switch between torch's public API and the two private calls the dream makes for speed.

The dream's step makes two calls below torch's public API, each with a public equivalent:

- :mod:`.adam` calls ``torch._fused_adam_`` (the kernel behind ``torch.optim.Adam(fused=True)``);
  the public path writes the same update out in in-place tensor ops.
- :mod:`.transforms` resamples with ``torch.grid_sampler_2d`` and its backward
  ``torch.ops.aten.grid_sampler_2d_backward`` (the ATen ops behind ``F.grid_sample``, called directly
  so the backward can read the gradient in place); the public path is ``F.grid_sample`` and autograd.

Both give the same results up to rounding (``tests/test_dream_public_torch.py`` checks it on every run).
:data:`PUBLIC_TORCH` (environment variable ``CNNWIDGETS_PUBLIC_TORCH=1``, or set it at run time) makes the
dream use only the public paths. Where a private call is missing or does not behave as expected (another
torch version, another device), the public path is used without being asked (:func:`private_ok`).
"""
from __future__ import annotations

import os

import torch


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


#: True: the dream uses only torch's public API (slower, same results up to rounding)
PUBLIC_TORCH: bool = _env_flag("CNNWIDGETS_PUBLIC_TORCH")

_checked: dict = {}


def private_ok(name: str, device: torch.device | str, probe) -> bool:
    """Whether private call ``name`` may be used on ``device``: False when :data:`PUBLIC_TORCH` is set, else
    ``probe(device)`` (a small trial against the public path), run once per name and device type."""
    if PUBLIC_TORCH:
        return False
    key = (name, torch.device(device).type)
    hit = _checked.get(key)
    if hit is None:
        try:
            hit = bool(probe(torch.device(device)))
        except Exception:  # missing op, changed signature: the public path
            hit = False
        _checked[key] = hit
    return hit
