"""Histogram panel: the bars are numpy's counts, the statistics numpy's; the table sorts and selects."""
import numpy as np
import pytest
import torch
import torchvision
import traitlets
from PIL import Image
from torch import nn

import cnnwidgets as cw
from cnnwidgets.hooks import hook_count
from cnnwidgets.widgets.featuremaps import FeatureMaps
from cnnwidgets.widgets.histogram import COLUMNS, Histogram


@pytest.fixture(scope="module")
def hist(probe, cat):
    return Histogram(probe, cat)


def assert_chart(chart, values, bins=50):
    v = np.asarray(values, dtype=np.float64).ravel()
    counts, edges = np.histogram(v.astype(np.float32), bins)
    np.testing.assert_array_equal(chart.bars.y, counts)
    np.testing.assert_allclose(chart.bars.x, (edges[:-1] + edges[1:]) / 2, rtol=1e-6)
    s = chart.data_stats
    assert s.mean == pytest.approx(v.mean(), rel=1e-9, abs=1e-12)
    assert s.std == pytest.approx(v.std(ddof=1), rel=1e-9)
    assert (s.min, s.max) == (pytest.approx(v.min()), pytest.approx(v.max()))
    assert s.zeros == pytest.approx((v == 0).mean())
    assert "mean" in chart.stats.value and "zeros" in chart.stats.value
    ax, ay = chart.figure.axes  # round ticks inside the drawn range, not its exact ends
    for ticks, lo, hi in ((ax.tick_values, chart.bars.x.min(), chart.bars.x.max()), (ay.tick_values, 0, counts.max())):
        assert len(ticks) >= 1 and lo - 1e-9 <= min(ticks) and max(ticks) <= hi + 1e-9
        if len(ticks) > 1:
            step = ticks[1] - ticks[0]
            assert any(np.isclose(step / 10 ** np.floor(np.log10(step)), m) for m in (1, 2, 5))


def test_weights_bias_activations_are_numpy_histograms(probe, cat, hist):
    name = "_blocks.5._expand_conv"
    hist.layer = name
    module = probe.layer(name).module
    assert_chart(hist.weights, module.weight.detach().numpy())
    assert hist.bias.hist is None and "no bias" in hist.bias.stats.value  # efficientnet convs have bias=False
    assert_chart(hist.acts, probe.activations(cat, name)[0].numpy())
    hist.layer = "_fc"
    assert_chart(hist.weights, probe.layer("_fc").module.weight.detach().numpy())
    assert_chart(hist.bias, probe.layer("_fc").module.bias.detach().numpy())
    assert_chart(hist.acts, probe.activations(cat, "_fc")[0].numpy())


def test_table_has_every_parameter_and_sorts(probe, hist):
    sd = probe.model.state_dict()
    names = [k for k in sd if "num_batches_tracked" not in k]
    assert sorted(o[1] for o in hist.table.options) == sorted(names)
    std_button = hist.head_buttons[[c[0] for c in COLUMNS].index("std")]
    std_button.click()  # a header click sorts, largest first
    stds = [r.stats.std for r in hist.table_rows]
    assert hist.sort_by == "std" and hist.descending and stds == sorted(stds, reverse=True)
    assert "std ▼" in std_button.description
    std_button.click()  # again: ascending
    stds = [r.stats.std for r in hist.table_rows]
    assert not hist.descending and stds == sorted(stds)
    assert [o[1] for o in hist.table.options] == [r.name for r in hist.table_rows]
    first = hist.table.options[0][0]
    row = hist.table_rows[0]
    assert row.name[:20] in first.replace("\u00a0", " ") or row.name[-20:] in first.replace("\u00a0", " ")
    hist.sort_by, hist.descending = "order", False


def test_clicking_a_row_shows_its_histogram_and_follows_the_layer(probe, hist):
    hist.table.value = "_blocks.2._bn1.running_var"
    assert hist.parameter == "_blocks.2._bn1.running_var"
    assert hist.layer == "_blocks.2._bn1"
    assert_chart(hist.selected, probe.model.state_dict()["_blocks.2._bn1.running_var"].numpy())
    assert "running_var" in hist.selected.title.value
    assert_chart(hist.weights, probe.layer("_blocks.2._bn1").module.weight.detach().numpy())  # BN's gamma
    with pytest.raises(traitlets.TraitError, match="No parameter"):
        hist.parameter = "_blocks.2._bn1.running_vra"


def test_linked_to_featuremaps(probe, cat, hist):
    fm = FeatureMaps(probe, cat)
    link = traitlets.link((fm, "layer"), (hist, "layer"))
    try:
        fm.slider.value = probe.layers[7].name
        assert hist.layer == probe.layers[7].name and hist.slider.value == probe.layers[7].name
        hist.layer = "_blocks.4._bn0"  # a BatchNorm: maps too
        assert fm.layer == "_blocks.4._bn0" and "BatchNorm2d" in fm.layer_label.value
    finally:
        link.unlink()


def test_image_choice_changes_activations_only(probe, hist):
    hist.layer = probe.layers[3].name
    w, a = hist.weights.bars.y.copy(), hist.acts.bars.y.copy()
    hist.input.dropdown.value = "uniform noise"
    try:
        assert (hist.weights.bars.y == w).all() and not np.array_equal(hist.acts.bars.y, a)
        assert_chart(hist.acts, probe.activations(hist.input.image, probe.layers[3].name)[0].numpy())
    finally:
        hist.input.dropdown.value = "your image"


class NoBias(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.parametrize("make", [NoBias, lambda: torchvision.models.alexnet(weights=None),
                                  lambda: torchvision.models.resnet18(weights=None)], ids=["tiny-gray", "alexnet", "resnet18"])
def test_other_models_and_layers_without_bias(make, tmp_path):
    torch.manual_seed(0)
    model = make()
    probe = cw.Probe(model, input_size=32 if isinstance(model, NoBias) else None)
    h = Histogram(probe, cw.sample_image("coffee"))
    assert h.message.value == ""
    for layer in [l.name for l in h.param_layers][:3] + [h.param_layers[-1].name]:
        h.layer = layer
        module = probe.layer(layer).module
        assert_chart(h.weights, module.weight.detach().numpy())
        if getattr(module, "bias", None) is None:
            assert h.bias.hist is None and "no bias" in h.bias.stats.value
        else:
            assert_chart(h.bias, module.bias.detach().numpy())
    assert "num_batches_tracked" not in " ".join(o[1] for o in h.table.options)
    im = Image.open(h.save(tmp_path / "h.png", dpi=40))
    assert im.format == "PNG"
    assert hook_count(model) == 0


def test_save_writes_a_png(hist, tmp_path):
    path = hist.save(tmp_path / "hist.png", dpi=50)
    im = Image.open(path)
    assert im.format == "PNG" and im.size[0] > 300
