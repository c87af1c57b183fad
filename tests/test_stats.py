"""cnnwidgets.analyses.stats: statistics and histograms equal numpy's; the channel/page bookkeeping."""
import numpy as np
import pytest
import torch
import torchvision

from cnnwidgets.analyses import stats
from cnnwidgets.models import load_model


def test_describe_equals_numpy():
    rng = np.random.default_rng(0)
    a = rng.normal(0.3, 2.0, size=(16, 3, 5, 5)).astype(np.float32)
    a[0, 0] = 0
    s = stats.describe(torch.from_numpy(a))
    assert s.count == a.size
    assert s.mean == pytest.approx(float(a.astype(np.float64).mean()), rel=1e-12)
    assert s.std == pytest.approx(float(a.astype(np.float64).std(ddof=1)), rel=1e-12)  # ddof=1, as seed 003
    assert (s.min, s.max) == (float(a.min()), float(a.max()))
    assert s.zeros == pytest.approx(float((a == 0).mean()))
    assert s.finite and s.nan == 0 and s.inf == 0


def test_describe_counts_nan_and_inf_and_ignores_them():
    a = np.array([1.0, 2.0, np.nan, np.inf, -np.inf, 0.0, 3.0], np.float32)
    s = stats.describe(a)
    f = np.array([1.0, 2.0, 0.0, 3.0])
    assert (s.nan, s.inf) == (1, 2)
    assert s.mean == pytest.approx(f.mean()) and s.std == pytest.approx(f.std(ddof=1))
    assert (s.min, s.max) == (0.0, 3.0)
    assert s.zeros == pytest.approx(1 / 7)
    assert not s.finite


@pytest.mark.parametrize("bins", [50, 7])
def test_histogram_counts_equal_numpy(bins):
    a = np.random.default_rng(1).standard_cauchy(10_000).astype(np.float32)
    h = stats.histogram(torch.from_numpy(a), bins)
    counts, edges = np.histogram(a, bins)
    np.testing.assert_array_equal(h.counts, counts)
    np.testing.assert_allclose(h.edges, edges)
    assert h.counts.sum() == a.size and len(h.centers) == bins


def test_histogram_leaves_out_nonfinite_and_counts_them():
    a = np.array([0.0, 1.0, 1.0, 2.0, np.nan, np.inf], np.float32)
    h = stats.histogram(a, 4)
    np.testing.assert_array_equal(h.counts, np.histogram(a[:4], 4)[0])
    assert (h.nan, h.inf) == (1, 1)


def test_parameter_table_is_every_state_dict_entry_but_num_batches_tracked():
    model = torchvision.models.resnet18(weights=None)
    rows = stats.parameter_table(model)
    sd = model.state_dict()
    expected = [k for k in sd if "num_batches_tracked" not in k]
    assert [r.name for r in rows] == expected
    r = next(r for r in rows if r.name == "layer1.0.conv1.weight")
    w = sd["layer1.0.conv1.weight"].numpy().astype(np.float64)
    assert r.shape == (64, 64, 3, 3) and r.module == "layer1.0.conv1" and r.kind == "weight" and r.trainable
    assert r.stats.mean == pytest.approx(w.mean()) and r.stats.std == pytest.approx(w.std(ddof=1))
    assert not next(r for r in rows if r.name == "bn1.running_var").trainable


def test_sort_rows():
    rows = stats.parameter_table(load_model())
    by_std = stats.sort_rows(rows, "std", descending=True)
    stds = [r.stats.std for r in by_std if r.stats.std == r.stats.std]
    assert stds == sorted(stds, reverse=True)
    by_size = stats.sort_rows(rows, "size")
    assert [r.stats.count for r in by_size] == sorted(r.stats.count for r in rows)
    with pytest.raises(ValueError, match="Sort by one of"):
        stats.sort_rows(rows, "colour")


def test_dead_channels_order_and_visible():
    a = np.zeros((5, 4, 4), np.float32)
    a[1] = 2.0
    a[3] = 1.0
    a[4, 0, 0] = 5.0  # mean 5/16
    np.testing.assert_array_equal(stats.dead_channels(a), [True, False, True, False, False])
    np.testing.assert_array_equal(stats.channel_order(a, "mean"), [1, 3, 4, 0, 2])  # ties by index
    vis, dead = stats.visible_channels(a, "mean", hide_dead=True)
    np.testing.assert_array_equal(vis, [1, 3, 4])
    assert dead == 2
    np.testing.assert_allclose(stats.channel_means(a), a.reshape(5, -1).mean(1))


def test_grid_plan_pages_cover_every_channel_once():
    plan = stats.plan_grid(2048, 7, 7)
    assert plan.pages == 8 and plan.scale == 1
    seen = [i for k in range(plan.pages) for i in plan.page(k)]
    assert seen == list(range(2048))
    assert plan.label(0) == "channels 1–256 of 2048" and plan.label(7) == "channels 1793–2048 of 2048"
    odd = stats.plan_grid(300, 7, 7)
    assert [len(odd.page(k)) for k in range(odd.pages)] == [256, 44]
    with pytest.raises(IndexError):
        plan.page(8)


def test_grid_plan_scales_large_maps_and_maps_pixels_to_tiles():
    plan = stats.plan_grid(64, 224, 224)  # vgg16 features.0: 3.2 M pixels
    assert plan.scale > 1 and plan.pages == 1
    th, tw = plan.tile_hw
    assert 64 * th * tw <= 2**18
    cols = plan.cols(0)
    assert plan.tile_at(0, 0, 0) == 0
    assert plan.tile_at(0, (tw + 1) * 2 + 1, (th + 1) * 3 + 1) == 3 * cols + 2
    assert plan.tile_at(0, tw + 0.5, 0) == 0  # the gap after a tile counts for it
    assert plan.tile_at(0, (tw + 1) * cols + 2, 0) is None  # right of the grid
    assert plan.tile_at(0, 0, (th + 1) * 8 + 2) is None  # below the last row


def test_downsample_is_block_mean():
    a = np.arange(2 * 5 * 5, dtype=np.float32).reshape(2, 5, 5)
    d = stats.downsample(a, 2)
    assert d.shape == (2, 3, 3)
    assert d[0, 0, 0] == pytest.approx(a[0, :2, :2].mean())
    assert d[1, 2, 2] == pytest.approx(a[1, 4, 4])  # the edge block is what exists
    assert stats.downsample(a, 1) is a


def test_filter_images_rgb_and_gray():
    w = torch.randn(8, 3, 5, 5)
    t = stats.filter_images(w)
    assert t.shape == (8, 5, 5, 3) and t.min() >= 0 and t.max() <= 1
    assert np.allclose(t.reshape(8, -1).max(1), 1) and np.allclose(t.reshape(8, -1).min(1), 0)  # per filter
    g = stats.filter_images(torch.randn(4, 1, 3, 3))
    assert g.shape == (4, 3, 3, 3) and np.allclose(g[..., 0], g[..., 2])
