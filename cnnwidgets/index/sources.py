"""Reading a range of positions of any image set for the index: prepared batches, images that fail to load left out
and named (a file PIL cannot read, a Dataset item that raises)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..imagesets import ImageSet, _ArraySet, _DatasetSet, _ListSet, _LoaderSet


@dataclass
class Read:
    x: torch.Tensor | None  #: the prepared batch of the images that loaded
    refs: list[int]  #: their positions in the set
    failed: list[dict] = field(default_factory=list)  #: {"ref", "name", "error"} of the images left out
    end: int = 0  #: the position after this batch


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip().splitlines()[0][:300]


def _prepare(probe, refs, images, name_of) -> Read:
    try:
        return Read(probe.prepare(images), list(refs), [], refs[-1] + 1)
    except Exception:
        pass
    xs, good, failed = [], [], []
    for r, img in zip(refs, images):
        try:
            xs.append(probe.prepare([img]))
            good.append(r)
        except Exception as e:
            failed.append({"ref": int(r), "name": name_of(r), "error": _error(e)})
    if xs and len({tuple(x.shape[1:]) for x in xs}) > 1:
        raise ValueError("Images came out at different sizes; give the Probe a Preprocess with a crop size, or resize "
                         "the images to one size.")
    return Read(torch.cat(xs) if xs else None, good, failed, refs[-1] + 1)


def _ranges(a: int, b: int, size: int):
    for p in range(a, b, size):
        yield p, min(p + size, b)


def read(s: ImageSet, probe, a: int, b: int | None, batch_size: int):
    """Batches of positions ``a..b-1`` of ``s`` (``b=None``: the whole stream of a set of unknown length)."""
    if isinstance(s, _ListSet):
        name_of = (lambda r: str(s.items[r])) if isinstance(s.items[a], str) else (lambda r: f"image {r} of {s.what}")
        for p, q in _ranges(a, b, batch_size):
            yield _prepare(probe, list(range(p, q)), s.items[p:q], name_of)
    elif isinstance(s, _ArraySet):
        for p, q in _ranges(a, b, batch_size):
            yield _prepare(probe, list(range(p, q)), s._view(slice(p, q)), lambda r: f"image {r} of {s.what}")
    elif isinstance(s, _DatasetSet):
        yield from _items(s, probe, s.dataset, s.reader, a, b, batch_size)
    elif isinstance(s, _LoaderSet):
        yield from _loader(s, probe, a, b, batch_size)
    else:  # pragma: no cover - every kind image_set makes is above
        raise TypeError(f"Cannot index {type(s).__name__}.")


def _items(s, probe, ds, reader, a, b, batch_size):
    """Map-style items one by one: an item that raises is left out and named."""
    for p, q in _ranges(a, b, batch_size):
        refs, images, failed = [], [], []
        for i in range(p, q):
            try:
                images.append(reader.image(ds[i]))
                refs.append(i)
            except Exception as e:
                failed.append({"ref": i, "name": f"item {i} of {s.what}", "error": _error(e)})
        r = _prepare(probe, refs, images, lambda i: f"item {i} of {s.what}") if refs else Read(None, [], [], q)
        r.failed = sorted(failed + r.failed, key=lambda f: f["ref"])
        r.end = q
        yield r


def _loader(s: _LoaderSet, probe, a, b, batch_size):
    from torch.utils.data import DataLoader, IterableDataset, Subset

    ds = s.loader.dataset
    if not (s.sequential and not isinstance(ds, IterableDataset) and hasattr(ds, "__getitem__") and b is not None):
        if a != 0:
            raise ValueError(f"{s.what} has no fixed order (shuffled, or an IterableDataset), so it can be indexed only "
                             "in one pass from its start: use shuffle=False to split or resume it.")
        for batch in s.batches(batch_size):
            yield _prepare(probe, batch.indices, batch.images, lambda r: f"image {r} of {s.what}")
        return
    lb = s.loader.batch_size
    p = a
    while p < b:
        sub = DataLoader(Subset(ds, range(p, b)), batch_size=lb, num_workers=s.loader.num_workers,
                         collate_fn=s.loader.collate_fn)
        it = iter(sub)
        while p < b:
            try:
                raw = next(it)
            except StopIteration:
                p = b
                break
            except Exception:  # an item of this batch failed to load: read them one by one, go on after it
                q = min(p + (lb or 1), b)
                yield from _items(s, probe, ds, s.reader, p, q, batch_size)
                p = q
                break
            images, _ = s._split(raw)
            m = len(images)
            yield _prepare(probe, list(range(p, p + m)), images, lambda r: f"item {r} of {s.what}")
            p += m
