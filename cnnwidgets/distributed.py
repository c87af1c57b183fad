"""The dataset-scale jobs across processes and GPUs with ``torch.distributed`` (``torchrun``), and in one process.

Each rank streams its own part of the image set (the index: shards ``rank::world_size`` of ``shard_images`` images;
CKA and features: minibatches ``rank::world_size``), then the results meet: the index's top-k lists merge, the HSIC
sums of minibatch CKA are all-reduced, the features are gathered in the set's order. Rank 0 writes the index.
Without a process group (a notebook, a script) the same code runs in one process.

    torchrun --nproc_per_node 2 -m cnnwidgets index --model resnet18 --images photos/ --out photos.index

The backend is NCCL when the ranks have GPUs, gloo otherwise (:func:`init`). Results travel as npz bytes (no pickle).
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from .runner import Step, run


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def part(self) -> tuple[int, int]:
        return self.rank, self.size


def world() -> World:
    """This process's rank and the number of processes (``World(0, 1)`` without a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init(backend: str | None = None) -> World:
    """Join the process group ``torchrun`` describes (environment ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...): NCCL
    when CUDA is there, gloo otherwise. Does nothing outside torchrun, or when a group already exists."""
    import torch.distributed as dist

    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return world()
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return world()


def device() -> torch.device:
    """This rank's device: its GPU (``LOCAL_RANK``) under NCCL, else the CPU."""
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cuda" if torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) <= 1 else "cpu")


def _comm_device() -> torch.device:
    import torch.distributed as dist

    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def gather_bytes(data: bytes) -> list[bytes]:
    """Every rank's ``data``, in rank order, on every rank (``[data]`` in one process)."""
    import torch.distributed as dist

    w = world()
    if w.size == 1:
        return [data]
    dev = _comm_device()
    size = torch.tensor([len(data)], dtype=torch.int64, device=dev)
    sizes = [torch.zeros_like(size) for _ in range(w.size)]
    dist.all_gather(sizes, size)
    sizes = [int(s.item()) for s in sizes]
    buf = torch.zeros(max(sizes), dtype=torch.uint8, device=dev)
    buf[:len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8).to(dev) if data else buf[:0]
    parts = [torch.zeros_like(buf) for _ in range(w.size)]
    dist.all_gather(parts, buf)
    return [p[:n].cpu().numpy().tobytes() for p, n in zip(parts, sizes)]


def _npz(arrays: dict) -> bytes:
    b = io.BytesIO()
    np.savez(b, **arrays)
    return b.getvalue()


def _unnpz(data: bytes) -> dict:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def barrier() -> None:
    import torch.distributed as dist

    if world().size > 1:
        dist.barrier()


# --- the index ----------------------------------------------------------------------------------------------------

def index_steps(probe, images, layers=None, *, k: int = 16, batch_size: int = 32, out=None, stop=None,
                shard_images: int | None = None) -> Iterator[Step]:
    """:func:`cnnwidgets.index.build_steps` over this rank's shards, then every rank's index merged (on every rank);
    rank 0 writes it to ``out``. The last Step's value is the whole index."""
    from pathlib import Path

    from .index import core

    w = world()
    kw = {} if shard_images is None else {"shard_images": shard_images}
    last = None
    for last in core.build_steps(probe, images, layers, k=k, batch_size=batch_size, out=out, stop=stop, part=w.part,
                                 **kw):
        yield last
    if w.size == 1:
        return
    mine = last.value
    merged = core.merge(*[core.from_bytes(b) for b in gather_bytes(mine.to_bytes())])
    if merged.num_images == 0 and merged.skipped:
        sk = merged.skipped
        raise ValueError(f"None of the {len(sk)} images could be read ({', '.join(x['name'] for x in sk[:3])}"
                         f"{', ...' if len(sk) > 3 else ''}): {sk[0]['error']}")
    if w.rank == 0 and out is not None and merged.complete:
        merged.save(Path(out).expanduser())
    barrier()
    info = dict(last.info or {}, images=merged.num_images, skipped=len(merged.skipped),
                skipped_names=[s["name"] for s in merged.skipped])
    yield Step(merged.num_images, merged.meta["set"]["length"], merged, info)


def build_index(probe, images, layers=None, **kwargs):
    """:func:`index_steps` run to the end: the merged :class:`cnnwidgets.index.Index`."""
    return run(index_steps(probe, images, layers, **kwargs)).value


# --- minibatches rank::world_size ---------------------------------------------------------------------------------

def _own_batches(s, splits, rank: int, size: int, batch_size: int):
    """The batches ``splits[rank::size]`` of image set ``s`` (each ``(i, Batch)``), read from their start where the
    set allows it; a DataLoader is streamed and the others' batches skipped."""
    from .analyses import cka as C
    from .imagesets import _LoaderSet

    if isinstance(s, _LoaderSet) or size == 1:
        for i, batch in enumerate(C._chunks(s, batch_size)):
            if i % size == rank:
                yield i, batch
        return
    for i in range(rank, len(splits), size):
        a, b = splits[i]
        yield i, next(iter(s.batches(b - a, a)))


def similarity_steps(probe, images, layers=None, *, batch_size: int = 32, kernel: str = "linear",
                     sigma: float = 1.0) -> Iterator[Step]:
    """Minibatch (unbiased) CKA between ``layers`` over ``images``, each rank on minibatches ``rank::world_size``,
    HSIC sums all-reduced: in one process the same as ``cw.cka.layer_similarity(..., estimator="unbiased")``; across
    processes the same batches and the same per-batch values (sums to float64 rounding)."""
    import torch.distributed as dist

    from .analyses import cka as C
    from .imagesets import image_set, known_length

    w = world()
    src = C._Source(probe, C._layers_arg(probe, layers), "layers")
    C._kernel(torch.zeros(1, 2, 2, dtype=torch.float64), kernel, sigma)
    s = image_set(images)
    n = known_length(s)
    if n is None:
        raise ValueError(f"{s.what} does not know its length; split it between processes after giving it a __len__.")
    C._check_n(n)
    splits = C._splits(n, batch_size)
    shifts = None
    if w.rank != 0:  # every rank shifts by the first minibatch's mean, as one process does
        first = next(iter(C._chunks(s, batch_size)))
        _, shifts = C._shift(src.features(first.images), None)
    h = scale = None
    done = 0
    for i, batch in _own_batches(s, splits, w.rank, w.size, batch_size):
        m = len(batch)
        f, shifts = C._shift(src.features(batch.images), shifts)
        k = C._kernel(C._grams(f), kernel, sigma)
        hb = C.hsic_unbiased(k)
        sb = (k.reshape(k.shape[0], -1) ** 2).sum(-1) / (m * (m - 3))
        h = hb if h is None else h + hb
        scale = sb if scale is None else scale + sb
        done += m
        yield Step(done, n, None, {"images": done, "rank": w.rank})
    g = len(src.names)
    if h is None:
        h = torch.zeros(g, g, dtype=torch.float64, device=probe.device)
        scale = torch.zeros(g, dtype=torch.float64, device=probe.device)
    if w.size > 1:
        dev = _comm_device()
        both = torch.cat([h.reshape(-1), scale]).to(dev)
        dist.all_reduce(both)
        h, scale = both[:g * g].reshape(g, g).cpu(), both[g * g:].cpu()
    c, dr, _ = C._normalise(h, scale, slice(0, g), slice(0, g), True)
    dead = [r for r, d in zip(src.names, dr) if d]
    yield Step(n, n, C.CKAResult(c, list(src.names), list(src.names), dead, dead, n, "unbiased", kernel, True),
               {"images": n})


def layer_similarity(probe, images, layers=None, **kwargs):
    """:func:`similarity_steps` run to the end: the L x L :class:`~cnnwidgets.analyses.cka.CKAResult`."""
    return run(similarity_steps(probe, images, layers, **kwargs)).value


def features_steps(probe, images, layers, pool: str = "mean", batch_size: int = 32) -> Iterator[Step]:
    """Pooled features ``{layer: N x C}`` for an embedding, each rank on minibatches ``rank::world_size``, gathered
    in the set's order on every rank; the last Step's ``info`` has ``"indices"`` and ``"labels"`` (or None)."""
    from .analyses import embedding as E
    from .imagesets import image_set, known_length

    w = world()
    names = [probe.layer(l).name for l in ([layers] if isinstance(layers, (str, int)) else layers)]
    E._pool(torch.zeros(1, 1, 1, 1), pool)
    s = image_set(images)
    n = known_length(s)
    if n is None and w.size > 1:
        raise ValueError(f"{s.what} does not know its length; split it between processes after giving it a __len__.")
    if n == 0:
        raise ValueError(f"{s.what} has no images.")
    splits = [(a, min(a + batch_size, n)) for a in range(0, n, batch_size)] if n else []
    parts = {l: [] for l in names}
    idx, labels = [], []
    done = 0
    batches = ((i, b) for i, b in enumerate(s.batches(batch_size))) if w.size == 1 else \
        _own_batches(s, splits, w.rank, w.size, batch_size)
    for _, batch in batches:
        got = probe.capture(probe.prepare(batch.images), names)
        for l in names:
            parts[l].append(E._pool(got[l].float(), pool).cpu().numpy())
        idx += batch.indices
        labels = None if labels is None or batch.labels is None else labels + list(batch.labels)
        done += len(batch)
        yield Step(done, n, None, {"images": done, "rank": w.rank})
    arrays = {f"f/{l}": (np.concatenate(parts[l]) if parts[l] else np.zeros((0, 0), np.float32)) for l in names}
    arrays["indices"] = np.asarray(idx, np.int64)
    arrays["labels"] = np.asarray(labels if labels is not None else [], np.int64)
    arrays["has_labels"] = np.asarray(labels is not None)
    got = [_unnpz(b) for b in gather_bytes(_npz(arrays))]
    indices = np.concatenate([g["indices"] for g in got])
    order = np.argsort(indices, kind="stable")
    feats = {l: np.concatenate([g[f"f/{l}"] for g in got if len(g["indices"])])[order] for l in names}
    has = all(bool(g["has_labels"]) for g in got)
    lab = np.concatenate([g["labels"] for g in got])[order].tolist() if has else None
    yield Step(len(indices), len(indices), feats, {"indices": indices[order], "labels": lab})


def features(probe, images, layers, pool: str = "mean", batch_size: int = 32) -> dict[str, np.ndarray]:
    """:func:`features_steps` run to the end: ``{layer: N x C}`` in the set's order."""
    return run(features_steps(probe, images, layers, pool, batch_size)).value
