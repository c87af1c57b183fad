"""One way in for every set of images: folders, lists, arrays, Datasets and DataLoaders.

>>> s = cw.image_set("photos/")                  # one sub-folder per class (as ImageFolder), or a flat folder
>>> s = cw.image_set(x, y, classes=["cat", "dog"])   # a tensor NxCxHxW / numpy NxHxW(xC) with labels
>>> s = cw.image_set(torchvision.datasets.MNIST(...))  # a Dataset of (image, label) or of images
>>> s = cw.image_set(loader)                     # a DataLoader, iterated as it is (workers, batching)

What :func:`image_set` takes:

* a folder (str or Path): one sub-folder per class (classes = sorted sub-folder names, as torchvision's
  ``ImageFolder``; hidden files and folders such as ``.ipynb_checkpoints`` are left out), or a flat folder of
  images (no labels). Files that are not images (by extension, then by a look at their header) are skipped:
  ``s.skipped`` counts them and ``s.note`` names them;
* a path to one image file, a PIL image, a list/tuple of paths or of images (PIL, numpy ``HxW``/``HxWxC``,
  tensors ``CxHxW``), or a dict ``{name: image}`` (the names become the labels);
* a tensor ``NxCxHxW`` (float in [0, 1] or uint8) or ``NxHxW`` (gray), a numpy array ``NxHxW``, ``NxHxWxC`` or
  ``NxCxHxW``. A 3-D tensor is one ``CxHxW`` image when C is 1, 3 or 4, else N gray images; a 3-D array is one
  ``HxWxC`` image when its last axis is 1, 3 or 4, else N gray images;
* a Dataset (``__getitem__`` and ``__len__``) whose items are images, ``(image, label)`` pairs or dicts
  (``image_key=``/``label_key=``; keys named image / img / pixel_values / input and label / labels / target / y
  are found alone). Classes come from ``dataset.classes``, labels from ``dataset.targets`` (read without opening
  an image; also through ``Subset`` and ``TensorDataset``), else from the items as they stream;
* a ``DataLoader`` yielding ``(x, y)`` batches, ``x`` batches or dicts, iterated as it is (its workers, batching
  and order), never loaded whole; an ``IterableDataset`` is streamed the same way.

``labels`` (ints or strings, one per image) and ``classes`` (a list of names, or a dict {index: name}) go with
tensors, arrays, lists and Datasets. String labels become class indices in order of first appearance unless
``classes`` names them.

The :class:`ImageSet` API:

* ``len(s)``: the number of images (a ``TypeError`` when unknown, e.g. an IterableDataset without ``__len__``);
* ``s.classes`` (list of names or None), ``s.labels`` (every label as an int when known without reading images,
  else None), ``s.class_name(label)``;
* ``s.batches(batch_size=32, start=0)``: an iterator of :class:`Batch` (``.images``: a tensor ``NxCxHxW`` or a
  list of single images of any kind :func:`cnnwidgets.images.to_tensor` takes, sizes may differ; ``.labels``:
  list of ints or None; ``.indices``: positions in the set). Streamed: one batch of images at a time;
* ``s.image(i)`` and ``s.label(i)``: random access to one image (thumbnails, clicks, top-k views). A DataLoader
  is read through ``loader.dataset[i]`` when its sampler is sequential; a shuffled (or iterable) loader gives a
  new order each pass, so positions are those of the latest pass and ``s.image(i)`` returns the small thumbnail
  (at most 96 px, up to 256 MiB in all) kept of the image seen at position ``i`` in it;
* ``s.description`` for titles (``"folder photos/ · 120 images · 3 classes"``), ``s.skipped`` and ``s.note``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .images import to_tensor

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif")
IMAGE_KEYS = ("image", "img", "pixel_values", "input")
LABEL_KEYS = ("label", "labels", "target", "y")
THUMB = 96  #: largest side of the thumbnails kept of a shuffled DataLoader's images
THUMB_BYTES = 256 << 20  #: at most this much of them


@dataclass
class Batch:
    """A few images of a set: ``images`` (tensor ``NxCxHxW`` or list of images), ``labels``, ``indices``."""

    images: Any
    labels: list[int] | None
    indices: list[int]

    def __len__(self) -> int:
        return len(self.indices)


def _names(items, k: int = 3) -> str:
    items = list(items)
    return ", ".join(items[:k]) + (", ..." if len(items) > k else "")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class ImageSet:
    """Images with optional labels and class names; made by :func:`image_set` (see the module docstring)."""

    def __init__(self, what: str, n: int | None, labels=None, classes=None):
        self.what = what  #: what the set was made from, e.g. ``"folder photos/"``
        self._n = n
        self._names: dict[int, str] | None = None
        self._by_name: dict[str, int] = {}
        self._given = classes is not None  # classes named in order (by the user, the folders, the dataset)
        self._repeatable = True  # every pass gives the same images in the same order
        self.skipped = 0  #: files left out (not images, unreadable)
        self.note = ""  #: one line saying what was left out, or ""
        self._set_classes(classes)
        self._labels: list[int] | None = None
        if labels is not None:
            labels = _label_list(labels)
            if n is not None and len(labels) != n:
                raise ValueError(f"Got {len(labels)} labels for {n} images; give one label per image.")
            self._labels = [self._encode(l) for l in labels]

    # --- classes and labels -----------------------------------------------------------------------
    def _set_classes(self, classes) -> None:
        if classes is None:
            return
        if isinstance(classes, dict):
            names = {int(k): str(v) for k, v in classes.items()}
        elif isinstance(classes, (list, tuple)) or (isinstance(classes, np.ndarray) and classes.ndim == 1):
            names = {i: str(c) for i, c in enumerate(classes)}
        else:
            raise TypeError(f"classes must be a list of names or a dict {{index: name}}, got {type(classes).__name__}.")
        self._names = names
        self._by_name = {v: k for k, v in names.items()}
        self._given = True

    def _encode(self, label) -> int:
        """One label (int, numpy/tensor scalar, or class name) -> its class index."""
        if isinstance(label, (torch.Tensor, np.ndarray)):
            if (label.size if isinstance(label, np.ndarray) else label.numel()) != 1:
                raise ValueError(f"A label must be one number or a class name, got an array of shape {tuple(label.shape)}.")
            label = label.item()
        if isinstance(label, np.generic):
            label = label.item()
        if isinstance(label, str):
            if label in self._by_name:
                return self._by_name[label]
            if self._given:
                raise ValueError(f"Label {label!r} is not one of the classes ({_names(self.classes or [], 8)}).")
            i = len(self._by_name)
            self._by_name[label] = i
            self._names = {**(self._names or {}), i: label}
            return i
        if isinstance(label, float) and label.is_integer():
            label = int(label)
        if isinstance(label, (int, bool)):
            return int(label)
        raise TypeError(f"A label must be an int or a class name (str), got {type(label).__name__}: {label!r}.")

    @property
    def classes(self) -> list[str] | None:
        """Class names in index order, or None when the set has none."""
        return None if not self._names else [self._names[k] for k in sorted(self._names)]

    @property
    def labels(self) -> list[int] | None:
        """Every image's label (class index), when known without reading the images; else None."""
        return None if self._labels is None else list(self._labels)

    def class_name(self, label) -> str:
        """The name of class ``label`` (its number as text when the set names no classes)."""
        if isinstance(label, str):
            return label
        i = self._encode(label)
        return (self._names or {}).get(i, str(i))

    def label(self, i: int) -> int | None:
        """The label of image ``i`` (None when the set has no labels)."""
        i = self._index(i)
        if self._labels is not None:
            return self._labels[i]
        return self._label_at(i)

    def _label_at(self, i: int) -> int | None:
        return None

    def _read_ahead(self, stop: int) -> None:
        """Make images ``0..stop-1`` available to :meth:`image` (only a shuffled or iterable loader needs to stream)."""

    # --- images ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        if self._n is None:
            raise TypeError(f"The number of images in {self.what} is unknown (it is only streamed: an IterableDataset "
                            "without __len__?). Give it a __len__, or use an analysis that streams without a count.")
        return self._n

    def _index(self, i: int) -> int:
        i = int(i)
        if self._n is not None:
            if i < 0:
                i += self._n
            if not 0 <= i < self._n:
                raise IndexError(f"Image {i} is out of range: {self.what} has {self._n} images (0..{self._n - 1}).")
        elif i < 0:
            raise IndexError(f"Image {i}: negative positions need a known length, and {self.what} has none.")
        return i

    def batches(self, batch_size: int = 32, start: int = 0) -> Iterator[Batch]:
        """Batches of ``batch_size`` images (the last may be smaller) from image ``start`` on, streamed."""
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        return self._stream(batch_size, int(start))

    def _stream(self, batch_size: int, start: int) -> Iterator[Batch]:  # pragma: no cover - each kind overrides it
        raise NotImplementedError

    def image(self, i: int):
        """Image ``i`` as the source holds it (a path, PIL image, array or tensor)."""
        raise NotImplementedError  # pragma: no cover

    @property
    def description(self) -> str:
        """``"folder photos/ · 120 images · 3 classes"``: for panel titles."""
        parts = [self.what]
        if self._n is not None:
            parts.append(_plural(self._n, "image"))
        if self._names:
            parts.append(_plural(len(self._names), "class").replace("classs", "classes"))
        elif self._labels is not None:
            parts.append(_plural(len(set(self._labels)), "label"))
        return " · ".join(parts)

    def __repr__(self) -> str:
        return f"ImageSet({self.description}{'; ' + self.note if self.note else ''})"


def known_length(s: ImageSet) -> int | None:
    """``len(s)``, or None when the set does not know it."""
    return s._n


def class_order(s: ImageSet, labels) -> list[int]:
    """The distinct ``labels`` in legend order: by class index when the set's classes are named in order (given,
    folders, a dataset's ``classes``) or are numbers, else (names collected from string labels) by name."""
    found = sorted({int(l) for l in labels})
    if s._given or not s._names:
        return found
    return sorted(found, key=lambda l: s.class_name(l))


# --- kinds of sets ---------------------------------------------------------------------------------

class _ListSet(ImageSet):
    """A list of images or paths (and a folder, as its list of files)."""

    def __init__(self, items: list, what: str, labels=None, classes=None):
        self.items = items
        super().__init__(what, len(items), labels, classes)

    def _stream(self, batch_size, start):
        n = len(self.items)
        for a in range(start, n, batch_size):
            b = min(a + batch_size, n)
            yield Batch(self.items[a:b], None if self._labels is None else self._labels[a:b], list(range(a, b)))

    def image(self, i):
        return self.items[self._index(i)]


class _ArraySet(ImageSet):
    """A tensor ``NxCxHxW`` / ``NxHxW`` or a numpy array ``NxHxW`` / ``NxHxWxC`` / ``NxCxHxW``."""

    def __init__(self, array, layout: str, what: str, labels=None, classes=None):
        self.array, self.layout = array, layout
        super().__init__(what, int(array.shape[0]), labels, classes)

    def _view(self, sl: slice):
        a = self.array[sl]
        if self.layout == "NHW":
            return a[:, None] if isinstance(a, torch.Tensor) else a[..., None]
        if self.layout == "NCHW" and isinstance(a, np.ndarray):
            return a.transpose(0, 2, 3, 1)  # numpy images are HxWxC (to_tensor reads uint8/uint16/float alike)
        return a

    def _stream(self, batch_size, start):
        n = self._n
        for a in range(start, n, batch_size):
            b = min(a + batch_size, n)
            yield Batch(self._view(slice(a, b)), None if self._labels is None else self._labels[a:b], list(range(a, b)))

    def image(self, i):
        i = self._index(i)
        return self._view(slice(i, i + 1))[0]


class _Reader:
    """How an item (of a Dataset, or an unbatched DataLoader) holds its image and label."""

    def __init__(self, kind: str, image_key=None, label_key=None):
        self.kind, self.image_key, self.label_key = kind, image_key, label_key

    def image(self, item):
        if self.kind == "dict":
            return item[self.image_key]
        return item if self.kind == "image" else item[0]  # "pair" (image, label) or "first" (image,)

    def label(self, item):
        if self.kind == "dict":
            v = item.get(self.label_key) if self.label_key is not None else None
        elif self.kind == "pair":
            v = item[1]
        else:
            return None
        return v if _label_like(v) else None  # a mask or a box is not a class label


def _is_image(x) -> bool:
    if isinstance(x, Image.Image):
        return True
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return x.ndim in (2, 3)
    return isinstance(x, (str, os.PathLike)) and os.path.isfile(x)  # a path; other text is not an image


def _label_like(v) -> bool:
    if isinstance(v, (bool, int, np.integer, str)):
        return True
    if isinstance(v, float):
        return v.is_integer()
    if isinstance(v, (torch.Tensor, np.ndarray)) and (v.numel() if isinstance(v, torch.Tensor) else v.size) == 1:
        x = v.item()
        return isinstance(x, (int, bool)) or (isinstance(x, float) and x.is_integer())
    return False


def _describe(x) -> str:
    if isinstance(x, (torch.Tensor, np.ndarray)):
        return f"a {type(x).__name__} of shape {tuple(x.shape)}"
    if isinstance(x, (tuple, list)):
        inner = ", ".join(type(v).__name__ for v in x[:4]) + (", ..." if len(x) > 4 else "")
        return f"a {type(x).__name__} of {len(x)} ({inner})"
    if isinstance(x, dict):
        return f"a dict with keys {list(x)}"
    return f"a {type(x).__name__} ({x!r:.40})"


def _pick_key(item: dict, key, wanted, where: str, what: str, required: bool):
    keys = list(item)
    if key is not None:
        if key not in item:
            raise ValueError(f"{where} has no key {key!r}: its keys are {keys}.")
        return key
    found = [k for k in wanted if k in item]
    if len(found) == 1:
        return found[0]
    if not required:
        return found[0] if found else None
    hint = f"{what}_key={keys[0]!r}" if keys else f"{what}_key=..."
    which = f"several ({found})" if found else "none"
    raise ValueError(f"{where} is a dict with keys {keys}; {which} of them is named like an image "
                     f"({'/'.join(wanted)}): say which key holds the {what}, e.g. image_set(..., {hint}).")


def _reader_for(item, image_key, label_key, where: str) -> _Reader:
    """Look at one item (item 0) and decide how to read every item; a clear error when it holds no image."""
    if isinstance(item, dict):
        ik = _pick_key(item, image_key, IMAGE_KEYS, where, "image", True)
        lk = _pick_key(item, label_key, LABEL_KEYS, where, "label", False)
        reader = _Reader("dict", ik, lk)
    elif image_key is not None:
        raise ValueError(f"image_key= is for items that are dicts; {where} is {_describe(item)}.")
    elif _is_image(item):
        reader = _Reader("image")
    elif isinstance(item, (tuple, list)) and item and _is_image(item[0]):
        reader = _Reader("pair" if len(item) >= 2 else "first")
    else:
        raise TypeError(f"{where} is {_describe(item)}: expected an image (PIL image, tensor CxHxW, numpy array, "
                        "path) or an (image, label) pair; for dict items pass image_key=.")
    _check_image(reader.image(item), where)
    return reader


def _check_image(img, where: str) -> None:
    """Convert one image now so a bad one is named at construction, not deep inside a job."""
    t = torch.from_numpy(np.asarray(img, np.float32)) if isinstance(img, np.ndarray) and \
        np.issubdtype(img.dtype, np.floating) else img
    if isinstance(t, torch.Tensor) and t.is_floating_point() and t.numel() and bool(torch.isfinite(t).all()):
        lo, hi = float(t.min()), float(t.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(
                f"{where} holds an image with values in [{lo:.3g}, {hi:.3g}], not in [0, 1]: its transform "
                "normalises it (transforms.Normalize?). Give cnnwidgets the images before normalisation: the Probe "
                "normalises them for the model itself.")
    try:
        to_tensor(img)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise type(e)(f"{where}: {e}") from None


def _targets(ds, n: int):
    """A Dataset's labels read without opening an image (``targets``/``labels``, through Subset, TensorDataset)."""
    from torch.utils.data import Subset, TensorDataset

    if isinstance(ds, Subset):
        base = _targets(ds.dataset, len(ds.dataset))
        return None if base is None else [base[int(i)] for i in ds.indices]
    if isinstance(ds, TensorDataset) and len(ds.tensors) >= 2:
        t = ds.tensors[1]
        if t.ndim == 1 and not t.is_floating_point() and not t.is_complex():
            return t.tolist()
        return None
    for attr in ("targets", "labels"):
        v = getattr(ds, attr, None)
        if isinstance(v, (torch.Tensor, np.ndarray)) and v.ndim == 1 and len(v) == n:
            if isinstance(v, torch.Tensor) and (v.is_floating_point() or v.is_complex()):
                continue
            return v.tolist()
        if isinstance(v, (list, tuple)) and len(v) == n and all(_label_like(x) for x in v[:100]):
            return list(v)
    return None


def _dataset_classes(ds, label_key=None):
    from torch.utils.data import Subset

    while isinstance(ds, Subset):
        ds = ds.dataset
    c2i = getattr(ds, "class_to_idx", None)
    if isinstance(c2i, dict) and c2i and all(isinstance(v, int) for v in c2i.values()):
        return {v: str(k) for k, v in c2i.items()}
    classes = getattr(ds, "classes", None)
    if isinstance(classes, (list, tuple)) and classes:
        return list(classes)
    feats = getattr(ds, "features", None)  # a Hugging Face dataset: features[label].names
    try:
        names = feats[label_key].names if label_key is not None and feats is not None else None
    except Exception:
        names = None
    return list(names) if names else None


class _DatasetSet(ImageSet):
    """A map-style Dataset: items read with ``dataset[i]``, one batch at a time."""

    def __init__(self, ds, what: str, labels=None, classes=None, image_key=None, label_key=None):
        self.dataset = ds
        n = len(ds)
        if n == 0:
            raise ValueError(f"{what} is empty: it has no images.")
        try:
            first = ds[0]
        except Exception as e:
            raise type(e)(f"Reading item 0 of {what} raised {type(e).__name__}: {e}") from None
        self.reader = _reader_for(first, image_key, label_key, f"Item 0 of {what}")
        if classes is None:
            classes = _dataset_classes(ds, self.reader.label_key)
        if labels is None:
            labels = _targets(ds, n)
        super().__init__(what, n, labels, classes)

    def _stream(self, batch_size, start):
        n = self._n
        for a in range(start, n, batch_size):
            b = min(a + batch_size, n)
            items = [self.dataset[i] for i in range(a, b)]
            images = [self.reader.image(it) for it in items]
            if self._labels is not None:
                labels = self._labels[a:b]
            else:
                raw = [self.reader.label(it) for it in items]
                labels = None if any(l is None for l in raw) else [self._encode(l) for l in raw]
            del items
            yield Batch(images, labels, list(range(a, b)))

    def image(self, i):
        return self.reader.image(self.dataset[self._index(i)])

    def _label_at(self, i):
        l = self.reader.label(self.dataset[i])
        return None if l is None else self._encode(l)


def _loader_length(loader) -> int | None:
    from torch.utils.data import BatchSampler

    try:
        bs = loader.batch_sampler
        if bs is None:
            return len(loader.sampler)
        if isinstance(bs, BatchSampler):
            m = len(bs.sampler)
            return (m // bs.batch_size) * bs.batch_size if bs.drop_last else m
        return len(loader.dataset)
    except TypeError:
        try:
            return len(loader.dataset)
        except TypeError:
            return None


def _sequential(loader) -> bool:
    from torch.utils.data import BatchSampler, IterableDataset, SequentialSampler

    if isinstance(loader.dataset, IterableDataset):
        return False
    bs = loader.batch_sampler
    if bs is None:
        return isinstance(loader.sampler, SequentialSampler)
    return type(bs) is BatchSampler and isinstance(bs.sampler, SequentialSampler)


def _as_batch_images(x):
    """A batch's images as the Probe takes them: ``NxCxHxW`` tensors stay; ``NxHxW`` gains a channel axis."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if isinstance(x, torch.Tensor):
        if x.ndim == 3:
            return x[:, None]
        if x.ndim == 4 and x.shape[1] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
            return x.permute(0, 3, 1, 2)
        return x
    return list(x)


def _count(images) -> int:
    return int(images.shape[0]) if isinstance(images, (torch.Tensor, np.ndarray)) else len(images)


def _cat(parts: list):
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, torch.Tensor) for p in parts) and len({tuple(p.shape[1:]) for p in parts}) == 1:
        return torch.cat(parts)
    out = []
    for p in parts:
        out += list(p)
    return out


def _label_list(labels) -> list:
    if isinstance(labels, (torch.Tensor, np.ndarray)):
        return labels.tolist() if labels.ndim == 1 else list(labels)
    if isinstance(labels, (str, bytes)) or not hasattr(labels, "__len__"):
        raise TypeError(f"labels must be a list (or 1-D array) with one label per image, got {type(labels).__name__}.")
    return list(labels)


def _small(img) -> torch.Tensor:
    """A uint8 thumbnail (largest side at most THUMB) of one image, its own channel count (1 or 3)."""
    import torchvision.transforms.v2.functional as TF

    gray = (isinstance(img, torch.Tensor) and img.ndim == 3 and img.shape[0] == 1) or \
           (isinstance(img, Image.Image) and img.mode in ("L", "I;16", "I", "F", "1"))
    t = to_tensor(img, 1 if gray else 3)
    if max(t.shape[-2:]) > THUMB:
        s = THUMB / max(t.shape[-2:])
        t = TF.resize(t, [max(2, round(t.shape[-2] * s)), max(2, round(t.shape[-1] * s))], antialias=True)
    return (t.clamp(0, 1) * 255).round().to(torch.uint8)


class _LoaderSet(ImageSet):
    """A DataLoader, iterated as it is; its batches are cut or joined to the batch size asked for."""

    def __init__(self, loader, what: str, classes=None, image_key=None, label_key=None):
        from torch.utils.data import IterableDataset

        self.loader = loader
        self.image_key, self.label_key = image_key, label_key
        ds = loader.dataset
        self.sequential = _sequential(loader)
        self.reader = None
        labels = None
        n = _loader_length(loader)
        if n == 0:
            raise ValueError(f"{what} is empty: it has no images.")
        if not isinstance(ds, IterableDataset) and hasattr(ds, "__getitem__"):
            try:
                first = ds[0]
            except Exception as e:
                raise type(e)(f"Reading item 0 of the DataLoader's dataset raised {type(e).__name__}: {e}") from None
            self.reader = _reader_for(first, image_key, label_key, f"Item 0 of the DataLoader's dataset ({type(ds).__name__})")
            self.image_key, self.label_key = self.reader.image_key, self.reader.label_key
            if classes is None:
                classes = _dataset_classes(ds, self.label_key)
            if self.sequential and n is not None:
                t = _targets(ds, len(ds))
                labels = None if t is None else t[:n]
        super().__init__(what, n, labels, classes)
        self._repeatable = self.sequential
        self._thumbs: dict[int, torch.Tensor] = {}
        self._seen: dict[int, int | None] = {}
        self._thumb_bytes = 0

    # one batch of the loader -> (images, labels or None)
    def _split(self, batch):
        if self.loader.batch_sampler is None:  # unbatched: every element is one item
            return self._split_items([batch])
        if isinstance(batch, dict):
            if self.reader is None:
                self.reader = _reader_for(batch, self.image_key, self.label_key, "A batch of the DataLoader")
            ik = _pick_key(batch, self.reader.image_key, IMAGE_KEYS, "A batch of the DataLoader", "image", True)
            lk = self.reader.label_key
            return _as_batch_images(batch[ik]), self._batch_labels(batch.get(lk) if lk is not None else None)
        if isinstance(batch, (torch.Tensor, np.ndarray)):
            return _as_batch_images(batch), None
        if isinstance(batch, (list, tuple)) and batch:
            x = batch[0]
            if isinstance(x, (torch.Tensor, np.ndarray)) and (x.ndim == 4 or (x.ndim == 3 and len(batch) >= 2 and
                                                                                _is_label_batch(batch[1], x.shape[0]))):
                return _as_batch_images(x), self._batch_labels(batch[1]) if len(batch) >= 2 else None
            if isinstance(x, (list, tuple)) and x and _is_image(x[0]) and (len(batch) == 1 or (
                    len(batch) >= 2 and _is_label_batch(batch[1], len(x)))):  # (list of images, labels) of any sizes
                return list(x), self._batch_labels(batch[1]) if len(batch) >= 2 else None
            return self._split_items(batch)  # a list of items (collate_fn=lambda b: b)
        raise TypeError(f"The DataLoader yielded {_describe(batch)}: expected (images, labels) batches, image batches "
                        "(a tensor NxCxHxW) or dicts (pass image_key=).")

    def _split_items(self, items):
        if self.reader is None:
            self.reader = _reader_for(items[0], self.image_key, self.label_key, "The DataLoader's first item")
        images = [self.reader.image(it) for it in items]
        raw = [self.reader.label(it) for it in items]
        return images, None if any(l is None for l in raw) else raw

    def _batch_labels(self, y):
        if y is None:
            return None
        if isinstance(y, (torch.Tensor, np.ndarray)):
            if y.ndim != 1 or (isinstance(y, torch.Tensor) and (y.is_floating_point() and not bool((y == y.round()).all()))):
                return None  # not class labels (masks, boxes, regression targets)
            return y.tolist()
        if isinstance(y, (list, tuple)) and all(_label_like(v) for v in y):
            return list(y)
        return None

    def _raw_stream(self):
        """(images, labels) of each loader batch, as the loader gives them."""
        for batch in self.loader:
            images, labels = self._split(batch)
            yield images, None if labels is None else [self._encode(l) for l in labels]

    def _stream(self, batch_size, start):
        keep = not self.sequential
        if keep and start == 0:  # a new pass: new positions
            self._thumbs, self._seen, self._thumb_bytes = {}, {}, 0
        pos = 0  # images of this pass so far
        parts, labs = [], []
        have = 0
        out = start
        for images, labels in self._raw_stream():
            m = _count(images)
            if keep:
                self._remember(pos, images, labels)
            a, pos = pos, pos + m
            if pos <= start:
                continue
            if a < start:  # the part of this batch before `start` is skipped
                images = images[start - a:]
                labels = None if labels is None else labels[start - a:]
            parts.append(images)
            labs.append(labels)
            have += _count(images)
            while have >= batch_size:
                joined = _cat(parts)
                jl = None if any(l is None for l in labs) else [v for l in labs for v in l]
                yield Batch(joined[:batch_size], None if jl is None else jl[:batch_size], list(range(out, out + batch_size)))
                out += batch_size
                rest = joined[batch_size:]
                have -= batch_size
                parts = [rest] if have else []
                labs = [None if jl is None else jl[batch_size:]] if have else []
        if have:
            joined = _cat(parts)
            jl = None if any(l is None for l in labs) else [v for l in labs for v in l]
            yield Batch(joined, jl, list(range(out, out + have)))

    def _remember(self, pos, images, labels):
        for j in range(_count(images)):
            if self._thumb_bytes < THUMB_BYTES:
                t = _small(images[j])
                self._thumbs[pos + j] = t
                self._thumb_bytes += t.numel()
            self._seen[pos + j] = None if labels is None else labels[j]

    def image(self, i):
        i = self._index(i)
        if self.sequential:
            return self.reader.image(self.loader.dataset[i])
        if i in self._thumbs:
            return self._thumbs[i]
        if i in self._seen:
            raise IndexError(f"Image {i} was streamed but not kept: thumbnails of a shuffled DataLoader are kept up to "
                             f"{THUMB_BYTES >> 20} MiB. Use a DataLoader with shuffle=False to see every image.")
        raise IndexError(f"Image {i} has not been streamed yet: a shuffled DataLoader has no fixed order, so its images "
                         "are known only once an analysis has run over it (or use shuffle=False).")

    def _read_ahead(self, stop):
        if self.sequential or (stop - 1) in self._seen:
            return
        for b in self._stream(max(1, stop), 0):  # a new pass, read up to `stop` (its order is the one shown)
            if b.indices[-1] >= stop - 1:
                break

    def _label_at(self, i):
        if self.sequential and self.reader is not None:
            l = self.reader.label(self.loader.dataset[i])
            return None if l is None else self._encode(l)
        return self._seen.get(i)


def _is_label_batch(y, n: int) -> bool:
    if isinstance(y, (torch.Tensor, np.ndarray)):
        return y.ndim == 1 and y.shape[0] == n
    return isinstance(y, (list, tuple)) and len(y) == n and all(_label_like(v) for v in y)


# --- folders ---------------------------------------------------------------------------------------

def _readable(path: str) -> bool:
    """PIL recognises the file (reads its header only, not the pixels)."""
    try:
        with Image.open(path):
            return True
    except (UnidentifiedImageError, OSError, ValueError):
        return False


def _folder(root: Path, classes=None) -> _ListSet:
    root_s = str(root)
    entries = sorted((e for e in os.scandir(root_s) if not e.name.startswith(".")), key=lambda e: e.name)
    dirs = [e.name for e in entries if e.is_dir()]
    loose = [e.name for e in entries if not e.is_dir()]
    name = f"folder {root.name or root_s}/"
    if not entries:
        raise ValueError(f"Folder {root_s!r} is empty: put images in it (PNG, JPEG, ...), or one sub-folder of images "
                         "per class.")
    files: list[str] = []
    labels: list[int] | None = None
    outside: list[str] = []
    if dirs:
        labels = []
        for k, d in enumerate(dirs):
            for here, subdirs, fnames in sorted(os.walk(os.path.join(root_s, d), followlinks=True)):
                subdirs[:] = sorted(s for s in subdirs if not s.startswith("."))
                for f in sorted(fnames):
                    if not f.startswith("."):
                        files.append(os.path.join(here, f))
                        labels.append(k)
        outside = loose
    else:
        files = [os.path.join(root_s, f) for f in loose]
    rel = lambda p: os.path.relpath(p, root_s)  # noqa: E731
    not_images = [p for p in files if not p.lower().endswith(IMAGE_EXTENSIONS)]
    candidates = [(p, l) for p, l in zip(files, labels or [None] * len(files)) if p.lower().endswith(IMAGE_EXTENSIONS)]
    unreadable = [p for p, _ in candidates if not _readable(p)]
    bad = set(unreadable)
    kept = [(p, l) for p, l in candidates if p not in bad]
    notes = []
    if not_images:
        notes.append(f"{_plural(len(not_images), 'file')} that {'is' if len(not_images) == 1 else 'are'} not "
                     f"{'an image' if len(not_images) == 1 else 'images'} ({_names(map(rel, not_images))})")
    if unreadable:
        notes.append(f"{_plural(len(unreadable), 'image file')} PIL cannot read ({_names(map(rel, unreadable))})")
    if outside:
        notes.append(f"{_plural(len(outside), 'file')} beside the class folders ({_names(outside)}; images belong in "
                     "their class's sub-folder)")
    if not kept:
        found = "; ".join(notes) if notes else f"its sub-folders ({_names(dirs)}) hold no files"
        raise ValueError(f"Folder {root_s!r} has no images: found {found}. Expected {', '.join(IMAGE_EXTENSIONS)} files, "
                         "directly in the folder or in one sub-folder per class.")
    s = _ListSet([p for p, _ in kept], name, [l for _, l in kept] if labels is not None else None,
                 classes if classes is not None else (dirs if labels is not None else None))
    s.skipped = len(not_images) + len(unreadable) + len(outside)
    used = {l for _, l in kept}
    empty = [d for k, d in enumerate(dirs) if labels is not None and k not in used]
    lines = ["skipped " + "; ".join(notes)] if notes else []
    if empty:
        lines.append(f"class folder{'s' if len(empty) > 1 else ''} {_names(empty)} "
                     f"{'have' if len(empty) > 1 else 'has'} no images")
    s.note = "; ".join(lines)
    return s


# --- the one entry point ---------------------------------------------------------------------------

def image_set(images, labels=None, classes=None, *, image_key: str | None = None, label_key: str | None = None) -> ImageSet:
    """Any set of images as an :class:`ImageSet` (see the module docstring for what it takes); an ImageSet
    passes through unchanged."""
    from torch.utils.data import DataLoader, IterableDataset

    if isinstance(images, ImageSet):
        if labels is not None or classes is not None:
            raise ValueError("This is already an ImageSet with its own labels: pass labels= and classes= to "
                             "image_set(images, labels, classes) when you make it.")
        return images
    no_labels = "labels= goes with tensors, arrays and lists; {} gives its own labels (classes= may still name them)."
    if isinstance(images, (str, os.PathLike)):
        path = Path(images).expanduser()
        if path.is_dir():
            if labels is not None:
                raise ValueError(no_labels.format("a folder (one sub-folder per class)"))
            return _folder(path, classes)
        if not path.exists():
            raise FileNotFoundError(f"No such file or folder: {str(path)!r} (cwd is {os.getcwd()!r}).")
        return _ListSet([str(path)], f"file {path.name}", labels, classes)
    if isinstance(images, Image.Image):
        return _ListSet([images], "PIL image", labels, classes)
    if isinstance(images, dict):
        if labels is None:
            labels = [str(k) for k in images]
        return _ListSet(list(images.values()), "dict", labels, classes)
    if isinstance(images, (list, tuple)):
        items = list(images)
        if not items:
            raise ValueError("Got an empty list: expected images (paths, PIL images, arrays, tensors).")
        if isinstance(items[0], (str, os.PathLike)):
            missing = [str(p) for p in items if isinstance(p, (str, os.PathLike)) and not os.path.isfile(p)]
            if missing:
                raise FileNotFoundError(f"{_plural(len(missing), 'path')} of the list {'is' if len(missing) == 1 else 'are'} "
                                        f"not an image file: {_names(missing)}.")
            return _ListSet([str(p) if isinstance(p, os.PathLike) else p for p in items], "list of files", labels, classes)
        return _ListSet(items, "list", labels, classes)
    if isinstance(images, (torch.Tensor, np.ndarray)):
        a = images
        kind = type(a).__name__ if isinstance(a, np.ndarray) else "tensor"
        shape = "×".join(map(str, a.shape))
        if a.ndim == 4:
            if isinstance(a, np.ndarray) and a.shape[-1] in (1, 3, 4):
                layout = "NHWC"
            elif a.shape[1] in (1, 3, 4):
                layout = "NCHW"
            elif isinstance(a, torch.Tensor) and a.shape[-1] in (1, 3, 4):
                raise ValueError(f"Got a tensor of shape {tuple(a.shape)}: tensors are NxCxHxW; use t.permute(0, 3, 1, 2).")
            else:
                raise ValueError(f"Got a 4-D {kind} of shape {tuple(a.shape)}: expected NxCxHxW (or NxHxWxC for numpy) "
                                 "with C = 1, 3 or 4 channels.")
            return _ArraySet(a, layout, f"{kind} {shape}", labels, classes)
        if a.ndim == 3:
            single = a.shape[0] in (1, 3, 4) if isinstance(a, torch.Tensor) else a.shape[-1] in (1, 3, 4)
            if single:
                return _ListSet([a], f"{kind} {shape}", labels, classes)
            return _ArraySet(a, "NHW", f"{kind} {shape}", labels, classes)
        if a.ndim == 2:
            return _ListSet([a], f"{kind} {shape}", labels, classes)
        raise ValueError(f"Got a {a.ndim}-D {kind} of shape {tuple(a.shape)}: expected images NxCxHxW, NxHxW or one "
                         "image (HxW, CxHxW).")
    if isinstance(images, DataLoader):
        if labels is not None:
            raise ValueError(no_labels.format("a DataLoader"))
        ds = images.dataset
        what = f"DataLoader over {type(ds).__name__}"
        if images.batch_size:
            order = "" if _sequential(images) else (", streamed" if isinstance(ds, IterableDataset) else ", shuffled")
            what += f" (batches of {images.batch_size}{order})"
        return _LoaderSet(images, what, classes, image_key, label_key)
    if isinstance(images, IterableDataset):
        if labels is not None:
            raise ValueError(no_labels.format("an IterableDataset"))
        return _LoaderSet(DataLoader(images, batch_size=None), type(images).__name__, classes, image_key, label_key)
    if hasattr(images, "__getitem__") and hasattr(images, "__len__"):
        return _DatasetSet(images, type(images).__name__, labels, classes, image_key, label_key)
    raise TypeError(f"Got {type(images).__name__}: expected a set of images: a folder path, a list of paths or images, "
                    "a tensor NxCxHxW, a numpy array, a Dataset or a DataLoader.")
