"""The dataset index: one streamed pass, every channel of the chosen layers, top-k images and activation statistics.

Per layer and channel it keeps the ``k`` images with the highest *max* and the highest *mean* activation (with the
(y, x) of the channel's peak in each), and the channel's mean, standard deviation and dead fraction over the set.
Memory is O(layers x channels x k), flat in the number of images. Hits are ordered by score, ties by the image's
position in the set, so an index merged from shards (:func:`merge`) equals one pass over all their images.

Files are JSON (what was indexed) + npz (the arrays), read with ``allow_pickle=False``; images are referenced by
their position in the set, or by path for a folder or a list of files, never copied.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..imagesets import ImageSet, image_set, known_length
from ..runner import Step, run

FORMAT = 1
BY = ("max", "mean")
SHARD_IMAGES = 1024  #: images per shard written under ``out=`` (a crash loses at most the shard under way)


class UnitsNotMaps(UserWarning):
    """A chosen layer has no spatial maps (a Linear or pooled output): its top units are kept, without positions."""


class FewerImagesThanK(UserWarning):
    """The set has fewer images than k: every channel gets fewer hits."""


@dataclass(frozen=True)
class Hit:
    """One of a channel's top images: ``ref`` (position in the set, or the file's path), its ``score`` (the channel's
    max or mean over the map), and ``(y, x)`` of the channel's peak in the layer's map (None for a unit)."""

    ref: int | str
    score: float
    y: int | None
    x: int | None


# --- per-layer state: immutable arrays, every update makes new ones ------------------------------------------------

@dataclass(frozen=True)
class _Layer:
    top: dict  #: by -> {"score": C x k float32, "ref": C x k int64 (-1 empty), "y", "x": C x k int32 (-1 none)}
    count: np.ndarray  #: () int64: values (images x positions) per channel
    mean: np.ndarray  #: C float64
    m2: np.ndarray  #: C float64: sum of squared deviations (Chan et al.'s parallel update)
    dead_images: np.ndarray  #: C int64: images on which the channel is never > 0
    peak: np.ndarray  #: C float32: the channel's largest value over the set


def _empty(c: int, k: int) -> _Layer:
    top = {by: {"score": np.full((c, k), -np.inf, np.float32), "ref": np.full((c, k), -1, np.int64),
                "y": np.full((c, k), -1, np.int32), "x": np.full((c, k), -1, np.int32)} for by in BY}
    return _Layer(top, np.zeros((), np.int64), np.zeros(c), np.zeros(c), np.zeros(c, np.int64),
                  np.full(c, -np.inf, np.float32))


def _best(parts: list[dict], k: int) -> dict:
    """The k best of several candidate lists per channel: highest score first, ties by smaller ref; empties last."""
    cat = {f: np.concatenate([p[f] for p in parts], axis=1) for f in ("score", "ref", "y", "x")}
    empty = cat["ref"] < 0
    key = np.where(empty, np.inf, -cat["score"].astype(np.float64))
    key = np.where(np.isnan(key), np.inf, key)
    ref = np.where(empty, np.iinfo(np.int64).max, cat["ref"])
    order = np.lexsort((ref, key), axis=-1)[:, :k]
    return {f: np.take_along_axis(v, order, axis=1) for f, v in cat.items()}


def _merge_stats(a: _Layer, n_b, mean_b, m2_b):
    n_a = a.count.astype(np.float64)
    n = n_a + n_b
    if n == 0:
        return a.count, a.mean, a.m2
    delta = mean_b - a.mean
    mean = a.mean + delta * (n_b / n)
    m2 = a.m2 + m2_b + delta ** 2 * (n_a * n_b / n)
    return np.asarray(a.count + int(n_b), np.int64), mean, m2


def _combine(a: _Layer, b: _Layer, k: int) -> _Layer:
    count, mean, m2 = _merge_stats(a, float(b.count), b.mean, b.m2)
    return _Layer({by: _best([a.top[by], b.top[by]], k) for by in BY}, count, mean, m2,
                  a.dead_images + b.dead_images, np.maximum(a.peak, b.peak))


def _update(st: _Layer, t: torch.Tensor, refs: np.ndarray, k: int) -> _Layer:
    """Fold one batch of a layer's outputs ``B x C x ...`` (images at positions ``refs``) into ``st``."""
    b, c = t.shape[:2]
    f = t.reshape(b, c, -1)
    if f.dtype != torch.float32:
        f = f.float()
    hw = f.shape[-1]
    mx, arg = f.max(-1)
    mean = f.mean(-1)
    sq = torch.linalg.vector_norm(f, dim=-1)  # one pass each: a third of var_mean's time
    mx, arg, mean, sq = (v.cpu().numpy() for v in (mx, arg, mean, sq))
    w = t.shape[-1] if t.ndim == 4 else None
    if t.ndim == 4:
        y, x = (arg // w).astype(np.int32), (arg % w).astype(np.int32)
    else:
        y = x = np.full(arg.shape, -1, np.int32)
    r = np.broadcast_to(refs[None, :], (c, b))
    top = {by: _best([st.top[by], {"score": s.T.astype(np.float32), "ref": r, "y": y.T, "x": x.T}], k)
           for by, s in (("max", mx), ("mean", mean))}
    m64 = mean.astype(np.float64)
    v64 = np.maximum(sq.astype(np.float64) ** 2 / hw - m64 ** 2, 0.0)
    mean_b = m64.mean(0)
    m2_b = hw * (v64.sum(0) + ((m64 - mean_b) ** 2).sum(0))
    count, mean_all, m2 = _merge_stats(st, float(b * hw), mean_b, m2_b)
    return _Layer(top, count, mean_all, m2, st.dead_images + (mx <= 0).sum(0), np.maximum(st.peak, mx.max(0)))


# --- the Index --------------------------------------------------------------------------------------------------

def _ranges_union(ranges) -> list[list[int]]:
    out: list[list[int]] = []
    for a, b in sorted((int(a), int(b)) for a, b in ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return out


def _overlap(r1, r2):
    for a, b in r1:
        for c, d in r2:
            if a < d and c < b:
                return max(a, c), min(b, d)
    return None


class Index:
    """What one pass over an image set found in every channel of the chosen layers (see the module docstring).

    ``index.top(layer, channel, by="max")`` -> list of :class:`Hit` (best first); ``index.stats(layer)`` -> the
    channels' mean, std and dead fraction; ``index.save(path)`` / :func:`open`; :func:`merge` of shards.
    """

    def __init__(self, meta: dict, layers: dict[str, _Layer] | None = None, paths: dict[int, str] | None = None,
                 parts: list["Index"] | None = None):
        self.meta = meta
        self._layers = layers
        self._paths = dict(paths or {})
        self._parts = parts  # a partial result: merged on first access

    # what was indexed
    @property
    def layers(self) -> list[str]:
        return [l["name"] for l in self.meta["layers"]]

    @property
    def k(self) -> int:
        return int(self.meta["k"])

    @property
    def num_images(self) -> int:
        """Images indexed (those that failed to load are not counted)."""
        return int(self.meta["num_images"])

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.meta["input_size"])

    @property
    def model_key(self) -> str:
        return self.meta["model_key"]

    @property
    def model(self) -> str:
        return self.meta["model"]

    @property
    def skipped(self) -> list[dict]:
        """Images that failed to load: ``[{"ref": position, "name": ..., "error": ...}]``."""
        return list(self.meta["skipped"])

    @property
    def complete(self) -> bool:
        """Whether every image of the set was indexed (False for a stopped run or one shard)."""
        n = self.meta["set"]["length"]
        return n is not None and self.meta["covered"] == ([[0, n]] if n else [])

    @property
    def notes(self) -> list[str]:
        return list(self.meta.get("notes", []))

    def _layer_meta(self, layer) -> dict:
        names = self.layers
        name = getattr(layer, "name", layer)
        if isinstance(name, int) and not isinstance(name, bool) and -len(names) <= name < len(names):
            name = names[name]
        for l in self.meta["layers"]:
            if l["name"] == name:
                return l
        raise KeyError(f"Layer {name!r} is not in this index; it has {', '.join(names)}.") from None

    def channels(self, layer) -> int:
        return int(self._layer_meta(layer)["shape"][0])

    def shape(self, layer) -> tuple[int, ...]:
        """The layer's output for one image: (C, H, W) for maps, (C,) for units."""
        return tuple(self._layer_meta(layer)["shape"])

    def spatial(self, layer) -> bool:
        """True for maps (hits have a peak position), False for units (a Linear or pooled output)."""
        return self._layer_meta(layer)["kind"] == "maps"

    def _state(self, name: str) -> _Layer:
        if self._parts is not None:
            merged = _merge_states(self._parts, self.k)
            self._layers, self._paths, self._parts = merged._layers, merged._paths, None
        return self._layers[name]

    def top(self, layer, channel: int, by: str = "max") -> list[Hit]:
        """The channel's top images, best first (fewer than k when fewer images were indexed)."""
        l = self._layer_meta(layer)
        if by not in BY:
            raise ValueError(f"by must be 'max' or 'mean', got {by!r}.")
        c = int(channel)
        if not 0 <= c < l["shape"][0]:
            raise IndexError(f"Channel {c} is out of range for {l['name']} ({l['shape'][0]} channels: 0..{l['shape'][0] - 1}).")
        t = self._state(l["name"]).top[by]
        out = []
        for s, r, y, x in zip(t["score"][c], t["ref"][c], t["y"][c], t["x"][c]):
            if r < 0:
                break
            out.append(Hit(self._ref(int(r)), float(s), None if y < 0 else int(y), None if x < 0 else int(x)))
        return out

    def top_arrays(self, layer, by: str = "max") -> dict[str, np.ndarray]:
        """Every channel's hits at once: ``score``, ``ref`` (positions; -1 = no hit), ``y``, ``x`` (-1 = none), C x k."""
        l = self._layer_meta(layer)
        if by not in BY:
            raise ValueError(f"by must be 'max' or 'mean', got {by!r}.")
        return {f: v.copy() for f, v in self._state(l["name"]).top[by].items()}

    def ref(self, position: int):
        """What a hit's position refers to: the file's path for a folder or list of files, else the position."""
        return self._ref(int(position))

    def _ref(self, r: int):
        if self.meta["set"]["refs"] == "path":
            self._state(self.layers[0])
            return self._paths.get(r, r)
        return r

    def stats(self, layer) -> dict[str, np.ndarray]:
        """Per channel over every image and position: ``mean``, ``std``, ``max``, ``dead`` (never > 0 over the set)
        and ``dead_fraction`` (the fraction of images on which the channel is never > 0)."""
        st = self._state(self._layer_meta(layer)["name"])
        n = int(st.count)
        images = max(self.num_images, 1)
        std = np.sqrt(np.maximum(st.m2 / n, 0)) if n else np.full_like(st.m2, np.nan)
        return {"mean": st.mean.copy() if n else np.full_like(st.mean, np.nan), "std": std, "max": st.peak.copy(),
                "dead": st.peak <= 0, "dead_fraction": st.dead_images / images}

    def __repr__(self) -> str:
        s = self.meta["set"]
        of = f" of {s['length']}" if s["length"] is not None else ""
        return (f"Index({self.model}, {len(self.layers)} layer{'s' if len(self.layers) != 1 else ''}, top {self.k}, "
                f"{self.num_images}{of} images of {s['what']}{'' if self.complete else ', partial'}"
                f"{f', {len(self.skipped)} skipped' if self.skipped else ''})")

    # files
    def _arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for name in self.layers:
            st = self._state(name)
            for by in BY:
                for f, v in st.top[by].items():
                    out[f"{name}/{by}/{f}"] = v
            for f in ("count", "mean", "m2", "dead_images", "peak"):
                out[f"{name}/stats/{f}"] = np.asarray(getattr(st, f))
        if self._paths:
            keys = sorted(self._paths)
            out["paths/ref"] = np.asarray(keys, np.int64)
            out["paths/path"] = np.asarray([self._paths[k] for k in keys], dtype=np.str_)
        return out

    def to_bytes(self) -> bytes:
        """The index as one npz (its JSON inside, as bytes): to send between processes. :func:`from_bytes` reads it."""
        buf = io.BytesIO()
        arrays = self._arrays()
        arrays["meta.json"] = np.frombuffer(json.dumps(self.meta).encode(), np.uint8)
        np.savez(buf, **arrays)
        return buf.getvalue()

    def save(self, path) -> Path:
        """Write ``path/index.json`` and ``path/index.npz`` (a folder; made if needed). :func:`open` reads it back."""
        return _write(Path(path), "index", self)


def _layers_from(arrays, meta) -> tuple[dict, dict]:
    layers = {}
    for l in meta["layers"]:
        n = l["name"]
        top = {by: {f: arrays[f"{n}/{by}/{f}"] for f in ("score", "ref", "y", "x")} for by in BY}
        layers[n] = _Layer(top, *(arrays[f"{n}/stats/{f}"] for f in ("count", "mean", "m2", "dead_images", "peak")))
    paths = {}
    if "paths/ref" in arrays:
        paths = {int(r): str(p) for r, p in zip(arrays["paths/ref"], arrays["paths/path"])}
    return layers, paths


def from_bytes(data: bytes) -> Index:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta.json").tobytes().decode())
    return Index(meta, *_layers_from(arrays, meta))


def _write(folder: Path, stem: str, index: Index) -> Path:
    """``folder/stem.npz`` then ``folder/stem.json`` (the JSON is written last and names the npz's stamp, so a
    crash between the two leaves no index that reads wrong)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = uuid.uuid4().hex
    meta = dict(index.meta, stamp=stamp)
    arrays = index._arrays()
    arrays["stamp"] = np.frombuffer(stamp.encode(), np.uint8)
    tmp = folder / f".{stem}.{stamp}.npz"
    with builtin_open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, folder / f"{stem}.npz")
    tmp = folder / f".{stem}.{stamp}.json"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, folder / f"{stem}.json")
    return folder


builtin_open = open


def _read(json_path: Path) -> Index:
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{str(json_path)!r} is not a readable cnnwidgets index ({type(e).__name__}: {e}).") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "layers" not in meta:
        raise ValueError(f"{str(json_path)!r} is not a cnnwidgets index (format {FORMAT}); build one with "
                         "cw.index.build(probe, images, out=...).")
    npz = json_path.with_suffix(".npz")
    try:
        with np.load(npz, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ValueError(f"{str(npz)!r}, the arrays of {json_path.name}, cannot be read ({type(e).__name__}: {e}).") from None
    if arrays.get("stamp") is None or arrays["stamp"].tobytes().decode() != meta.get("stamp"):
        raise ValueError(f"{npz.name} does not belong to {json_path.name} (written by another run?): build the index again.")
    return Index(meta, *_layers_from(arrays, meta))


def _shard_paths(folder: Path) -> list[Path]:
    d = folder / "shards"
    return sorted(d.glob("part-*.json")) if d.is_dir() else []


def open_index(path) -> Index:
    """An index saved by :meth:`Index.save` or built with ``out=``: the folder (or its ``index.json``). A folder of
    shards without a final index (a stopped or crashed run) opens as the merge of its shards (a partial index)."""
    p = Path(path).expanduser()
    if p.is_file():
        return _read(p)
    if not p.exists():
        raise FileNotFoundError(f"No index at {str(p)!r}: build one with cw.index.build(probe, images, out={str(p)!r}).")
    if (p / "index.json").is_file():
        return _read(p / "index.json")
    shards = _shard_paths(p)
    if not shards:
        raise FileNotFoundError(f"{str(p)!r} holds no index (index.json) and no shards (shards/part-*.json).")
    return merge(*[_read(s) for s in shards])


# --- merging ----------------------------------------------------------------------------------------------------

def _check_same(a: dict, b: dict, i: int) -> None:
    if a["model_key"] != b["model_key"]:
        raise ValueError(f"Index {i} was built on another model or other weights ({b['model']}, key {b['model_key'][:12]}) "
                         f"than the first ({a['model']}, key {a['model_key'][:12]}): only shards of one model merge.")
    la = [(l["name"], l["shape"]) for l in a["layers"]]
    lb = [(l["name"], l["shape"]) for l in b["layers"]]
    if la != lb:
        raise ValueError(f"Index {i} has other layers ({', '.join(n for n, _ in lb)}) than the first "
                         f"({', '.join(n for n, _ in la)}): shards merge only over the same layer set.")
    if a["k"] != b["k"]:
        raise ValueError(f"Index {i} keeps the top {b['k']} per channel, the first the top {a['k']}: build shards with one k.")
    if a["input_size"] != b["input_size"]:
        raise ValueError(f"Index {i} was built at input size {b['input_size']}, the first at {a['input_size']}.")
    sa, sb = a["set"], b["set"]
    if sa["length"] != sb["length"]:
        raise ValueError(f"The image set's length changed between shards: {sa['length']} images in the first, "
                         f"{sb['length']} in index {i}. Positions then name other images: index the set again "
                         "(in a new out= folder).")
    if sa["what"] != sb["what"] or sa["refs"] != sb["refs"]:
        raise ValueError(f"Index {i} was built on {sb['what']}, the first on {sa['what']}: shards merge only over one "
                         "image set.")


def _merge_states(indexes: list[Index], k: int) -> Index:
    first = indexes[0]
    meta = dict(first.meta)
    covered, skipped, notes = [], [], []
    for i, ix in enumerate(indexes):
        if i:
            _check_same(first.meta, ix.meta, i)
        both = _overlap(_ranges_union(covered), ix.meta["covered"])
        if both:
            raise ValueError(f"Index {i} covers images {both[0]}..{both[1] - 1} again (they are in an earlier one too): "
                             "merging them would count those images twice. Merge each shard once.")
        covered += ix.meta["covered"]
        skipped += ix.meta["skipped"]
        notes += [n for n in ix.meta.get("notes", []) if n not in notes]
    layers = {}
    for l in first.meta["layers"]:
        name = l["name"]
        st = first._state(name)
        for ix in indexes[1:]:
            st = _combine(st, ix._state(name), k)
        layers[name] = st
    paths = {}
    for ix in indexes:
        ix._state(first.layers[0])
        paths.update(ix._paths)
    used = {int(r) for st in layers.values() for by in BY for r in np.unique(st.top[by]["ref"]) if r >= 0}
    meta.update(covered=_ranges_union(covered), skipped=sorted(skipped, key=lambda s: s["ref"]),
                num_images=sum(ix.num_images for ix in indexes), notes=notes)
    meta.pop("stamp", None)
    return Index(meta, layers, {r: p for r, p in paths.items() if r in used})


def merge(*indexes: Index) -> Index:
    """One index from shards of one model, layer set, k and image set (each image in one shard only): exactly the
    index of one pass over all their images (statistics to float64 rounding)."""
    if len(indexes) == 1 and isinstance(indexes[0], (list, tuple)):
        indexes = tuple(indexes[0])
    if not indexes:
        raise ValueError("merge() needs at least one index.")
    bad = [type(i).__name__ for i in indexes if not isinstance(i, Index)]
    if bad:
        raise TypeError(f"merge() takes cnnwidgets indexes (cw.index.open(path) reads one), got {', '.join(bad)}.")
    return _merge_states(list(indexes), indexes[0].k)


# --- building ---------------------------------------------------------------------------------------------------

def model_key(probe) -> str:
    """A digest of the model's name, every weight and buffer (bits), and its input size: the same in every process."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{probe.name}|{tuple(probe.transform.input_size)}".encode())
    for name, t in sorted(probe.named_tensors().items()):
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
        h.update(t.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                 if t.numel() else b"")
    return h.hexdigest()


def _layer_kind(shape) -> str:
    return "maps" if len(shape) == 3 else ("units" if len(shape) == 1 else "positions")


def _resolve_layers(probe, layers):
    if layers is None:
        return list(probe.require_layers("The index"))
    if isinstance(layers, (str, int)) or hasattr(layers, "shape"):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("Got an empty list of layers; pass None for all conv layers.")
    out, seen = [], set()
    for l in layers:
        l = probe.layer(l)
        if l.name not in seen:
            seen.add(l.name)
            out.append(l)
    return out


def _set_meta(s: ImageSet) -> dict:
    from ..imagesets import _ListSet

    paths = isinstance(s, _ListSet) and all(isinstance(p, str) for p in s.items[:64]) and \
        all(isinstance(p, str) for p in s.items)
    return {"what": s.what, "length": known_length(s), "refs": "path" if paths else "position"}


def new_meta(probe, s: ImageSet, targets, k: int) -> dict:
    layers = [{"name": l.name, "shape": list(l.shape), "kind": _layer_kind(l.shape), "type": l.type} for l in targets]
    return {"format": FORMAT, "model": probe.name, "model_key": model_key(probe),
            "input_size": list(probe.transform.input_size), "layers": layers, "k": int(k), "set": _set_meta(s),
            "covered": [], "num_images": 0, "skipped": [], "notes": []}


def empty_index(meta: dict) -> Index:
    return Index(dict(meta), {l["name"]: _empty(l["shape"][0], meta["k"]) for l in meta["layers"]}, {})


class _Builder:
    """Folds batches of one contiguous range of positions into a fresh shard."""

    def __init__(self, meta: dict, start: int, set_items=None):
        self.meta = dict(meta, covered=[], skipped=[], num_images=0)
        self.start = self.end = start
        self.layers = {l["name"]: _empty(l["shape"][0], meta["k"]) for l in meta["layers"]}
        self.paths: dict[int, str] = {}
        self.items = set_items
        self.skipped: list[dict] = []
        self.images = 0

    def add(self, acts: dict, refs: np.ndarray, upto: int) -> None:
        k = self.meta["k"]
        for name, t in acts.items():
            self.layers[name] = _update(self.layers[name], t, refs, k)
        self.images += len(refs)
        self.end = upto
        if self.items is not None:  # refs are paths: keep those of the current hits only
            used = {int(r) for st in self.layers.values() for by in BY for r in np.unique(st.top[by]["ref"]) if r >= 0}
            self.paths = {r: self.items[r] for r in used}

    def index(self) -> Index:
        meta = dict(self.meta, covered=[[self.start, self.end]] if self.end > self.start else [],
                    num_images=self.images, skipped=list(self.skipped))
        return Index(meta, dict(self.layers), dict(self.paths))


def _stop_check(stop):
    if stop is None:
        return lambda done: False
    if isinstance(stop, (int, np.integer)) and not isinstance(stop, bool):
        return lambda done: done >= int(stop)
    if hasattr(stop, "is_set"):
        return lambda done: stop.is_set()
    if callable(stop):
        return lambda done: bool(stop())
    raise TypeError(f"stop is a number of images, a threading.Event or a function returning True to stop; got "
                    f"{type(stop).__name__}.")


def _chunks(n: int | None, part: tuple[int, int], shard: int, fixed_order: bool = True) -> list[tuple[int, int | None]]:
    rank, world = part
    if n is None or not fixed_order:
        if world > 1:
            raise ValueError("An image set without a fixed order and length (a shuffled DataLoader, an IterableDataset) "
                             "cannot be split between processes: use shuffle=False and a Dataset with __len__, or run "
                             "in one process.")
        return [(0, n)]
    if world > 1:  # a set smaller than world x shard still gives every process its part
        shard = max(1, min(shard, -(-n // world)))
    starts = range(0, n, shard)
    return [(a, min(a + shard, n)) for i, a in enumerate(starts) if i % world == rank]


def _subtract(a: int, b: int, covered) -> list[tuple[int, int]]:
    out, p = [], a
    for c, d in covered:
        if d <= p or c >= b:
            continue
        if c > p:
            out.append((p, c))
        p = max(p, d)
    if p < b:
        out.append((p, b))
    return out


def build_steps(probe, images, layers=None, *, k: int = 16, batch_size: int = 32, out=None, stop=None,
                shard_images: int = SHARD_IMAGES, part: tuple[int, int] = (0, 1)) -> Iterator[Step]:
    """Stream ``images`` (anything :func:`cnnwidgets.image_set` takes) once through the truncated forward and yield a
    :class:`~cnnwidgets.runner.Step` per batch: ``value`` is the :class:`Index` so far, ``info`` has ``images_per_s``,
    ``eta_s``, ``skipped`` and ``skipped_names`` (images that failed to load, left out).

    ``layers``: names or indices (default: all conv layers); a layer without maps keeps its top units.
    ``out``: a folder; each ``shard_images`` images are written to ``out/shards/`` as they are done, a run that
    was stopped or crashed resumes from them, and the finished index is ``out/index.json`` + ``.npz``.
    ``stop``: a number of images, a ``threading.Event`` or a function; the run ends at the next batch with the
    index so far (shards written). ``part=(rank, world_size)``: index only this process's shards (see
    :mod:`cnnwidgets.distributed`)."""
    from ..probe import whole_number
    from . import sources

    k = whole_number(k, "k")
    if k < 1:
        raise ValueError(f"k is how many top images to keep per channel, at least 1; got {k}.")
    batch_size = whole_number(batch_size, "batch_size")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
    shard_images = max(1, whole_number(shard_images, "shard_images"))
    should_stop = _stop_check(stop)
    s = image_set(images)
    n = known_length(s)
    if n == 0:
        raise ValueError(f"{s.what} has no images: nothing to index.")
    targets = _resolve_layers(probe, layers)
    meta = new_meta(probe, s, targets, k)
    units = [l.name for l in targets if len(l.shape) != 3]
    if units:
        note = (f"{', '.join(units)} {'has' if len(units) == 1 else 'have'} no spatial maps (a Linear or pooled "
                "output): the index keeps the top images of each unit, without positions.")
        meta["notes"].append(note)
        warnings.warn(note, UnitsNotMaps, stacklevel=2)
    if n is not None and n < k:
        note = f"The set has {n} images, fewer than k={k}: each channel has at most {n} hits."
        meta["notes"].append(note)
        warnings.warn(note, FewerImagesThanK, stacklevel=2)
    folder = Path(out).expanduser() if out is not None else None
    total = empty_index(meta)
    chunks = _chunks(n, part, shard_images, s._repeatable)
    covered = []
    if folder is not None:
        done_before = [_read(p) for p in _shard_paths(folder)]
        if done_before:
            try:
                everything = merge(empty_index(meta), *done_before)
            except ValueError as e:
                raise ValueError(f"The shards in {str(folder)!r} do not belong to this run: {e} Use another out= "
                                 "folder, or delete that one.") from None
            if n is None or not s._repeatable:
                raise ValueError(f"{str(folder)!r} holds shards of an earlier run, but {s.what} gives its images in a "
                                 "new order each pass, so it cannot resume: use another out= folder.")
            covered = everything.meta["covered"]  # skipped by every process; kept by the one whose shard holds its start
            mine = [ix for ix in done_before if any(a <= ix.meta["covered"][0][0] < b for a, b in chunks)]
            total = merge(total, *mine) if part[1] > 1 else everything
    todo = []
    for a, b in chunks:
        todo += [(a, b)] if b is None else _subtract(a, b, covered)
    total_todo = n if n is None else sum(b - a for a, b in todo)
    items = s.items if meta["set"]["refs"] == "path" else None
    names = [l.name for l in targets]
    done = 0
    t0 = time.perf_counter()
    shape_seen: dict[str, tuple] = {}

    def info(skipped):
        dt = time.perf_counter() - t0
        ips = done / dt if dt > 0 else 0.0
        left = None if total_todo is None else total_todo - done
        return {"images": done, "images_per_s": ips, "eta_s": (left / ips if ips and left is not None else None),
                "skipped": len(skipped), "skipped_names": [x["name"] for x in skipped]}

    all_skipped = list(total.meta["skipped"])
    stopped = False
    for a, b in todo:
        builder = _Builder(meta, a, items)
        written = False
        try:
            for batch in sources.read(s, probe, a, b, batch_size):
                builder.skipped += batch.failed
                all_skipped += batch.failed
                if len(batch.refs):
                    acts = probe.capture(batch.x, names)
                    for name, t in acts.items():
                        hw = tuple(t.shape[2:])
                        if shape_seen.setdefault(name, hw) != hw:
                            raise ValueError(f"Images came out at different sizes: {name} gave maps of {hw} here and "
                                             f"{shape_seen[name]} before. Give the Probe a Preprocess with a crop size, "
                                             "or resize the images to one size.") from None
                    builder.add(acts, np.asarray(batch.refs, np.int64), batch.end)
                else:
                    builder.end = batch.end
                done += len(batch.refs) + len(batch.failed)
                partial = Index(total.meta, parts=[total, builder.index()])
                partial.meta = _meta_of_parts(total, builder)
                yield Step(done, total_todo, partial, info(all_skipped))
                if should_stop(done):
                    stopped = True
                    break
            if folder is not None:
                _write_shard(folder, builder.index())
            written = True
        finally:
            if not written and folder is not None and builder.end > builder.start:
                _write_shard(folder, builder.index())  # closed by a Stop or an error: keep what was done
        total = merge(total, builder.index())
        if stopped:
            break
    if not stopped and total.num_images == 0 and total.meta["skipped"] and part[1] == 1:
        sk = total.meta["skipped"]
        raise ValueError(f"None of the {len(sk)} images could be read ({', '.join(x['name'] for x in sk[:3])}"
                         f"{', ...' if len(sk) > 3 else ''}): {sk[0]['error']}")
    if n is None and not stopped:
        total.meta["set"] = dict(total.meta["set"], length=total.meta["covered"][-1][1] if total.meta["covered"] else 0)
    if folder is not None and not stopped and part[1] == 1 and total.complete:
        total.save(folder)
    yield Step(done, total_todo if total_todo is not None else done, total, info(all_skipped))


def _meta_of_parts(total: Index, builder: _Builder) -> dict:
    m = builder.index().meta
    return dict(total.meta, covered=_ranges_union(total.meta["covered"] + m["covered"]),
                num_images=total.num_images + builder.images, skipped=total.meta["skipped"] + builder.skipped)


def _write_shard(folder: Path, ix: Index) -> None:
    if ix.meta["covered"]:
        a, b = ix.meta["covered"][0]
        _write(folder / "shards", f"part-{a:010d}-{b:010d}", ix)


def build(probe, images, layers=None, **kwargs) -> Index:
    """:func:`build_steps` run to the end: the :class:`Index` of every channel of ``layers`` over ``images``."""
    return run(build_steps(probe, images, layers, **kwargs)).value
