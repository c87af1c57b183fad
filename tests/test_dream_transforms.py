"""Robustness transforms of the dream: geometry, sizes and determinism."""
import math

import torch

from cnnwidgets.analyses.dream import transforms as TR


def img(n=1, s=16, seed=0):
    return torch.rand(n, 3, s, s, generator=torch.Generator().manual_seed(seed))


def test_rotate_90_degrees_moves_pixel_centres_onto_pixel_centres():
    x = img()
    torch.testing.assert_close(TR.rotate(x, 0), x)
    r = TR.rotate(x, 90)
    # one of the two quarter turns, exactly (pixel centres map onto pixel centres)
    assert min(float((r - torch.rot90(x, k, (2, 3))).abs().max()) for k in (1, -1)) < 1e-5


def test_shift_and_pad():
    x = img()
    s = TR.shift(x, 3, 2)
    torch.testing.assert_close(s[..., 2:, 3:], x[..., :-2, :-3])
    assert float(s[..., :2, :].abs().max()) == 0 and float(s[..., :, :3].abs().max()) == 0
    p = TR.pad(4)(x)
    assert p.shape[-1] == 24 and torch.all(p[..., :4, :] == 0.5)


def test_random_scale_sizes_and_standard_is_seeded():
    x = img(s=100)
    g = torch.Generator().manual_seed(0)
    sizes = {TR.random_scale([0.9, 1.1])(x, g).shape[-1] for _ in range(20)}
    # shrunk images are padded back; enlarged ones grow to ceil(s * size), Lucent's rounding (ceil(110.00000000000001))
    assert sizes == {100, math.ceil(1.1 * 100)}
    f = TR.compose(TR.standard())
    a = f(img(2, 64), torch.Generator().manual_seed(5))
    b = f(img(2, 64), torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b)
    assert a.shape[0] == 2 and a.shape[-1] >= 64 + 24 - 1
