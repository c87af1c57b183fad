"""The one switch (``CNNWIDGETS_PUBLIC_TORCH=1`` / ``backend.PUBLIC_TORCH``): the dream on torch's public API only
(Adam written out, ``F.grid_sample`` + autograd) gives the same results as the private calls, up to rounding."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from cnnwidgets import dream as D
from cnnwidgets.analyses.dream import adam, backend
from cnnwidgets.analyses.dream import transforms as TR

L = "_blocks.3._project_conv"


@pytest.fixture
def public(monkeypatch):
    """Within the test: the public path only."""
    monkeypatch.setattr(backend, "PUBLIC_TORCH", True)


def _private_used(monkeypatch):
    """Counts the calls of the private ops (so a test can see which path ran)."""
    calls = {"resample": 0, "adam": 0}
    backend.private_ok("grid_sampler_2d", "cpu", TR._private_resample_ok)  # the one-time trials, before counting
    adam._fused_available([torch.zeros(1)])
    real_apply = TR._Resample.apply

    def apply(*a):
        calls["resample"] += 1
        return real_apply(*a)
    monkeypatch.setattr(TR._Resample, "apply", apply)
    if hasattr(torch, "_fused_adam_"):
        real_adam = torch._fused_adam_

        def fused(*a, **k):
            calls["adam"] += 1
            return real_adam(*a, **k)
        monkeypatch.setattr(torch, "_fused_adam_", fused)
    return calls


def test_the_switch_rules_out_every_private_call(monkeypatch, probe):
    calls = _private_used(monkeypatch)
    monkeypatch.setattr(backend, "PUBLIC_TORCH", True)
    last = D.run(probe, D.channel(L, 3), steps=3, size=48)
    assert calls == {"resample": 0, "adam": 0} and np.isfinite(last.objective)
    assert not adam.make([torch.zeros(3, requires_grad=True)], lr=0.1).fused
    assert not adam.Adam([torch.zeros(3, requires_grad=True)], lr=0.1, fused=True).fused  # the switch wins
    monkeypatch.setattr(backend, "PUBLIC_TORCH", False)
    D.run(probe, D.channel(L, 3), steps=3, size=48)
    assert calls["resample"] == 3  # the default: the private resampling (torch has it)
    assert calls["adam"] == (3 if adam._fused_available([torch.zeros(1)]) else 0)


def test_public_resampling_equals_the_private_one_forward_and_backward():
    small = dict(pad_px=2, jitter1=3, jitter2=2, scales=[0.9, 1.1], angles=[7, -5])
    scale = torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64).view(1, 3, 1, 1)
    shift = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64).view(1, 3, 1, 1)
    for n in (1, 2):
        x = torch.rand(n, 3, 17, 21, dtype=torch.float64, requires_grad=True)
        for split in (1, 2, 3):
            for nhwc in (False, True):
                t = TR.one_pass(split=split, **small).normalising(scale, shift, nhwc)
                for seed in range(3):
                    got = []
                    for pub in (False, True):
                        backend.PUBLIC_TORCH = pub
                        try:
                            y = t(x, torch.Generator().manual_seed(seed))
                        finally:
                            backend.PUBLIC_TORCH = False
                        up = torch.rand(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
                        got.append((y, *torch.autograd.grad(y, x, up)))
                    (a, ga), (b, gb) = got
                    torch.testing.assert_close(b, a)
                    torch.testing.assert_close(gb, ga)
                    assert b.is_contiguous(memory_format=torch.channels_last) == nhwc


def test_public_adam_equals_torch_adam(public):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 40, 21, 2, generator=g).requires_grad_(True)
    b = a.detach().clone().requires_grad_(True)
    ours, theirs = adam.make([a], lr=0.05, weight_decay=1e-6), torch.optim.Adam([b], lr=0.05, weight_decay=1e-6)
    assert not ours.fused
    for _ in range(20):
        grad = torch.randn(a.shape, generator=g) * 1e-3
        for opt, p in ((ours, a), (theirs, b)):
            opt.zero_grad(set_to_none=True)
            p.grad = grad.clone()
            opt.step()
    torch.testing.assert_close(a, b)  # float32 rounding


@pytest.mark.parametrize("preset", ["regularized", "naive"])
def test_a_dream_on_the_public_path_gives_the_same_run(monkeypatch, probe, preset):
    """Same seed, both paths: the same objectives step by step and the same image, up to rounding; it ascends."""
    runs = {}
    for pub in (False, True):
        monkeypatch.setattr(backend, "PUBLIC_TORCH", pub)
        runs[pub] = list(D.dream(probe, D.channel(L, 3), steps=8, size=48, seed=4, preset=preset))
    a, b = runs[False], runs[True]
    np.testing.assert_allclose([s.objective for s in b], [s.objective for s in a], rtol=2e-3, atol=2e-3)
    close = torch.isclose(b[-1].image, a[-1].image, rtol=1e-3, atol=1e-3).float().mean()
    assert close > 0.99  # Adam's first move is lr * sign(gradient): a pixel whose gradient is ~0 may flip on rounding
    assert b[-1].objective > b[0].objective


def test_the_environment_variable_sets_the_switch():
    code = "from cnnwidgets.analyses.dream import backend; print(backend.PUBLIC_TORCH)"
    for value, want in (("1", "True"), ("0", "False")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                             env={**__import__("os").environ, "CNNWIDGETS_PUBLIC_TORCH": value})
        assert out.stdout.strip() == want, out.stderr[-2000:]
