"""The weights' fingerprint, which every panel reads to know its results are stale: it changes with any single bit of
any weight or buffer, whatever the dtype, shape or layout, and stays the same while nothing changes."""
import pytest
import torch
from torch import nn

from cnnwidgets import view

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.uint8, torch.bool,
          torch.complex64]


def _model(dtype, shape):
    m = nn.Module()
    g = torch.Generator().manual_seed(0)
    t = torch.randn(*shape, generator=g) if dtype != torch.bool else torch.rand(*shape, generator=g) > 0.5
    m.register_buffer("b", t.to(dtype))
    return m


def _flip_one_bit(t: torch.Tensor, index: int, bit: int) -> None:
    """Flip one bit of element ``index`` (in memory order) of ``t``, in place, as a ``.data`` edit would."""
    raw = t.data.reshape(-1).view(torch.uint8) if t.is_contiguous() else None
    assert raw is not None
    byte = index * t.element_size() + bit // 8
    raw[byte] ^= 1 << (bit % 8)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(1,), (3,), (5, 7), (64, 3, 3, 3)], ids=str)
def test_one_bit_anywhere_changes_the_fingerprint(dtype, shape):
    m = _model(dtype, shape)
    before = view.fingerprint(m)
    assert view.fingerprint(m) == before, "reading must not change it"
    n = m.b.numel()
    for index in sorted({0, n // 2, n - 1}):
        for bit in (0, 8 * m.b.element_size() - 1):
            if dtype == torch.bool and bit:  # a bool is one byte of which only bit 0 is a value
                continue
            _flip_one_bit(m.b, index, bit)
            assert view.fingerprint(m) != before, (index, bit)
            _flip_one_bit(m.b, index, bit)
            assert view.fingerprint(m) == before, "the same bits give the same fingerprint"


def test_a_non_contiguous_parameter_and_equal_models():
    a, b = nn.Linear(6, 4), nn.Linear(6, 4)
    b.load_state_dict(a.state_dict())
    assert view.fingerprint(a) != view.fingerprint(b), "the structure (other tensors) is part of it"
    a.weight = nn.Parameter(torch.randn(6, 4).t())  # a transposed view: not contiguous
    before = view.fingerprint(a)
    a.weight.data[3, 1] += 1.0
    assert view.fingerprint(a) != before


def test_an_edit_through_data_that_bumps_no_version_is_seen():
    m = nn.Conv2d(3, 8, 3)
    before, version = view.fingerprint(m), m.weight._version
    m.weight.data.mul_(1.5)
    assert m.weight._version == version, "the premise: .data edits bump no autograd version"
    assert view.fingerprint(m) != before


@pytest.mark.parametrize("n", [6, 7, 100_000], ids=["words-even", "odd-bytes", "large"])
def test_flipping_signs_in_step_is_seen(n):
    """``w.mul_(-1)`` / ``w.neg_()`` on a tensor with as many positive as negative values: in a sum of bit patterns
    the sign bits' changes cancel out; the fingerprint must still change (the panels' saliency maps would not)."""
    g = torch.Generator().manual_seed(1)
    v = torch.rand(n, generator=g) + 0.1
    v[: n // 2] *= -1  # as many negative as positive values (one more positive when n is odd)
    m = nn.Module()
    m.w = nn.Parameter(v)
    before = view.fingerprint(m)
    with torch.no_grad():
        m.w.neg_()
    assert view.fingerprint(m) != before
