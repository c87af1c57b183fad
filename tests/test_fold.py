"""The folded copy's padding: symmetric static zero padding moves into the convolution, same outputs."""
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
    m = nn.Sequential(StaticSame(3, 4, 3, 1, (1, 1, 1, 1)), nn.ReLU(), StaticSame(4, 4, 3, 2, (0, 1, 0, 1)))
    x = torch.rand(2, 3, 17, 16)
    before = m(x)
    assert absorb_static_padding(m) == 1  # the stride-2 conv pads one side only: it keeps its pad module
    assert isinstance(m[0].static_padding, nn.Identity) and m[0].padding == (1, 1)
    assert isinstance(m[2].static_padding, nn.ZeroPad2d)
    torch.testing.assert_close(m(x), before)


def test_the_default_models_folded_copy_pads_inside_its_convolutions(probe):
    f = probe.folded()
    pads = [n for n, m in f.model.named_modules() if isinstance(m, nn.ZeroPad2d)]
    before = [n for n, m in probe.model.named_modules() if isinstance(m, nn.ZeroPad2d)]
    assert 0 < len(pads) < len(before)  # the stride-2 convolutions keep theirs
    x = probe.prepare(cw.sample_batch(2, seed=3))
    torch.testing.assert_close(f.forward(x, preprocess=False), probe.forward(x, preprocess=False), rtol=1e-4, atol=1e-4)
