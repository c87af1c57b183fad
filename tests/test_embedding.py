"""Embedding analyses (PCA, t-SNE, top images) and the Embedding panel, on real weights and photos."""
import numpy as np
import pytest
import torch
from PIL import Image

import cnnwidgets as cw
from cnnwidgets import render
from cnnwidgets.analyses import embedding as E
from cnnwidgets.hooks import hook_count


@pytest.fixture(scope="module")
def data():
    return cw.sample_dataset(24, size=224, seed=1)


def test_features_are_pooled_activations(probe, data):
    images, _ = data
    layer = probe.layers[8].name
    feats = E.features(probe, images, layer, batch_size=10)[layer]
    acts = probe.activations(images, layer)
    assert feats.shape == (24, acts.shape[1])
    np.testing.assert_allclose(feats, acts.mean((2, 3)).numpy(), rtol=1e-5, atol=1e-5)
    assert hook_count(probe.model) == 0


def test_pca_matches_svd_projection_and_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6)) * np.array([5, 3, 1, 0.5, 0.2, 0.1])
    coords, ratio = E.pca(x, 2)
    from sklearn.decomposition import PCA

    ref = PCA(2).fit(x)
    np.testing.assert_allclose(np.abs(coords), np.abs(ref.transform(x)), atol=1e-8)
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio_, atol=1e-10)


def test_tsne_separates_photographs(probe, data):
    images, labels = data
    layer = probe.layers[-1].name
    feats = E.features(probe, images, layer)[layer]
    xy = E.tsne(feats, perplexity=5)
    assert xy.shape == (24, 2) and np.isfinite(xy).all()
    # crops of one photograph lie closer to each other than to crops of the others
    lab = np.array(labels)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    same = d[(lab[:, None] == lab[None]) & ~np.eye(24, dtype=bool)].mean()
    other = d[lab[:, None] != lab[None]].mean()
    assert same < other


def test_small_sets_get_clear_errors(probe):
    with pytest.raises(ValueError, match="at least 5"):
        E.tsne(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        E.pca(np.zeros((1, 4)))


def test_top_images_are_the_argmax_of_the_channel(probe, data):
    images, _ = data
    layer = probe.layers[10]
    top = E.top_images(probe, images, layer.name, channel=3, k=5, batch_size=7)
    acts = probe.activations(images, layer.name)[:, 3]
    maxes = acts.flatten(1).amax(1).numpy()
    np.testing.assert_array_equal(top.indices, np.argsort(-maxes, kind="stable")[:5])
    np.testing.assert_allclose(top.scores, np.sort(maxes)[::-1][:5], rtol=1e-5)
    with pytest.raises(IndexError, match="out of range"):
        E.top_images(probe, images, layer.name, channel=layer.channels)
    assert hook_count(probe.model) == 0


def test_panel_computes_map_and_shows_clicked_image(probe, data):
    images, labels = data
    panel = cw.Embedding(probe, images, labels, layer=probe.layers[12].name)
    coords = panel.compute()
    assert coords.shape == (24, 2)
    assert panel.controls.runner.state == "done"
    drawn = sum(len(m.x) for m in panel.marks)
    assert drawn == 24
    # clicking the 2nd point of the 'coffee' mark selects that image and shows it
    coffee = panel._classes.index("coffee")
    panel.marks[coffee].selected = [1]
    idx = [i for i, l in enumerate(labels) if l == "coffee"][1]
    assert panel.selected == idx
    shown = render.decode(panel.picked.value)
    expected = render.upscale(render.image_rgb(panel.thumbs[idx]), 160)
    assert shown.shape == expected.shape
    # the switch to t-SNE recomputes
    panel.method.value = "tsne"
    assert panel.compute().shape == (24, 2)
    top = panel.show_top()
    assert len(top.indices) == panel.k and panel.top_image.value


def test_panel_bad_input(probe, data):
    images, labels = data
    with pytest.raises(ValueError, match="one label per image"):
        cw.Embedding(probe, images, labels[:-1])
    panel = cw.Embedding(probe, images, labels)
    panel.layer = probe.layers[3].name  # set from outside (the Explorer's link): the slider follows
    assert panel.slider.value == probe.layers[3].name
    panel.channel = 10_000  # a linked panel's channel beyond this layer: clamped to the last channel
    last = probe.layer(panel.layer).channels - 1
    assert panel.channel == last and panel.channel_picker.value == last
    small = cw.Embedding(probe, images[:4], labels[:4], method="tsne")
    assert small.compute() is None  # the error is shown in the panel, not raised into the cell
    assert "at least 5" in small.message.value and small.controls.runner.state == "error"
    assert hook_count(probe.model) == 0


def test_panel_save(probe, data, tmp_path):
    images, labels = data
    panel = cw.Embedding(probe, images, labels)
    panel.compute()
    panel.show_top()
    out = panel.save(tmp_path / "emb.png", dpi=60)
    from PIL import Image

    assert Image.open(out).size[0] > 300


def test_a_linked_layer_outside_the_slider_joins_it(probe, data):
    """The Explorer may set a block (from a CKA click): the slider shows it instead of drifting apart."""
    images, labels = data
    panel = cw.Embedding(probe, images[:6], labels[:6])
    panel.layer = "_blocks.3"
    assert panel.slider.value == "_blocks.3" == panel.layer


# --- any image set: coloured by its labels, thumbnails read when shown --------------------------------

class _Counted(torch.utils.data.Dataset):
    """24 real crops of the bundled photographs with their photograph as class; counts the items read."""

    def __init__(self):
        self.x, names = cw.sample_dataset(24, size=32, names=["chelsea", "coffee", "rocket"], seed=4)
        self.classes = ["rocket", "chelsea", "coffee"]  # given in this order: the legend follows it
        self.targets = [self.classes.index(n) for n in names]
        self.reads = 0

    def __len__(self):
        return 24

    def __getitem__(self, i):
        self.reads += 1
        return self.x[i], self.targets[i]


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1),
                            torch.nn.ReLU())
    return cw.Probe(m, device="cpu", transform=cw.Preprocess(resize=None, crop=(32, 32)))


def test_panel_colours_any_image_set_by_its_classes_and_reads_thumbnails_lazily(small):
    ds = _Counted()
    panel = cw.Embedding(small, ds, layer=small.layers[1].name)
    assert ds.reads == 1  # item 0, to see what an item is: no image prepared at construction
    assert panel._classes == ["rocket", "chelsea", "coffee"]  # by label index: the classes are given in order
    assert panel.legend.value.index("rocket") < panel.legend.value.index("chelsea") < panel.legend.value.index("coffee")
    assert "TensorDataset" not in panel.children[0].value and "24 images · 3 classes" in panel.children[0].value
    panel.compute()
    assert ds.reads == 1 + 24  # one streamed pass
    for j, c in enumerate(panel._classes):  # each mark holds exactly its class's images
        assert len(panel.marks[j].x) == sum(1 for t in ds.targets if ds.classes[t] == c)
    panel.marks[2].selected = [3]  # the 4th coffee crop
    idx = [i for i, t in enumerate(ds.targets) if t == 2][3]
    assert panel.selected == idx and panel.labels[idx] == "coffee" and "coffee" in panel.picked_label.value
    assert ds.reads == 1 + 24 + 1  # the clicked image only
    np.testing.assert_array_equal(render.decode(panel.picked.value)[::5, ::5],
                                  render.upscale(render.image_rgb(ds.x[idx]), 160)[::5, ::5])
    top = panel.show_top()
    assert len(top.indices) == 9 and panel.top_image.value


def test_panel_over_a_folder_and_a_shuffled_loader(small, tmp_path):
    x, names = cw.sample_dataset(12, size=32, names=["rocket", "chelsea"], seed=5)
    for i, (img, n) in enumerate(zip(x, names)):
        (tmp_path / n).mkdir(exist_ok=True)
        Image.fromarray(render.image_rgb(img)).save(tmp_path / n / f"{i:02d}.png")
    (tmp_path / "rocket" / "notes.txt").write_text("taken at the launch pad")
    panel = cw.Embedding(small, tmp_path, layer=small.layers[0].name)
    assert panel._classes == ["chelsea", "rocket"] and "skipped 1 file" in panel.children[0].value
    assert panel.compute().shape == (12, 2)
    loader = torch.utils.data.DataLoader(_Counted(), batch_size=5, shuffle=True)
    panel = cw.Embedding(small, loader, layer=small.layers[0].name)
    assert panel.labels is None and panel._classes == ["images"]  # labels come with the pass
    panel.compute()
    assert panel._classes == ["rocket", "chelsea", "coffee"] and sum(len(m.x) for m in panel.marks) == 24
    panel.marks[0].selected = [0]
    i = panel.selected
    assert panel.labels[i] == "rocket" and panel.images.label(i) == 0  # the image seen at that position


def test_top_images_reuse_the_maps_features(probe):
    """'Top 9 images' after Compute reads no image but the 9 it shows (the map's pass kept every channel's scores)."""
    import torch

    class Counted(torch.utils.data.Dataset):
        def __init__(self, x):
            self.x, self.reads = x, 0

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            self.reads += 1
            return self.x[i], i % 2

    x = cw.sample_batch(24, size=64, seed=3)
    ds = Counted(x)
    layer = probe.layers[10].name
    emb = cw.Embedding(probe, ds, layer=layer, k=5)
    emb.compute()
    reads = ds.reads
    top = emb.show_top()
    assert ds.reads - reads <= 5  # thumbnails of the 5 shown, no pass over the set
    fresh = cw.embedding.top_images(probe, x, layer, emb.channel, k=5)
    np.testing.assert_array_equal(top.indices, fresh.indices)
    np.testing.assert_allclose(top.scores, fresh.scores, rtol=1e-5)
    emb.layer = probe.layers[12].name  # another layer: one pass, through the panel's job slot
    top = emb.show_top()
    assert top.layer == probe.layers[12].name and emb.top_controls.state == "done"
    emb.close()
