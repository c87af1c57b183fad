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


def smooth(n=1, h=64, w=56):
    """A smooth colour image: resampling it once or twice differs only at edges."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([0.5 + 0.4 * torch.sin(4 * xx + 2 * yy), 0.5 + 0.4 * torch.cos(3 * yy), xx * yy])
    return img.expand(n, -1, -1, -1).clone()


def test_one_pass_follows_the_chain_it_replaces():
    """Same draws, same sizes; equal values where the chain is exact (whole-pixel jitters and pads),
    close elsewhere (it interpolates once where the chain interpolates twice)."""
    x = smooth()
    chain, once = TR.compose(TR.standard("each")), TR.one_pass()
    sizes = set()
    for seed in range(12):
        a, b = chain(x, torch.Generator().manual_seed(seed)), once(x, torch.Generator().manual_seed(seed))
        assert a.shape == b.shape
        sizes.add(a.shape[-1])
        assert float((a - b).abs().mean()) < 0.01
    assert len(sizes) > 2  # the random scale changed the size
    # no scaling, no rotation: pad and the two jitters only, an exact whole-pixel copy
    plain = TR.compose([TR.pad(12), TR.jitter(8), TR.random_scale([1.0]), TR.random_rotate([0]), TR.jitter(4)])  # same draws
    shifts = TR.one_pass(scales=[1.0], angles=[0])
    for seed in range(5):
        g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        a = plain(x, g1)
        b = shifts(x, g2)
        torch.testing.assert_close(b, a, atol=1e-4, rtol=0)
    # rotation alone: the same bilinear rotation as rotate()
    torch.testing.assert_close(TR.one_pass(jitter1=1, jitter2=1, scales=[1.0], angles=[7])(x), TR.rotate(TR.pad(12)(x), 7),
                               atol=1e-4, rtol=0)


def test_one_pass_gradient_bands_and_normalised_nhwc_output():
    x = torch.rand(1, 3, 9, 11, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64).view(1, 3, 1, 1)
    shift = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64).view(1, 3, 1, 1)
    small = dict(pad_px=2, jitter1=3, jitter2=2, scales=[0.9, 1.1], angles=[7, -5])
    ref = TR.one_pass(split=1, **small)
    for t in (TR.one_pass(split=2, **small), TR.one_pass(split=3, **small).normalising(scale, shift, channels_last=True)):
        for seed in range(3):
            g = lambda: torch.Generator().manual_seed(seed)  # noqa: E731
            assert torch.autograd.gradcheck(lambda x: t(x, g()), (x,), eps=1e-6, atol=1e-5)
            want = ref(x, g()) if t.scale is None else ref(x, g()) * scale + shift
            torch.testing.assert_close(t(x, g()), want)
    y = t(x, torch.Generator().manual_seed(0))
    assert y.is_contiguous(memory_format=torch.channels_last)
    # a batch: every image gets the same draw
    xs = torch.cat([x.detach(), x.detach().flip(-1)])
    both = TR.one_pass(split=2, **small)(xs, torch.Generator().manual_seed(1))
    torch.testing.assert_close(both[1:], ref(xs[1:], torch.Generator().manual_seed(1)))


def test_one_pass_backward_takes_any_gradient_layout():
    """The backward reads the incoming gradient as overlapping band views: an NHWC gradient (what a
    channels-last network hands back), an NCHW one, an expanded one (``out.sum().backward()``) and a
    batch of two all give the gradient of the plain single-band pass."""
    small = dict(pad_px=2, jitter1=3, jitter2=2, scales=[0.9, 1.1], angles=[7, -5])
    scale = torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64).view(1, 3, 1, 1)
    shift = torch.zeros(1, 3, 1, 1, dtype=torch.float64)
    for n in (1, 2):
        x = torch.rand(n, 3, 10, 12, dtype=torch.float64, requires_grad=True)
        for seed in range(4):
            g = lambda: torch.Generator().manual_seed(seed)  # noqa: E731
            ref = TR.one_pass(split=1, **small).normalising(scale, shift)(x, g())
            up = torch.rand(ref.shape, dtype=torch.float64)
            (want,) = torch.autograd.grad(ref, x, up)
            for split in (2, 3):
                t = TR.one_pass(split=split, **small).normalising(scale, shift, channels_last=True)
                for grad_out in (up, up.contiguous(memory_format=torch.channels_last)):
                    (got,) = torch.autograd.grad(t(x, g()), x, grad_out)
                    torch.testing.assert_close(got, want)
                (got,) = torch.autograd.grad(t(x, g()).sum(), x)
                (want_sum,) = torch.autograd.grad(TR.one_pass(split=1, **small).normalising(scale, shift)(x, g()).sum(), x)
                torch.testing.assert_close(got, want_sum)


def test_one_pass_rounds_its_sizes_up_to_a_multiple_with_zeros():
    x = smooth()
    plain, m32 = TR.one_pass(), TR.one_pass().with_multiple(32)
    for seed in range(10):
        a, b = plain(x, torch.Generator().manual_seed(seed)), m32(x, torch.Generator().manual_seed(seed))
        h, w = a.shape[-2:]
        assert b.shape[-2] % 32 == 0 and b.shape[-1] % 32 == 0 and b.shape[-2] >= h and b.shape[-1] >= w
        torch.testing.assert_close(b[..., :h, :w], a)  # the same image where it was, zeros beyond
        assert float(b[..., h:, :].abs().sum()) == 0 and float(b[..., :, w:].abs().sum()) == 0
    assert sorted(set(TR.output_sizes([m32], 64, 56))) == TR.output_sizes([m32], 64, 56)
    sizes = TR.output_sizes([TR.one_pass()], 64, 56)  # exactly the sizes the scales give
    seen = {tuple(plain(x, torch.Generator().manual_seed(s)).shape[-2:]) for s in range(60)}
    assert seen <= set(sizes) and len(sizes) >= 3


def test_one_pass_at_a_fixed_size_is_the_transformed_image_resampled_to_it():
    """For models that take one size only: the same draws, the image resampled to the model's size in the same pass
    (close to resizing the transformed image afterwards, which interpolates twice)."""
    import torch.nn.functional as F

    x = smooth(h=64, w=64)
    plain, fixed = TR.one_pass(angles=[0]), TR.one_pass(angles=[0]).with_multiple(1, (64, 64))
    for seed in range(8):
        a, b = plain(x, torch.Generator().manual_seed(seed)), fixed(x, torch.Generator().manual_seed(seed))
        assert b.shape[-2:] == (64, 64)
        ref = F.interpolate(a, size=(64, 64), mode="bilinear", align_corners=True)
        assert float((b - ref).abs().mean()) < 0.02
    g = TR.to_size(TR.standard("each"), 64, 64)
    assert TR.compose(g)(x, torch.Generator().manual_seed(0)).shape[-2:] == (64, 64)


def test_small_images_get_proportionally_small_pads_and_jitters():
    """Lucent's pixel amounts are meant for ~224 px: a 28 px digit gets a 3 px pad and 2 px jitters, not 12 and 8."""
    assert TR.standard(size=224)[0].pad_px == 12 and TR.standard(size=128)[0].jitter1 == 8
    small = TR.standard(size=28)[0]
    assert (small.pad_px, small.jitter1, small.jitter2) == (3, 2, 2)
    sizes = TR.output_sizes(TR.standard(size=28), 28, 28)
    assert max(max(s) for s in sizes) <= 40  # 28 + 2 x 3, scaled by at most 1.1
    each = TR.standard("each", size=64)
    assert TR.compose(each)(img(1, 64), torch.Generator().manual_seed(0)).shape[-1] <= 64 + 12 + 8
