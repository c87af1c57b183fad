"""Live weights: a panel built before the user trains shows the trained model afterwards (or says it is outdated).

The setting is a student's: a small CNN on scikit-learn's digits, trained in the notebook after the panels were made.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import cnnwidgets as cw
from cnnwidgets.analyses import cka
from digits import CLASSES, SmallCNN, digits, train


@pytest.fixture()
def setting():
    torch.manual_seed(0)
    x, y = digits(256)
    model = SmallCNN()
    train(model, x, y, steps=5)
    probe = cw.Probe(model, input_size=28, mean=0.0, std=1.0, classes=CLASSES)
    return model, probe, x, y


def test_feature_maps_show_the_trained_model(setting):
    model, probe, x, y = setting
    fm = cw.FeatureMaps(probe, x[0])
    layer = fm.layer
    before = fm.activations.copy()
    train(model, x, y, steps=20)
    fm.layer = probe.layers[1].name  # away and back, as the user reported
    fm.layer = layer
    now = probe.capture(probe.prepare(x[0]), layer)[layer][0].numpy()
    np.testing.assert_allclose(fm.activations, now, rtol=1e-5, atol=1e-6)
    assert not np.allclose(fm.activations, before)
    # edits through .data too (pruning code), and the first layer's filter tiles follow
    tiles = fm.filters_view.value
    model.cnn[0].weight.data.mul_(-1)
    fm.layer = probe.layers[1].name
    fm.layer = layer
    np.testing.assert_allclose(fm.activations, probe.capture(probe.prepare(x[0]), layer)[layer][0].numpy(), rtol=1e-5, atol=1e-6)
    assert fm.filters_view.value != tiles
    fm.close()


def test_histogram_statistics_follow_training(setting):
    model, probe, x, y = setting
    h = cw.Histogram(probe, x[0])
    name = "cnn.0.weight"
    std0 = next(r for r in h.rows if r.name == name).stats.std
    with torch.no_grad():
        model.cnn[0].weight.mul_(2.0)
    h.sort("std")  # any interaction
    std1 = next(r for r in h.rows if r.name == name).stats.std
    assert std1 == pytest.approx(2 * std0, rel=1e-5)
    h.parameter = name
    assert h.selected.data_stats.std == pytest.approx(std1, rel=1e-6)
    h.close()


def test_cka_and_embedding_say_their_results_are_outdated(setting):
    model, probe, x, y = setting
    images = cw.image_set(x[:32], y[:32], CLASSES)
    hm = cw.CKAHeatmap(probe, images, run_mode="foreground", batch_size=8)
    hm.join()
    emb = cw.Embedding(probe, images, layer=probe.layers[1].name)
    emb.compute()
    train(model, x, y, steps=10)
    hm.select_cell(0, 1)  # an interaction after training
    assert "weights changed" in hm.summary.value and "cnnw-stale" in hm.figure_widget._dom_classes
    hm.controls.start()  # Start computes it again, on the trained weights
    np.testing.assert_allclose(hm.result.matrix, cka.layer_similarity(probe, images, batch_size=8).matrix, atol=1e-6)
    assert "cnnw-stale" not in hm.figure_widget._dom_classes
    top = emb.show_top()  # the map's features are stale: a fresh pass on the trained weights
    assert "cnnw-stale" in emb.fig._dom_classes and emb.result is None  # the old map is dimmed until Compute
    fresh = cw.embedding.top_images(probe, images, emb.layer, emb.channel, k=emb.k)
    np.testing.assert_array_equal(top.indices, fresh.indices)
    hm.close()
    emb.close()
