"""k-NN accuracy per layer: the vote equals scikit-learn's, classes become separable deeper in a trained CNN, any
image set works, and a set without labels is told what to give."""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import cnnwidgets as cw
from cnnwidgets.analyses import knn
from tests.digits import CLASSES, SmallCNN, digits, train

warnings.filterwarnings("ignore", category=UserWarning)


def test_leave_one_out_vote_equals_scikit_learn():
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    f = np.concatenate([rng.normal(0, 1, (60, 8)), rng.normal(0.7, 1, (60, 8))]) + 3.0  # shared offset: centring matters
    y = np.repeat([0, 1], 60)
    for k in (1, 5):
        ours = knn.knn_predict(f, y, k=k)
        c = f - f.mean(0)
        nn_ = KNeighborsClassifier(n_neighbors=k + 1, metric="cosine").fit(c, y)
        idx = nn_.kneighbors(c, return_distance=False)
        theirs = np.array([np.bincount(y[[j for j in row if j != i][:k]], minlength=2).argmax() for i, row in enumerate(idx)])
        assert (ours == theirs).mean() > 0.98  # equal up to neighbours at exactly the same distance
    assert 0.6 < (knn.knn_predict(f, y, k=5) == y).mean() < 1.0


@pytest.fixture(scope="module")
def trained():
    x, y = digits(600)
    torch.manual_seed(0)
    model = SmallCNN()
    train(model, x, y, steps=40)
    probe = cw.Probe(model, input_size=28, mean=0, std=1, classes=CLASSES)
    return probe, x, y


def test_classes_become_separable_deeper_in_a_trained_cnn(trained):
    probe, x, y = trained
    images = cw.image_set(x, labels=y, classes=CLASSES)
    res = knn.knn_accuracy(probe, images, ["cnn.2", "cnn.6", "fc"], k=5)
    assert res.layers == ["cnn.2", "cnn.6", "fc"]
    assert res.how == "leave-one-out" and res.guessed == res.images == 600
    assert res.chance < 0.15  # ten balanced classes
    a, b, c = res.accuracy
    assert a < b < c and c > 0.95, res
    assert set(res.per_class[-1]) == set(range(10))
    torch.manual_seed(0)  # the same network before training: its scores separate the digits much less
    untrained = cw.Probe(SmallCNN(), input_size=28, mean=0, std=1)
    assert knn.knn_accuracy(untrained, images, "fc", k=5).accuracy[0] < c - 0.08
    assert knn.knn_accuracy(probe, images, k=5).layers == probe.layers.names  # default: every conv layer


def test_any_image_set_gives_the_same_accuracy(trained, tmp_path):
    probe, x, y = trained
    x, y = x[:120], y[:120]
    for i, (img, label) in enumerate(zip(x, y)):
        d = tmp_path / CLASSES[int(label)]
        d.mkdir(exist_ok=True)
        Image.fromarray((img[0].numpy() * 255).round().astype(np.uint8)).save(d / f"{i:04d}.png")
    ds = torch.utils.data.TensorDataset(x, y)
    loader = torch.utils.data.DataLoader(ds, batch_size=32)
    ref = knn.knn_accuracy(probe, cw.image_set(x, labels=y), "cnn.4", k=3)
    assert knn.knn_accuracy(probe, ds, "cnn.4", k=3).accuracy == ref.accuracy
    assert knn.knn_accuracy(probe, loader, "cnn.4", k=3).accuracy == ref.accuracy
    folder = knn.knn_accuracy(probe, str(tmp_path), "cnn.4", k=3)  # PNG rounding: up to one image differs
    assert folder.images == 120 and abs(folder.accuracy[0] - ref.accuracy[0]) <= 1 / 120 + 1e-9
    assert folder.classes == CLASSES


def test_held_out_split_progress_and_partial_results(trained):
    probe, x, y = trained
    steps = list(knn.knn_steps(probe, cw.image_set(x[:200], labels=y[:200]), k=5, test=0.25, batch_size=50))
    assert [s.step for s in steps[:4]] == [50, 100, 150, 200] and steps[0].total == 200
    per_layer = [s.value for s in steps if s.value is not None]
    assert [len(r.layers) for r in per_layer] == [1, 2] and [r.final for r in per_layer] == [False, True]
    assert per_layer[0].accuracy == per_layer[1].accuracy[:1]  # the first layer's result, usable before the end
    res = per_layer[-1]
    assert res.guessed == 50 and res.how == "50 held-out images guessed from the other 150"


def test_bad_input_is_said(trained):
    probe, x, _ = trained
    with pytest.raises(ValueError, match="needs the images' classes"):
        knn.knn_accuracy(probe, x[:20])
    with pytest.raises(ValueError, match="at least 1"):
        knn.knn_accuracy(probe, cw.image_set(x[:20], labels=[0] * 20), k=0)
    with pytest.raises(ValueError, match="between 0 and 1"):
        knn.knn_accuracy(probe, cw.image_set(x[:20], labels=[0] * 20), test=1.5)


def test_panel_bars_equal_the_analysis_click_and_close(trained):
    from test_close import registry
    from test_widget_state import json_state
    from cnnwidgets.widgets._base import reachable_widgets

    probe, x, y = trained
    images = cw.image_set(x[:200], labels=y[:200], classes=CLASSES)
    panel = cw.KNNAccuracy(probe, images, ["cnn.2", "cnn.6", "fc"], k=5)
    res = panel.compute()
    assert res.accuracy == knn.knn_accuracy(probe, images, ["cnn.2", "cnn.6", "fc"], k=5).accuracy
    np.testing.assert_allclose(panel.bars.y, res.accuracy)
    assert list(panel.bars.x) == ["cnn.2", "cnn.6", "fc"] and list(panel.chance.y) == [res.chance] * 2
    assert panel.controls.progress.value == panel.controls.progress.max == 203  # 200 images, then 3 layers
    assert "best: <b>fc</b>" in panel.summary.value and "chance" in panel.summary.value
    panel.bars.selected = [1]  # a click on the second bar
    assert panel.layer == "cnn.6"
    json_state(panel, "KNNAccuracy computed and clicked")
    ids = {w.model_id for w in reachable_widgets(panel)}
    panel.close()
    assert not ids & set(registry())


def test_cka_heatmap_over_any_image_set_with_progress(trained, tmp_path):
    """The CKA panel streams a tensor, a Dataset, a DataLoader and a folder alike (the same matrix for the same
    images in the same order), with its progress in batches."""
    probe, x, y = trained
    x, y = x[:48], y[:48]
    ds = torch.utils.data.TensorDataset(x, y)
    results = []
    for src in (x, ds, torch.utils.data.DataLoader(ds, batch_size=16)):
        hm = cw.CKAHeatmap(probe, src, batch_size=16, estimator="biased", run_mode="thread")
        assert hm.join(60) and hm.result.images == 48
        assert hm.controls.progress.value == hm.controls.progress.max == 3
        results.append(hm.result.matrix)
        hm.close()
    np.testing.assert_allclose(results[1], results[0], atol=1e-6)
    np.testing.assert_allclose(results[2], results[0], atol=1e-6)
    for i in range(48):
        Image.fromarray((x[i, 0].numpy() * 255).round().astype(np.uint8)).save(tmp_path / f"{i:03d}.png")
    hm = cw.CKAHeatmap(probe, str(tmp_path), batch_size=16, estimator="biased", run_mode="thread")
    assert hm.join(60) and hm.result.images == 48
    np.testing.assert_allclose(hm.result.matrix, results[0], atol=2e-3)  # PNG rounding
    hm.close()

    class Streamed(torch.utils.data.IterableDataset):  # no length: only streamed
        def __iter__(self):
            return iter(zip(x, y))

    got = []
    for src in (x, torch.utils.data.DataLoader(Streamed(), batch_size=16)):
        hm = cw.CKAHeatmap(probe, src, batch_size=16, run_mode="thread")  # minibatch CKA needs no count
        assert hm.join(60) and hm.result.images == 48 and hm.controls.state == "done"
        got.append(hm.result.matrix)
        hm.select_cell(0, 1)  # the pair's maps for an image of the set
        assert hm.image_slider.max == 47 and hm.map_a.value, (hm.message.value, hm._display is not None)
        hm.close()
    np.testing.assert_allclose(got[1], got[0], atol=1e-6)
