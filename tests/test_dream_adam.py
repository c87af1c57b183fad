"""The dream's Adam: torch.optim.Adam's update, bit for bit (fused kernel and written-out paths)."""
import inspect

import pytest
import torch

from cnnwidgets.analyses.dream import adam


def _run(fused: bool, wd: float, steps: int = 25):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 40, 21, 2, generator=g).requires_grad_(True)
    b = a.detach().clone().requires_grad_(True)
    ours = adam.Adam([a], lr=0.05, weight_decay=wd, fused=fused)
    theirs = torch.optim.Adam([b], lr=0.05, weight_decay=wd, fused=fused or None)
    for _ in range(steps):
        grad = torch.randn(a.shape, generator=g) * 1e-3
        for opt, p in ((ours, a), (theirs, b)):
            opt.zero_grad(set_to_none=True)
            p.grad = grad.clone()
            opt.step()
    return a, b


def _torch_lerps() -> bool:
    """Whether this torch's own (single-tensor) Adam updates the first moment with ``lerp_`` as ours does (torch 2.0
    wrote ``mul_(beta1).add_(grad, alpha=1 - beta1)``: the same update, rounded differently)."""
    try:
        return "lerp_" in inspect.getsource(torch.optim.adam._single_tensor_adam)
    except (AttributeError, OSError, TypeError):
        return False


@pytest.mark.parametrize("wd", [0.0, 1e-6])
def test_written_out_adam_equals_torch_adam_bit_for_bit(wd):
    a, b = _run(False, wd)
    torch.testing.assert_close(a, b)  # float32 rounding
    if _torch_lerps():
        assert torch.equal(a, b)


@pytest.mark.parametrize("wd", [0.0, 1e-6])
def test_fused_adam_equals_torch_fused_adam_bit_for_bit(wd):
    if not adam._fused_available([torch.zeros(1)]):
        pytest.skip("this torch has no fused Adam kernel for the CPU")
    a, b = _run(True, wd)
    assert torch.equal(a, b)
    assert adam.make([a], lr=0.1).fused  # what the dream uses by default here


def test_a_parameter_without_gradient_is_left_alone():
    p, q = torch.ones(5, requires_grad=True), torch.ones(5, requires_grad=True)
    opt = adam.make([p, q], lr=0.1)
    p.grad = torch.ones(5)
    opt.step()
    assert torch.allclose(p, torch.full((5,), 0.9)) and torch.equal(q, torch.ones(5))
