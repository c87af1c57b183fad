"""The dream's Adam: torch.optim.Adam's update, bit for bit, for small parameters."""
import torch

from cnnwidgets.analyses.dream import adam


def test_written_out_adam_equals_torch_adam_bit_for_bit():
    g = torch.Generator().manual_seed(0)
    for wd in (0.0, 1e-6):
        a = torch.randn(3, 40, 21, 2, generator=g).requires_grad_(True)
        b = a.detach().clone().requires_grad_(True)
        ours, theirs = adam.make([a], lr=0.05, weight_decay=wd), torch.optim.Adam([b], lr=0.05, weight_decay=wd)
        assert isinstance(ours, adam.Adam)
        for _ in range(25):
            grad = torch.randn(a.shape, generator=g) * 1e-3
            for opt, p in ((ours, a), (theirs, b)):
                opt.zero_grad(set_to_none=True)
                p.grad = grad.clone()
                opt.step()
        assert torch.equal(a, b)


def test_large_parameters_use_torch_adam():
    p = torch.zeros(adam.SMALL + 1, requires_grad=True)
    opt = adam.make([p], lr=0.1)
    assert isinstance(opt, torch.optim.Adam)
    p.grad = torch.ones_like(p)
    opt.step()
    assert torch.allclose(p, torch.full_like(p, -0.1))
