"""The folded copy's padding: static zero padding (even or not) moves into the convolution, same outputs."""
import copy

import pytest
import torch
from torch import nn
import torch.nn.functional as F

import cnnwidgets as cw
from cnnwidgets.fold import absorb_static_padding


class StaticSame(nn.Conv2d):
    """As EfficientNet ports write TensorFlow's 'SAME': a pad module, then a convolution without padding."""

    def __init__(self, cin, cout, k, stride, pad):
        super().__init__(cin, cout, k, stride)
        self.static_padding = nn.ZeroPad2d(pad)

    def forward(self, x):
        return F.conv2d(self.static_padding(x), self.weight, self.bias, self.stride, self.padding)


def test_symmetric_static_padding_moves_into_the_convolution():
    torch.manual_seed(0)
    m = nn.Sequential(StaticSame(3, 4, 3, 1, (1, 1, 1, 1)), nn.ReLU(), StaticSame(4, 4, 3, 1, (2, 2, 0, 0)))
    x = torch.rand(2, 3, 17, 16)
    before = m(x)
    assert absorb_static_padding(m) == 2
    assert isinstance(m[0].static_padding, nn.Identity) and m[0].padding == (1, 1) and m[0].weight.shape[-2:] == (3, 3)
    assert m[2].padding == (0, 2)
    torch.testing.assert_close(m(x), before)


@pytest.mark.parametrize("k,stride,pad", [(3, 2, (0, 1, 0, 1)), (5, 2, (1, 2, 1, 2)), (3, 1, (1, 0, 2, 0)),
                                          (4, 2, (1, 2, 0, 3)), (1, 2, (0, 1, 0, 0))])
def test_uneven_static_padding_grows_the_kernel_by_zero_taps(k, stride, pad):
    """TensorFlow's 'same' before a stride-2 convolution pads one pixel more right and below; any uneven
    pair works, at even and odd input sizes, and the gradient with respect to the input is the same too."""
    torch.manual_seed(0)
    m = StaticSame(3, 5, k, stride, pad)
    for size in [(16, 16), (17, 15)]:
        x = torch.rand(2, 3, *size, requires_grad=True)
        before = m(x)
        (g_before,) = torch.autograd.grad(before.square().sum(), x)
        m2 = copy.deepcopy(m)
        assert absorb_static_padding(m2) == 1 and isinstance(m2.static_padding, nn.Identity)
        left, right, top, bottom = pad
        assert m2.padding == (max(top, bottom), max(left, right))
        assert m2.weight.shape[-2:] == (k + abs(bottom - top), k + abs(right - left))
        after = m2(x)
        (g_after,) = torch.autograd.grad(after.square().sum(), x)
        assert after.shape == before.shape
        torch.testing.assert_close(after, before)
        torch.testing.assert_close(g_after, g_before)


def test_a_dilated_convolution_keeps_an_uneven_pad():
    m = StaticSame(3, 4, 3, 1, (0, 1, 0, 1))
    m.dilation = (2, 2)
    assert absorb_static_padding(m) == 0 and isinstance(m.static_padding, nn.ZeroPad2d)


def test_the_default_models_folded_copy_pads_inside_its_convolutions(probe):
    f = probe.folded()
    before = [n for n, m in probe.model.named_modules() if isinstance(m, nn.ZeroPad2d)]
    pads = [n for n, m in f.model.named_modules() if isinstance(m, nn.ZeroPad2d)]
    assert before and not pads  # the stride-2 convolutions' uneven pads too
    x = probe.prepare(cw.sample_batch(2, seed=3))
    torch.testing.assert_close(f.forward(x, preprocess=False), probe.forward(x, preprocess=False), rtol=1e-4, atol=1e-4)
