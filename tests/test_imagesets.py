"""cw.image_set: every kind of image set a student holds (real files, real torchvision datasets and loaders,
scikit-learn's bundled digits), the clear errors, streaming, and analyses that give the same over all of them."""
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

import cnnwidgets as cw
from cnnwidgets.analyses import cka as C
from cnnwidgets.analyses import embedding as E
from cnnwidgets.images import to_tensor
from cnnwidgets.imagesets import Batch, ImageSet, class_order

CLASSES = ["cat", "dog", "fox"]


def _picture(seed, size=32, mode="RGB"):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    a[size // 4: size // 2] = rng.integers(0, 256, 3, dtype=np.uint8)  # a band, so features differ
    return Image.fromarray(a).convert(mode)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """ImageFolder layout: cat/ dog/ fox/ with 4 PNGs each, a notes.txt inside cat/ and a JPEG in fox/."""
    root = tmp_path_factory.mktemp("photos")
    k = 0
    for c in CLASSES:
        (root / c).mkdir()
        for i in range(4):
            _picture(k).save(root / c / f"{c}{i}.png")
            k += 1
    (root / "cat" / "notes.txt").write_text("my notes")
    return root


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                      nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))
    return cw.Probe(m, device="cpu", transform=cw.Preprocess(resize=None, crop=(32, 32)))


def _all(s, batch_size=5):
    images, labels, indices = [], [], []
    for b in s.batches(batch_size):
        assert isinstance(b, Batch) and len(b) <= batch_size
        images += [to_tensor(i) for i in b.images]
        labels = None if b.labels is None or labels is None else labels + b.labels
        indices += b.indices
    return images, labels, indices


# --- each kind of set ------------------------------------------------------------------------------

def test_a_folder_with_one_subfolder_per_class_is_imagefolder(folder):
    s = cw.image_set(folder)
    assert isinstance(s, ImageSet) and cw.image_set(s) is s
    assert len(s) == 12 and s.classes == CLASSES and s.labels == [0] * 4 + [1] * 4 + [2] * 4
    assert s.skipped == 1 and s.note == "skipped 1 file that is not an image (cat/notes.txt)"
    assert s.description == f"folder {folder.name}/ · 12 images · 3 classes"
    ref = torchvision.datasets.ImageFolder(str(folder))  # the same classes, files and labels as torchvision
    assert ref.classes == s.classes and [l for _, l in ref.samples] == s.labels
    assert [p for p, _ in ref.samples] == [str(s.image(i)) for i in range(len(s))]
    images, labels, indices = _all(s)
    assert labels == s.labels and indices == list(range(12))
    torch.testing.assert_close(images[5], to_tensor(ref.samples[5][0]))
    assert s.class_name(2) == "fox" and s.label(4) == 1 and s.image(-1) == s.image(11)
    assert cw.image_set(str(folder)).labels == s.labels  # a str as well as a Path


def test_a_flat_folder_has_no_labels(tmp_path):
    for i in range(3):
        _picture(i, mode="L").save(tmp_path / f"img{i}.png")
    _picture(9).save(tmp_path / "photo.JPG")  # extensions in any case
    (tmp_path / "data.csv").write_text("a,b")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")  # an image's extension, not an image
    s = cw.image_set(tmp_path)
    assert len(s) == 4 and s.classes is None and s.labels is None and s.label(0) is None
    assert s.skipped == 2
    assert s.note == "skipped 1 file that is not an image (data.csv); 1 image file PIL cannot read (broken.png)"
    assert [b.labels for b in s.batches(3)] == [None, None]
    assert s.description == f"folder {tmp_path.name}/ · 4 images"


def test_a_list_of_paths_and_a_list_of_images(folder):
    paths = sorted(folder.glob("*/*.png"))
    s = cw.image_set(paths, labels=["a", "b"] * 6)
    assert len(s) == 12 and s.classes == ["a", "b"] and s.labels == [0, 1] * 6
    assert s.description == "list of files · 12 images · 2 classes"
    pics = [Image.open(p) for p in paths[:3]] + [np.asarray(Image.open(paths[3])), to_tensor(paths[4])]
    s = cw.image_set(pics, labels=[2, 0, 1, 1, 0], classes={0: "cat", 1: "dog", 2: "fox"})
    assert s.classes == CLASSES and s.class_name(s.label(0)) == "fox"
    images, labels, _ = _all(s, 2)
    assert labels == [2, 0, 1, 1, 0]
    for got, p in zip(images, paths):
        torch.testing.assert_close(got, to_tensor(p))
    one = cw.image_set(paths[0])  # a single image file is a set of one
    assert len(one) == 1 and one.description == f"file {paths[0].name} · 1 image"


def test_a_tensor_and_numpy_arrays_with_labels():
    x = torch.rand(10, 3, 16, 16)
    s = cw.image_set(x, torch.arange(10) % 2, classes=["even", "odd"])
    assert len(s) == 10 and s.labels == [0, 1] * 5 and s.description == "tensor 10×3×16×16 · 10 images · 2 classes"
    b = next(s.batches(4))
    assert torch.equal(b.images, x[:4]) and b.labels == [0, 1, 0, 1] and b.indices == [0, 1, 2, 3]
    assert torch.equal(s.image(3), x[3])
    u8 = (x * 255).to(torch.uint8)
    assert torch.equal(next(cw.image_set(u8).batches(2)).images, u8[:2])
    # string labels: classes in order of first appearance, unless classes= names them
    s = cw.image_set(x.numpy().transpose(0, 2, 3, 1), ["dog", "cat"] * 5)
    assert s.classes == ["dog", "cat"] and s.labels == [0, 1] * 5
    assert class_order(s, s.labels) == [1, 0]  # a legend of names collected from strings: by name
    s = cw.image_set(x.numpy(), ["dog", "cat"] * 5, classes=["cat", "dog"])  # NxCxHxW numpy
    assert s.labels == [1, 0] * 5 and class_order(s, s.labels) == [0, 1]
    torch.testing.assert_close(to_tensor(s.image(2)), x[2])
    with pytest.raises(ValueError, match="'bird' is not one of the classes"):
        cw.image_set(x, ["bird"] * 10, classes=["cat", "dog"])


def test_scikit_learn_digits_as_gray_numpy_images():
    from sklearn.datasets import load_digits

    digits = load_digits()
    s = cw.image_set(digits.images / 16.0, digits.target, classes=[str(d) for d in digits.target_names])
    assert len(s) == 1797 and s.classes[3] == "3" and s.labels[:10] == list(digits.target[:10])
    b = next(s.batches(32))
    x = cw.Probe(nn.Conv2d(1, 2, 3), device="cpu", transform=cw.Preprocess(resize=None, crop=(8, 8), channels=1,
                                                                              mean=(0.5,), std=(0.5,))).prepare(b.images)
    assert x.shape == (32, 1, 8, 8)
    torch.testing.assert_close(x[5, 0], torch.from_numpy(digits.images[5] / 16.0).float() * 2 - 1)
    t = cw.image_set(torch.from_numpy(digits.images / 16.0))  # an NxHxW tensor too (torchvision's MNIST.data)
    assert t.image(0).shape == (1, 8, 8) and next(t.batches(4)).images.shape == (4, 1, 8, 8)


def test_a_dataset_of_image_label_pairs_with_classes(folder):
    ds = torchvision.datasets.ImageFolder(str(folder))  # items (PIL image, int), .classes, .targets
    s = cw.image_set(ds)
    assert len(s) == 12 and s.classes == CLASSES and s.labels == ds.targets
    assert s.description == "ImageFolder · 12 images · 3 classes"
    images, labels, _ = _all(s, 5)
    assert labels == ds.targets
    torch.testing.assert_close(images[7], to_tensor(ds[7][0]))
    sub = Subset(ds, [11, 0, 5])  # what random_split gives: labels and classes through it
    s = cw.image_set(sub)
    assert s.labels == [2, 0, 1] and s.classes == CLASSES
    td = TensorDataset(torch.rand(6, 3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2]))
    s = cw.image_set(td, classes=CLASSES)
    assert s.labels == [0, 1, 2, 0, 1, 2] and s.class_name(s.label(4)) == "dog"
    fake = torchvision.datasets.FakeData(size=5, image_size=(3, 16, 16), num_classes=4)  # no targets: streamed
    s = cw.image_set(fake)
    assert s.labels is None and s.classes is None
    assert [l for b in s.batches(2) for l in b.labels] == [fake[i][1] for i in range(5)]


class Pictures(Dataset):
    """A Dataset of images only (no labels), that counts how many items it has read."""

    def __init__(self, n=20, kind="pil"):
        self.n, self.kind, self.reads = n, kind, 0

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        self.reads += 1
        img = _picture(i, 16)
        return img if self.kind == "pil" else to_tensor(img)


def test_a_dataset_of_images_only():
    ds = Pictures(6, "tensor")
    s = cw.image_set(ds)
    assert len(s) == 6 and s.labels is None and s.label(2) is None
    images, labels, _ = _all(s, 4)
    assert labels is None and len(images) == 6
    torch.testing.assert_close(images[3], to_tensor(_picture(3, 16)))


def test_dataloaders_of_tuples(folder):
    ds = torchvision.datasets.ImageFolder(str(folder), transform=torchvision.transforms.ToTensor())
    loader = DataLoader(ds, batch_size=5)
    s = cw.image_set(loader)
    assert len(s) == 12 and s.classes == CLASSES and s.labels == ds.targets
    assert s.description == "DataLoader over ImageFolder (batches of 5) · 12 images · 3 classes"
    sizes = [len(b) for b in s.batches(4)]  # the loader's batches of 5 cut to the size asked for
    assert sizes == [4, 4, 4]
    images, labels, indices = _all(s, 4)
    assert labels == ds.targets and indices == list(range(12))
    torch.testing.assert_close(torch.stack(images), torch.stack([ds[i][0] for i in range(12)]))
    torch.testing.assert_close(s.image(7), ds[7][0])  # sequential: read through loader.dataset
    assert len(cw.image_set(DataLoader(ds, batch_size=5, drop_last=True))) == 10
    pil = torchvision.datasets.ImageFolder(str(folder))  # PIL images: a collate_fn that keeps them in a list
    listed = cw.image_set(DataLoader(pil, batch_size=5, collate_fn=lambda b: ([i for i, _ in b], [l for _, l in b])))
    images, labels, _ = _all(listed, 4)
    assert labels == ds.targets and len(images) == 12
    torch.testing.assert_close(images[9], ds[9][0])
    items = cw.image_set(DataLoader(pil, batch_size=5, collate_fn=lambda b: b))  # the items themselves
    assert _all(items, 4)[1] == ds.targets
    # shuffled: a new order each pass; labels and thumbnails of the latest pass
    g = torch.Generator().manual_seed(0)
    s = cw.image_set(DataLoader(ds, batch_size=5, shuffle=True, generator=g))
    assert s.labels is None and "shuffled" in s.description and s.classes == CLASSES
    with pytest.raises(IndexError, match="not been streamed yet"):
        s.image(0)
    images, labels, indices = _all(s, 4)
    assert sorted(labels) == sorted(ds.targets) and indices == list(range(12))
    for i in range(12):
        thumb = s.image(i)  # the thumbnail of the image seen at position i
        assert thumb.dtype == torch.uint8 and thumb.shape == (3, 32, 32) and s.label(i) == labels[i]
        torch.testing.assert_close(to_tensor(thumb), images[i], atol=1 / 255 + 1e-6, rtol=0)


class Records(Dataset):
    """Hugging Face-style items: dicts."""

    def __init__(self, image_key="image", label_key="label", n=7):
        self.image_key, self.label_key, self.n = image_key, label_key, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {self.image_key: to_tensor(_picture(i, 16)), self.label_key: i % 3, "id": f"r{i}"}


def test_dataloaders_and_datasets_of_dicts():
    s = cw.image_set(DataLoader(Records(), batch_size=3))  # "image" and "label" are found alone
    images, labels, _ = _all(s, 4)
    assert labels == [i % 3 for i in range(7)] and len(images) == 7
    torch.testing.assert_close(images[6], to_tensor(_picture(6, 16)))
    s = cw.image_set(DataLoader(Records("photo", "kind"), batch_size=3), image_key="photo", label_key="kind")
    assert _all(s, 4)[1] == [i % 3 for i in range(7)]
    s = cw.image_set(Records("pixel_values", "target"))  # a Dataset of dicts too
    assert _all(s, 4)[1] == [i % 3 for i in range(7)]
    unlabelled = cw.image_set(Records("photo", "kind"), image_key="photo")
    assert _all(unlabelled, 4)[1] is None


def test_a_dataloader_over_an_iterable_dataset_has_no_length():
    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            for i in range(9):
                yield to_tensor(_picture(i, 16)), i % 2

    s = cw.image_set(DataLoader(Stream(), batch_size=4))
    with pytest.raises(TypeError, match="number of images .* unknown"):
        len(s)
    images, labels, indices = _all(s, 4)
    assert len(images) == 9 and labels == [i % 2 for i in range(9)] and indices == list(range(9))
    assert s.image(8).shape == (3, 16, 16)  # kept as a thumbnail while streaming
    assert len(_all(cw.image_set(Stream()), 4)[0]) == 9  # the IterableDataset itself


# --- bad input -------------------------------------------------------------------------------------

def test_an_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="is empty: put images in it") as e:
        cw.image_set(tmp_path)
    assert e.value.__cause__ is None


def test_a_folder_of_files_that_are_not_images(tmp_path):
    for name in ("notes.txt", "data.csv", "model.pt", "readme.md"):
        (tmp_path / name).write_text("x")
    with pytest.raises(ValueError, match=r"has no images: found 4 files that are not images \(data.csv, model.pt, "
                                         r"notes.txt, \.\.\.\)\. Expected \.jpg"):
        cw.image_set(tmp_path)
    with pytest.raises(FileNotFoundError, match="No such file or folder"):
        cw.image_set(tmp_path / "nowhere")
    (tmp_path / "empty_class").mkdir()
    (tmp_path / "other_class").mkdir()
    with pytest.raises(ValueError, match="has no images"):
        cw.image_set(tmp_path)


def test_labels_of_the_wrong_length(folder):
    with pytest.raises(ValueError, match="Got 9 labels for 10 images; give one label per image"):
        cw.image_set(torch.rand(10, 3, 8, 8), list(range(9)))
    with pytest.raises(ValueError, match="labels= goes with tensors.*a folder"):
        cw.image_set(folder, labels=[0] * 12)
    with pytest.raises(ValueError, match="already an ImageSet"):
        cw.image_set(cw.image_set(folder), labels=[0] * 12)


def test_items_that_are_neither_an_image_nor_a_pair():
    class Words(Dataset):
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return ("a sentence", 3)

    with pytest.raises(TypeError, match=r"Item 0 of Words is a tuple of 2 \(str, int\): expected an image .* or an "
                                        r"\(image, label\) pair"):
        cw.image_set(Words())
    with pytest.raises(TypeError, match="Item 0 of TensorDataset is a tuple of 1 .*"):
        cw.image_set(TensorDataset(torch.rand(4, 10)))  # rows of numbers, not images
    normalised = TensorDataset(torch.randn(4, 3, 8, 8) * 2, torch.zeros(4))
    with pytest.raises(ValueError, match=r"values in \[.*\], not in \[0, 1\]: its transform normalises it"):
        cw.image_set(normalised)
    with pytest.raises(TypeError, match="expected a set of images"):
        cw.image_set(42)


def test_a_dict_loader_without_image_key():
    with pytest.raises(ValueError, match=r"keys \['photo', 'kind', 'id'\]; none of them is named like an image.*"
                                         r"image_key='photo'"):
        cw.image_set(DataLoader(Records("photo", "kind"), batch_size=2))
    with pytest.raises(ValueError, match="has no key 'picture'"):
        cw.image_set(DataLoader(Records("photo", "kind"), batch_size=2), image_key="picture")


# --- streaming -------------------------------------------------------------------------------------

def test_a_dataset_is_read_one_batch_at_a_time(tiny):
    ds = Pictures(20)
    s = cw.image_set(ds)
    assert ds.reads == 1  # item 0, to see what an item is
    ds.reads = 0
    it = s.batches(6)
    for k, b in enumerate(it, 1):
        assert ds.reads == min(6 * k, 20)  # nothing read ahead of the batch in hand
    ds.reads = 0
    s.image(13)
    assert ds.reads == 1
    ds.reads = 0
    steps = E.features_steps(tiny, s, tiny.layers[0].name, batch_size=4)
    for k, step in enumerate(steps, 1):
        if step.value is None:
            assert ds.reads == 4 * k and step.total == 20
    loader = DataLoader(ds, batch_size=4, collate_fn=lambda b: b)  # a list of PIL images per batch
    ds.reads = 0
    s = cw.image_set(loader)
    first = next(s.batches(6))
    assert len(first) == 6 and ds.reads <= 8 + 1  # the two loader batches it needs (and item 0)


# --- analyses give the same over any kind of set -----------------------------------------------------

def test_analyses_over_a_folder_equal_the_stacked_tensor(folder, tiny):
    s = cw.image_set(folder)
    x = torch.stack([to_tensor(s.image(i)) for i in range(len(s))])
    loader = DataLoader(torchvision.datasets.ImageFolder(str(folder), transform=torchvision.transforms.ToTensor()),
                        batch_size=5)
    layers = [l.name for l in tiny.layers]
    for est in ("biased", "unbiased"):
        ref = C.layer_similarity(tiny, x, layers, estimator=est, batch_size=5)
        for images in (folder, loader):
            got = C.layer_similarity(tiny, images, layers, estimator=est, batch_size=5)
            np.testing.assert_allclose(got.matrix, ref.matrix, rtol=1e-6, atol=1e-9)
            assert got.images == 12
    # the exact estimator in several passes (max_bytes small) gives the same value
    ref = C.channel_similarity(tiny, x, layers[1], batch_size=4)
    got = C.channel_similarity(tiny, folder, layers[1], batch_size=4, max_bytes=4 * 16 * 16 * 16 * 4)
    np.testing.assert_allclose(got.matrix, ref.matrix, rtol=1e-6, atol=1e-9)
    # features, with the labels they saw, and top images
    f_ref = E.features(tiny, x, layers[-1], batch_size=5)[layers[-1]]
    last = None
    for last in E.features_steps(tiny, folder, layers[-1], batch_size=5):
        pass
    np.testing.assert_allclose(last.value[layers[-1]], f_ref, rtol=1e-6, atol=1e-7)
    assert last.info["labels"] == s.labels and list(last.info["indices"]) == list(range(12))
    t_ref = E.top_images(tiny, x, layers[-1], channel=3, k=4, batch_size=5)
    t = E.top_images(tiny, loader, layers[-1], channel=3, k=4, batch_size=3)
    np.testing.assert_array_equal(t.indices, t_ref.indices)
    np.testing.assert_allclose(t.scores, t_ref.scores, rtol=1e-6)


def test_cka_needs_a_length_for_the_exact_estimator_and_a_fixed_order_for_passes(folder, tiny):
    class Stream(torch.utils.data.IterableDataset):
        def __init__(self, n=10):
            self.n = n

        def __iter__(self):
            for i in range(self.n):
                yield to_tensor(_picture(i, 32))

    layers = [l.name for l in tiny.layers]
    with pytest.raises(ValueError, match="'biased' .* needs the number of images up front"):
        C.layer_similarity(tiny, DataLoader(Stream(), batch_size=4), layers, estimator="biased")
    res = C.layer_similarity(tiny, DataLoader(Stream(), batch_size=4), layers, batch_size=4)  # unbiased streams
    assert res.images == 10 and res.final and np.isfinite(res.matrix).all()
    ds = torchvision.datasets.ImageFolder(str(folder), transform=torchvision.transforms.ToTensor())
    shuffled = DataLoader(ds, batch_size=4, shuffle=True)
    with pytest.raises(ValueError, match="new order each pass.*shuffle=False"):
        C.channel_similarity(tiny, shuffled, layers[1], batch_size=4, max_bytes=4 * 16 * 16 * 16 * 4)
    assert C.channel_similarity(tiny, shuffled, layers[1], batch_size=4).images == 12  # one pass: fine
    with pytest.raises(ValueError, match="at least 4 images"):
        C.layer_similarity(tiny, DataLoader(Stream(3), batch_size=4), layers, batch_size=4)
