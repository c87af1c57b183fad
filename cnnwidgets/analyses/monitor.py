"""What a training run looks like from inside, snapshot by snapshot (pure torch/numpy, no widgets).

:class:`Recorder` reads a model while a plain PyTorch loop trains it: the loss at every step and, at
*snapshots*, per-parameter weight and gradient statistics (mean, std, norm), per-layer dead units over the
probe images, the activations of one fixed probe image, histograms of weights and activations, and the
linear CKA of each layer against the same layer at the reference snapshot (the first: initialisation by
default). Everything it keeps is in a :class:`History`, which :meth:`History.save` writes to one ``.npz``
(arrays plus a JSON description; no pickle) and :meth:`History.load` reads back with
``np.load(allow_pickle=False)``: nothing in a file is ever run.

The training is not changed: activations come from :meth:`Probe.capture` (the Probe's private view of the
model, in eval mode, without grad), parameters and gradients are only read, no random number is drawn, and
a loss is kept as a detached number (never its graph).

Memory stays flat however long the run: statistics are kept for at most ``max_snapshots`` snapshots (beyond
that every other one is dropped and the interval doubles), losses for at most ``max_points`` steps (thinned
the same way; non-finite losses are always kept), and maps and histograms within ``memory`` bytes (the
reference and the latest always; the others thinned evenly).
"""
from __future__ import annotations

import array
import io
import json
import math
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from . import stats
from .cka import center_gram, gram_linear

FORMAT = "cnnwidgets.monitor/1"
STATS = ("weight mean", "weight std", "weight norm", "grad mean", "grad std", "grad norm")
W_MEAN, W_STD, W_NORM, G_MEAN, G_STD, G_NORM = range(6)
BINS = 40
CKA_MIN_IMAGES = 4
#: modules whose zero outputs are "dead units" (exact zeros); elsewhere a unit is dead when it is never positive
RELUS = ("ReLU", "ReLU6")


class ParametersChanged(ValueError):
    """The model's parameters changed name or shape since the monitor started."""


@dataclass
class Frame:
    """The heavy part of one snapshot for one layer: the probe image's maps and two histograms."""

    maps: np.ndarray  #: float16 ``C x H x W`` (or ``C``) activations of the probe image (float32 beyond float16's range)
    act_counts: np.ndarray
    act_edges: np.ndarray
    w_counts: np.ndarray | None = None  #: histogram of the layer's weight (None: the layer has none)
    w_edges: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.maps, self.act_counts, self.act_edges, self.w_counts, self.w_edges)
                   if a is not None)


def _whole(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, torch.Tensor) and value.ndim == 0 and not value.is_floating_point():
            return int(value)
        raise TypeError(f"{what} must be a whole number, got {value!r}.")
    return int(value)


def loss_value(loss):
    """A loss as one detached number (a 0-d tensor is kept as a tensor, so a GPU loss is not synchronised at every
    step); a clear error for anything that is not one number."""
    if loss is None:
        return None
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise ValueError(f"loss must be one number; got a tensor of shape {tuple(loss.shape)} (pass loss.mean() "
                             "or the value you call .backward() on).")
        return loss.detach().reshape(())
    if isinstance(loss, (bool, str, bytes)):
        raise TypeError(f"loss must be a number or a one-element tensor, got {loss!r}.")
    try:
        return float(loss)
    except (TypeError, ValueError):
        raise TypeError(f"loss must be a number or a one-element tensor, got {type(loss).__name__}.") from None


class History:
    """Everything recorded about one run: losses, snapshot statistics, maps and histograms (numpy only).

    ``params``: ``[(name, shape), ...]`` of the model's parameters; ``layers``: the layers watched (their dead
    units and CKA), ``labels``: a readable label per layer; ``frame_layers``: the layers whose maps and
    histograms are kept; ``image``: the probe image as the model sees it (uint8 ``H x W x 3``).
    """

    def __init__(self, params, layers, labels=None, frame_layers=None, image=None, *, model: str = "",
                 max_points: int = 100_000, max_snapshots: int = 1000, memory: int = 256 * 2**20):
        self.params = [(str(n), tuple(int(s) for s in shape)) for n, shape in params]
        self.layers = list(layers)
        self.labels = list(labels) if labels is not None else list(self.layers)
        self.frame_layers = list(frame_layers if frame_layers is not None else self.layers)
        self.image = image
        self.model = model
        self.max_points = max(16, int(max_points))
        self.max_snapshots = max(4, int(max_snapshots))
        self.memory = int(memory)
        self.loss_steps = array.array("q")
        self.loss_values = array.array("d")
        self.bad_steps = array.array("q")  # non-finite losses, always kept (up to max_points)
        self.bad_values = array.array("d")
        self.bad_count = 0
        self.steps: list[int] = []  # snapshot steps
        self.names: list[str] = []  # snapshot labels ("" or a checkpoint's file name)
        self.stats: list[np.ndarray] = []  # per snapshot: n_params x 6 (see STATS)
        self.dead: list[np.ndarray] = []  # per snapshot: fraction of dead units per layer
        self.cka: list[np.ndarray] = []  # per snapshot: CKA to the reference per layer (NaN: not computed)
        self.frames: list[dict[str, Frame] | None] = []
        self.thinned = 0  # how many times snapshots were thinned (the interval doubled)

    # --- recording -------------------------------------------------------------------------------
    def add_losses(self, steps, values) -> None:
        v = np.asarray(values, dtype=np.float64)
        s = np.asarray(steps, dtype=np.int64)
        self.loss_steps.extend(s.tolist())
        self.loss_values.extend(v.tolist())
        bad = ~np.isfinite(v)
        if bad.any():
            self.bad_count += int(bad.sum())
            room = self.max_points - len(self.bad_steps)
            if room > 0:
                self.bad_steps.extend(s[bad][:room].tolist())
                self.bad_values.extend(v[bad][:room].tolist())
        if len(self.loss_steps) > self.max_points:
            s, v = np.frombuffer(self.loss_steps, np.int64), np.frombuffer(self.loss_values, np.float64)
            keep = np.zeros(len(s), bool)
            keep[::2] = True
            keep[-1] = True
            keep |= ~np.isfinite(v)
            self.loss_steps = array.array("q", s[keep].tobytes())
            self.loss_values = array.array("d", v[keep].tobytes())

    def add_snapshot(self, step: int, stats_row: np.ndarray, dead: np.ndarray, cka: np.ndarray,
                     frames: dict[str, Frame] | None, name: str = "") -> bool:
        """Append a snapshot; returns True when the snapshots were thinned (the caller doubles its interval)."""
        self.steps.append(int(step))
        self.names.append(name)
        self.stats.append(np.asarray(stats_row, np.float64))
        self.dead.append(np.asarray(dead, np.float64))
        self.cka.append(np.asarray(cka, np.float64))
        self.frames.append(frames)
        thinned = False
        if len(self.steps) > self.max_snapshots:
            keep = [i for i in range(len(self.steps)) if i % 2 == 0 or i == len(self.steps) - 1]
            for name_ in ("steps", "names", "stats", "dead", "cka", "frames"):
                lst = getattr(self, name_)
                setattr(self, name_, [lst[i] for i in keep])
            self.thinned += 1
            thinned = True
        self._fit_frames()
        return thinned

    def frame_bytes(self) -> int:
        return sum(f.nbytes for fr in self.frames if fr for f in fr.values())

    def _fit_frames(self) -> None:
        """Drop maps and histograms of every other snapshot (never the reference nor the latest) until they fit."""
        while self.frame_bytes() > self.memory:
            have = [i for i, fr in enumerate(self.frames) if fr]
            middle = [i for i in have if i not in (0, len(self.frames) - 1)]
            if middle:
                for i in middle[::2] if len(middle) > 1 else middle:
                    self.frames[i] = None
            elif len(have) > 1:
                self.frames[have[0]] = None  # only the reference and the latest left: the latest stays
            else:
                break

    # --- reading ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.steps)

    @property
    def param_names(self) -> list[str]:
        return [n for n, _ in self.params]

    def losses(self) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of every loss kept (NaN/inf included, where they were)."""
        return (np.frombuffer(self.loss_steps, np.int64).copy() if len(self.loss_steps) else np.zeros(0, np.int64),
                np.frombuffer(self.loss_values, np.float64).copy() if len(self.loss_values) else np.zeros(0))

    def bad_losses(self) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of the NaN/inf losses."""
        return (np.asarray(self.bad_steps, np.int64), np.asarray(self.bad_values, np.float64))

    def series(self, stat: str | int) -> np.ndarray:
        """``n_snapshots x n_params`` of one statistic (``"weight norm"``, ``"grad norm"``, ... or its index)."""
        k = STATS.index(stat) if isinstance(stat, str) else int(stat)
        if not self.stats:
            return np.zeros((0, len(self.params)))
        return np.stack([s[:, k] for s in self.stats])

    def cka_matrix(self) -> np.ndarray:
        """``n_layers x n_snapshots``: CKA of each layer with itself at the reference snapshot (NaN: not computed)."""
        if not self.cka:
            return np.zeros((len(self.layers), 0))
        return np.stack(self.cka, axis=1)

    def dead_matrix(self) -> np.ndarray:
        """``n_layers x n_snapshots``: fraction of dead units of each layer over the probe images."""
        if not self.dead:
            return np.zeros((len(self.layers), 0))
        return np.stack(self.dead, axis=1)

    def frame(self, index: int, layer: str) -> tuple[int, Frame | None]:
        """The frame of ``layer`` at snapshot ``index``, or at the nearest snapshot that kept one:
        ``(the snapshot it comes from, frame)``; ``(index, None)`` when none has it."""
        n = len(self.frames)
        if not n:
            return index, None
        index = max(0, min(index, n - 1))
        for d in range(n):
            for i in (index - d, index + d):
                if 0 <= i < n and self.frames[i] and layer in self.frames[i]:
                    return i, self.frames[i][layer]
        return index, None

    def nbytes(self) -> int:
        """Bytes held by the history's arrays (what the memory budget and the flat-memory test look at)."""
        n = sum(a.itemsize * len(a) for a in (self.loss_steps, self.loss_values, self.bad_steps, self.bad_values))
        n += sum(a.nbytes for lst in (self.stats, self.dead, self.cka) for a in lst)
        return n + self.frame_bytes()

    # --- files -----------------------------------------------------------------------------------
    def save(self, path) -> str:
        """Write everything to one ``.npz`` (numpy arrays and a JSON description; no pickle)."""
        path = Path(path).expanduser()
        meta = {"format": FORMAT, "model": self.model, "params": [[n, list(s)] for n, s in self.params],
                "layers": self.layers, "labels": self.labels, "frame_layers": self.frame_layers, "names": self.names,
                "bad_count": self.bad_count, "thinned": self.thinned, "max_points": self.max_points,
                "max_snapshots": self.max_snapshots, "memory": self.memory}
        s, v = self.losses()
        bs, bv = self.bad_losses()
        arrays = {"meta": np.array(json.dumps(meta)), "loss_steps": s, "loss_values": v, "bad_steps": bs,
                  "bad_values": bv, "steps": np.asarray(self.steps, np.int64),
                  "stats": np.stack(self.stats) if self.stats else np.zeros((0, len(self.params), len(STATS))),
                  "dead": self.dead_matrix(), "cka": self.cka_matrix()}
        if self.image is not None:
            arrays["image"] = np.asarray(self.image, np.uint8)
        for i, fr in enumerate(self.frames):
            for j, layer in enumerate(self.frame_layers):
                f = (fr or {}).get(layer)
                if f is None:
                    continue
                arrays[f"maps_{i}_{j}"] = f.maps
                arrays[f"act_{i}_{j}"] = np.concatenate([f.act_counts.astype(np.float64), f.act_edges])
                if f.w_counts is not None:
                    arrays[f"w_{i}_{j}"] = np.concatenate([f.w_counts.astype(np.float64), f.w_edges])
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")  # what np.savez would do silently: say it by returning it
        np.savez_compressed(path, **arrays)
        return str(path)

    @classmethod
    def load(cls, path, params=None) -> "History":
        """Read a file written by :meth:`save` (``np.load(allow_pickle=False)``: nothing in it runs). ``params``:
        ``[(name, shape), ...]`` of the model it must belong to (an error names the first parameters that differ)."""
        path = Path(path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"Snapshot file not found: {str(path)!r}.")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except ValueError as e:
            if "pickle" in str(e):
                raise ValueError(f"{str(path)!r} holds pickled data, which can run code when loaded: cnnwidgets reads "
                                 "only the .npz files that Monitor.save_snapshots writes (nothing was run).") from None
            raise ValueError(f"{str(path)!r} is not a cnnwidgets snapshot file ({e}).") from None
        except (zipfile.BadZipFile, EOFError, OSError, KeyError) as e:
            raise ValueError(f"{str(path)!r} is truncated or damaged ({type(e).__name__}: {e}); save the snapshots "
                             "again with monitor.save_snapshots(path).") from None
        if "meta" not in data or data["meta"].dtype.kind != "U":
            raise ValueError(f"{str(path)!r} is a numpy file but not one of cnnwidgets' snapshot files (no description "
                             "inside); write them with monitor.save_snapshots(path).")
        try:
            meta = json.loads(str(data["meta"]))
            assert meta.get("format") == FORMAT
        except Exception:
            raise ValueError(f"{str(path)!r} is not a snapshot file of this version of cnnwidgets "
                             f"(expected format {FORMAT!r}).") from None
        h = cls([(n, s) for n, s in meta["params"]], meta["layers"], meta["labels"], meta["frame_layers"],
                data.get("image"), model=meta.get("model", ""), max_points=meta["max_points"],
                max_snapshots=meta["max_snapshots"], memory=meta["memory"])
        if params is not None:
            problems = compare_params(h.params, params)
            if problems:
                raise ValueError(f"{str(path)!r} was recorded on another model ({h.model or 'unnamed'}): "
                                 f"{problems}.")
        try:
            h.loss_steps = array.array("q", data["loss_steps"].astype(np.int64).tobytes())
            h.loss_values = array.array("d", data["loss_values"].astype(np.float64).tobytes())
            h.bad_steps = array.array("q", data["bad_steps"].astype(np.int64).tobytes())
            h.bad_values = array.array("d", data["bad_values"].astype(np.float64).tobytes())
            h.bad_count, h.thinned = int(meta["bad_count"]), int(meta["thinned"])
            n = len(data["steps"])
            h.steps = [int(s) for s in data["steps"]]
            h.names = list(meta["names"])
            h.stats = [data["stats"][i] for i in range(n)]
            h.dead = [data["dead"][:, i] for i in range(n)]
            h.cka = [data["cka"][:, i] for i in range(n)]
            h.frames = []
            for i in range(n):
                fr = {}
                for j, layer in enumerate(h.frame_layers):
                    if f"maps_{i}_{j}" not in data:
                        continue
                    act = data[f"act_{i}_{j}"]
                    nb = (len(act) - 1) // 2
                    w = data.get(f"w_{i}_{j}")
                    nw = (len(w) - 1) // 2 if w is not None else 0
                    fr[layer] = Frame(data[f"maps_{i}_{j}"], act[:nb].astype(np.int64), act[nb:],
                                      None if w is None else w[:nw].astype(np.int64), None if w is None else w[nw:])
                h.frames.append(fr or None)
            assert len(h.names) == n and all(s.shape == (len(h.params), len(STATS)) for s in h.stats)
        except Exception as e:
            raise ValueError(f"{str(path)!r} is damaged: its arrays do not match its description "
                             f"({type(e).__name__}: {e}).") from None
        return h


def compare_params(recorded, current, limit: int = 3) -> str:
    """'' when ``recorded`` and ``current`` (``[(name, shape), ...]``) are the same parameters; else a short text
    naming the first differences."""
    a = {n: tuple(s) for n, s in recorded}
    b = {n: tuple(s) for n, s in current}
    out = [f"parameter {n!r} is {a[n]} there and {b[n]} here" for n in a if n in b and a[n] != b[n]]
    out += [f"parameter {n!r} is missing here" for n in a if n not in b]
    out += [f"parameter {n!r} is new here" for n in b if n not in a]
    if not out:
        return ""
    more = f" (and {len(out) - limit} more differences)" if len(out) > limit else ""
    return "; ".join(out[:limit]) + more


def _param_stats(params) -> np.ndarray:
    """``n x 6`` (STATS) of the parameters and their gradients: one stack, one transfer."""
    rows = []
    nan = None
    for p in params:
        t = p.detach()
        if t.is_complex() or not t.is_floating_point():
            t = t.float()
        w = torch.stack([t.mean(), t.std(unbiased=False), torch.linalg.vector_norm(t)]).float()
        g = p.grad
        if g is None:
            if nan is None or nan.device != w.device:
                nan = torch.full((3,), float("nan"), device=w.device)
            gs = nan
        else:
            g = g.detach()
            if g.is_sparse:
                g = g.coalesce().values()
            gs = torch.stack([g.mean(), g.std(unbiased=False), torch.linalg.vector_norm(g)]).float()
        rows.append(torch.cat([w, gs.to(w.device)]))
    if not rows:
        return np.zeros((0, len(STATS)))
    dev = rows[0].device
    return torch.stack([r.to(dev) for r in rows]).cpu().double().numpy()


def _activation_after(probe, layer) -> str | None:
    """The ReLU that follows conv ``layer`` before the next conv (where zero outputs are dead units), if any."""
    convs = [l.order for l in probe.layers if l.order > layer.order]
    nxt = min(convs) if convs else math.inf
    for l in probe.all_layers:
        if layer.order < l.order < nxt and l.type in RELUS and l.shape == layer.shape:
            return l.name
    return None


class Recorder:
    """Takes snapshots of ``probe``'s model into a :class:`History` while a loop trains it.

    ``image``: the probe image whose maps and activation histograms are kept; ``images``: the probe images (dead
    units, CKA; at least 4 for CKA); one of the two is needed. ``layers``: the layers watched (default: every conv
    layer); ``frame_layers``: the layers whose maps and histograms are kept (default: the same). ``reference``:
    the snapshot CKA compares with (``0``: the first, taken when the Recorder is made).
    """

    def __init__(self, probe, image=None, images=None, *, layers=None, frame_layers=None, cka: bool = True,
                 bins: int = BINS, max_points: int = 100_000, max_snapshots: int = 1000, memory: int = 256 * 2**20,
                 batch_size: int = 32, name: str = "", take: bool = True, step: int = 0):
        self.probe = probe
        if image is None and images is None:
            raise ValueError("Give the monitor an image to watch: Monitor(probe, image=x[0]) (its feature maps), "
                             "and images=x[:64] for dead units and CKA over several images.")
        xs = probe.prepare(images) if images is not None else None
        x0 = probe.prepare(image) if image is not None else xs[:1]
        if x0.shape[0] != 1:
            raise ValueError(f"image= is one image; got a batch of {x0.shape[0]} (pass images= for several).")
        self.x0 = x0
        self.xs = xs if xs is not None else x0
        self.batch_size = int(batch_size)
        self.layers = [probe.layer(l) for l in (probe.require_layers("The monitor") if layers is None else
                                                ([layers] if isinstance(layers, str) else layers))]
        names = [l.name for l in self.layers]
        fl = names if frame_layers is None else [probe.layer(l).name for l in
                                                 ([frame_layers] if isinstance(frame_layers, str) else frame_layers)]
        self.frame_layers = fl
        self.relu = {l.name: _activation_after(probe, l) for l in self.layers}
        self.capture_names = list(dict.fromkeys(names + fl + [r for r in self.relu.values() if r]))
        self.cka_on = bool(cka) and self.xs.shape[0] >= CKA_MIN_IMAGES
        self.bins = int(bins)
        self.params = [(n, p) for n, p in probe.model.named_parameters()]
        self.signature = [(n, tuple(p.shape)) for n, p in self.params]
        self.weight_of = {}
        pnames = dict(self.signature)
        for l in self.layers + [probe.layer(n) for n in fl]:
            if f"{l.name}.weight" in pnames:
                self.weight_of[l.name] = f"{l.name}.weight"
        disp = probe.display(image if image is not None else (images[:1] if hasattr(images, "__getitem__") and
                                                               not isinstance(images, (str, Path)) else images))
        from ..render import image_rgb

        self.history = History(self.signature, names, [l.label for l in self.layers], fl, image_rgb(disp[0]),
                               model=getattr(probe, "name", ""), max_points=max_points, max_snapshots=max_snapshots,
                               memory=memory)
        self.reference: dict[str, torch.Tensor] | None = None
        self.last_seconds = 0.0
        if take:
            self.snapshot(step, name=name)

    # --- checks ----------------------------------------------------------------------------------
    def check_parameters(self) -> None:
        """A clear error naming the parameter when the model's parameters changed name or shape since the start;
        picks up replaced parameter objects (same name and shape) silently."""
        now = [(n, p) for n, p in self.probe.model.named_parameters()]
        sig = [(n, tuple(p.shape)) for n, p in now]
        if sig != self.signature:
            problems = compare_params(self.signature, sig)
            if not problems:  # same names and shapes in another order
                problems = "the parameters are in another order"
            raise ParametersChanged(f"The model's parameters changed since the monitor started: "
                                    f"{problems.replace(' there ', ' at the start ').replace(' here', ' now')}. "
                                    "A monitor follows one model; make a new Monitor for the new one.")
        self.params = now

    # --- snapshots -------------------------------------------------------------------------------
    def _capture(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Activations of the probe image and of the probe images (each layer: ``1 x ...`` and ``n x ...``)."""
        names = self.capture_names
        if self.xs is self.x0:
            one = self.probe.capture(self.x0, names)
            return one, one
        parts: dict[str, list[torch.Tensor]] = {n: [] for n in names}
        first = None
        for i in range(0, self.xs.shape[0], self.batch_size):
            xb = self.xs[i : i + self.batch_size]
            if i == 0:
                xb = torch.cat([self.x0, xb])
            got = self.probe.capture(xb, names)
            if i == 0:
                first = {n: t[:1] for n, t in got.items()}
                got = {n: t[1:] for n, t in got.items()}
            for n, t in got.items():
                parts[n].append(t)
        return first, {n: torch.cat(v) if len(v) > 1 else v[0] for n, v in parts.items()}

    def snapshot(self, step: int, name: str = "") -> bool:
        """Record a snapshot at ``step``; True when older snapshots were thinned (double the interval)."""
        t0 = time.perf_counter()
        self.check_parameters()
        with torch.no_grad():
            row = _param_stats([p for _, p in self.params])
            one, many = self._capture()
            dead = np.empty(len(self.layers))
            ckas = np.full(len(self.layers), np.nan)
            grams = {}
            for i, l in enumerate(self.layers):
                relu = self.relu[l.name]
                a = many[relu or l.name]
                a = a.reshape(a.shape[0], a.shape[1], -1) if a.ndim >= 3 else a.reshape(a.shape[0], a.shape[1], 1)
                # a unit (channel) is dead when no probe image makes it positive (after its ReLU: exactly zero)
                alive = (a > 0).any(dim=2).any(dim=0)
                dead[i] = 1.0 - float(alive.float().mean()) if alive.numel() else float("nan")
                if self.cka_on:
                    f = many[l.name].reshape(many[l.name].shape[0], -1).float()
                    with np.errstate(all="ignore"):  # a diverged run: inf/NaN features give CKA 0, below
                        k = center_gram(gram_linear(f))
                    grams[l.name] = (k, float((k * k).sum()))
            if self.cka_on:
                if self.reference is None:
                    self.reference = grams
                for i, l in enumerate(self.layers):
                    k, kk = grams[l.name]
                    r, rr = self.reference[l.name]
                    den = math.sqrt(kk * rr) if kk * rr >= 0 else float("nan")
                    c = float((k * r).sum()) / den if den > 0 and np.isfinite(den) else 0.0
                    ckas[i] = c if np.isfinite(c) else 0.0
            frames = {}
            named = dict(self.params)
            for n in self.frame_layers:
                m = one[n][0].float().cpu().numpy()
                h = stats.histogram(m, bins=self.bins)
                wn = self.weight_of.get(n)
                wh = stats.histogram(named[wn].detach().float().cpu().numpy(), bins=self.bins) if wn in named else None
                big = np.abs(m[np.isfinite(m)]).max(initial=0.0) > 6e4  # beyond float16: keep float32, not inf
                frames[n] = Frame(m.astype(np.float32 if big else np.float16), h.counts, h.edges.astype(np.float64),
                                  None if wh is None else wh.counts, None if wh is None else wh.edges.astype(np.float64))
        thinned = self.history.add_snapshot(step, row, dead, ckas, frames, name)
        self.last_seconds = time.perf_counter() - t0
        return thinned


def from_checkpoints(probe, paths: Sequence, image=None, images=None, **kwargs) -> History:
    """A :class:`History` of saved state dicts (``weights_only`` loading; ``probe`` must be over a private model the
    checkpoints may be loaded into): one snapshot per file, in the order given (steps 1, 2, ...), named after the
    file; CKA against the first."""
    from ..models import load_checkpoint

    paths = [Path(p).expanduser() for p in paths]
    if not paths:
        raise ValueError("from_checkpoints needs at least one checkpoint file.")
    rec = None
    for i, p in enumerate(paths, 1):
        load_checkpoint(probe.model, p)
        if rec is None:
            rec = Recorder(probe, image, images, step=i, name=p.name, **kwargs)
        else:
            rec.snapshot(i, name=p.name)
    return rec.history
