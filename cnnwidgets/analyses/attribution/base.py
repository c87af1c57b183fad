"""What an attribution method is: a :class:`Method` subclass with its :class:`Option` specs, in one registry.

A method is one class in one file of :mod:`.methods` (every file there is imported, and ``@register``
adds its class). It says how to show itself (``label``, ``legend``), which options it takes and what
they may be (the Saliency panel builds its controls from them, :func:`~.api.attribute` checks them),
and how to compute: :meth:`Method.attribute` in one go, or :meth:`Method.steps`, a generator of
partial maps that sharpen as samples, path steps or window positions accumulate.
"""
from __future__ import annotations

import difflib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple

import numpy as np
import torch

from ..attribution_display import channel_reduce

#: seconds one chunk of work (a batch of samples, steps or windows) aims at, between two partial maps
CHUNK_SECONDS = 1.0
#: a chunk may take up to this long when each call to the model has a large fixed cost (a CPU shared with other
#: work), so that the fixed cost stays a small part of the work
CHUNK_SECONDS_MAX = 3.0


@dataclass(frozen=True)
class Option:
    """One option of a method: what it is, what it may be, and how the panel shows it.

    ``kind``: ``"int"``, ``"float"``, ``"choice"`` (one of ``choices``, given as values or ``(value, label)``
    pairs) or ``"layer"`` (a layer name, or None for the method's default). ``min``/``max``: the valid range
    (``attribute`` refuses values outside it); ``slider``: ``(lo, hi, step)`` of the panel's control.
    ``control=False`` keeps it out of the panel (``batch_size``, ``seed``). ``help`` says what it means, in
    the error message for a bad value.
    """

    name: str
    kind: str
    default: Any
    label: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple = ()
    slider: tuple | None = None
    control: bool = True
    help: str = ""

    @property
    def text(self) -> str:
        return self.label or self.name

    @property
    def values(self) -> list:
        return [c[0] if isinstance(c, tuple) else c for c in self.choices]

    @property
    def labels(self) -> list[tuple[str, Any]]:
        """``(label, value)`` pairs for a dropdown."""
        return [(c[1], c[0]) if isinstance(c, tuple) else (str(c), c) for c in self.choices]

    def check(self, value, owner: str) -> Any:
        """``value`` checked and converted (int / float), or a short ValueError / TypeError naming the option."""
        what = f"{owner}: {self.name}" + (f" ({self.help})" if self.help else "")
        if self.kind in ("int", "float"):
            if isinstance(value, torch.Tensor) and value.ndim == 0:
                value = value.item()
            number = (int, np.integer) if self.kind == "int" else (int, float, np.integer, np.floating)
            if isinstance(value, bool) or not isinstance(value, number):
                raise TypeError(f"{what} is {'a whole number' if self.kind == 'int' else 'a number'}, got {value!r}.")
            value = int(value) if self.kind == "int" else float(value)
            if not math.isfinite(value):
                raise ValueError(f"{what} must be finite, got {value!r}.")
            if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
                bounds = [f"≥ {self.min:g}"] if self.min is not None else []
                bounds += [f"≤ {self.max:g}"] if self.max is not None else []
                raise ValueError(f"{what} must be {' and '.join(bounds)}, got {value!r}.")
            return value
        if self.kind == "choice":
            if value not in self.values:
                close = difflib.get_close_matches(str(value), [str(v) for v in self.values], n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"{what} is one of {', '.join(map(repr, self.values))}, not {value!r}.{hint}")
            return value
        if self.kind == "layer":
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{what} is a layer name (str) or None, got {type(value).__name__}.")
            return value or None
        return value


class Partial(NamedTuple):
    """What :meth:`Method.steps` yields: ``done`` units of the method's total, the map so far (``1xCxHxW``
    tensor, or None when there is nothing to show yet) and extras for the :class:`Attribution` (``"note"``: words
    added to the progress line instead)."""

    done: int
    raw: torch.Tensor | None
    extras: dict = {}


class Method:
    """One attribution method. Subclass it in a file of :mod:`.methods`, decorate with :func:`register`.

    Implement :meth:`attribute` (one go) or :meth:`steps` (partial maps as the work accumulates; the
    last one is the final map). ``x`` is the image in pixels (``1xCxHxW`` in [0, 1]); ``fn`` is
    ``probe.pixel_model()`` (a private view of the model: its normalisation inside, eval mode, frozen);
    ``o`` the options, checked, with the defaults filled in. Hooks added to ``fn`` are removed for you.
    """

    name: str = ""  #: the key: ``attribute(probe, image, name)``
    label: str = ""  #: in the method list and captions
    short: str = ""  #: tile title (default: ``label``)
    options: tuple[Option, ...] = ()
    signed: bool = True  #: the map can be negative (red for the class, blue against)
    gradient: bool = False  #: the map is |raw| max over channels (the homework's saliency), else the channel sum
    slow: bool = False  #: many forwards: the panel computes it when asked (Compute), not on every option change
    unit: str = "map"  #: what :meth:`total` counts, for the progress line ("sample", "window position")
    order: int = 100  #: position in the method list
    #: works on any classifier (in :data:`METHODS`, the "All methods" tab); False: only where :meth:`applies` (a ViT's
    #: attention), listed by ``registered(probe)`` for such a model
    general: bool = True

    def applies(self, probe) -> bool:
        """Whether this method can explain ``probe``'s model (the panel lists only those that can)."""
        return True

    def legend(self, a: "Attribution") -> str:
        """One line (plain text) that says what the map is."""
        return ""

    def check(self, o: dict, x: torch.Tensor) -> None:
        """Checks that need the image (a window larger than the image); raise a short ValueError."""

    def total(self, o: dict, x: torch.Tensor) -> int:
        """How many units of work (``unit``) the map takes; 1 for a method computed in one go."""
        return 1

    def attribute(self, probe, fn, x: torch.Tensor, target: int, o: dict) -> tuple[torch.Tensor, dict]:
        """The map in one go: ``(1xCxHxW tensor, extras)``. The default runs :meth:`steps` to its end."""
        last = None
        for last in self.steps(probe, fn, x, target, o):
            pass
        if last is None or last.raw is None:
            raise RuntimeError(f"{self.label} gave no map.")
        return last.raw, dict(last.extras)

    def steps(self, probe, fn, x: torch.Tensor, target: int, o: dict) -> Iterator[Partial]:
        """Partial maps as the work accumulates, the last one final. The default: :meth:`attribute`, once."""
        raw, extras = self.attribute(probe, fn, x, target, o)
        yield Partial(self.total(o, x), raw, extras)

    # --- helpers for subclasses and the API ------------------------------------------------------
    @property
    def defaults(self) -> dict:
        return {opt.name: opt.default for opt in self.options}

    def resolve(self, opts: dict) -> dict:
        """The options with defaults filled in, each checked against its spec."""
        specs = {opt.name: opt for opt in self.options}
        unknown = sorted(set(opts) - set(specs))
        if unknown:
            raise TypeError(f"{self.name} takes options {sorted(specs) or 'none'}, not {unknown}.")
        o = {**self.defaults, **opts}
        return {k: specs[k].check(v, self.label) for k, v in o.items()}

    def reduce(self, raw: np.ndarray) -> np.ndarray:
        """CxHxW -> the HxW map (:attr:`gradient`: |raw| max over channels; else the signed channel sum)."""
        return channel_reduce(raw, "abs" if self.gradient else "signed", gradient=self.gradient)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {self.label}>"


# --- the registry --------------------------------------------------------------------------------
_REGISTRY: dict[str, Method] = {}


def register(cls):
    """Class decorator: add a :class:`Method` subclass to the registry (under its ``name``); returns the class."""
    m = cls() if isinstance(cls, type) else cls
    if not isinstance(m, Method) or not m.name or not m.label:
        raise TypeError("register() takes a Method subclass with a name and a label.")
    if type(m).attribute is Method.attribute and type(m).steps is Method.steps:
        raise TypeError(f"{type(m).__name__} computes nothing: implement attribute() (one go) or steps() (partial maps).")
    _REGISTRY[m.name] = m
    return cls


def registered(probe=None) -> list[Method]:
    """The registered methods, in list order: the general ones (:data:`METHODS`), and with a ``probe`` also those
    made for its kind of model (the attention of a ViT)."""
    ms = sorted(_REGISTRY.values(), key=lambda m: m.order)
    return [m for m in ms if m.general or (probe is not None and m.applies(probe))]


def get(name) -> Method:
    """The method registered as ``name`` (or ``name`` itself when it is a :class:`Method`)."""
    if isinstance(name, Method):
        return name
    m = _REGISTRY.get(name) if isinstance(name, str) else None
    if m is None:
        names = [m.name for m in registered()]
        close = difflib.get_close_matches(str(name), names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown method {name!r}.{hint} Methods: {', '.join(names)}.")
    return m


class _Names(Sequence):
    """The registered method names, in list order (read live: a method registered later is in it)."""

    def __init__(self, where=lambda m: True):
        self._where = where

    def _names(self) -> tuple[str, ...]:
        return tuple(m.name for m in registered() if self._where(m))  # the general methods

    def __getitem__(self, i):
        return self._names()[i]

    def __len__(self) -> int:
        return len(self._names())

    def __repr__(self) -> str:
        return repr(self._names())

    def __eq__(self, other):
        return tuple(self) == tuple(other) if isinstance(other, (Sequence, tuple)) else NotImplemented


class _Table(Mapping):
    """``{method name: what(method)}`` for the registered methods, read live."""

    def __init__(self, what):
        self._what = what

    def __getitem__(self, name):
        if name not in _REGISTRY:
            raise KeyError(name)
        return self._what(_REGISTRY[name])

    def __iter__(self):
        return (m.name for m in sorted(_REGISTRY.values(), key=lambda m: m.order))

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return repr(dict(self))


METHODS = _Names()  #: method names, in list order
LABELS = _Table(lambda m: m.label)  #: ``{name: label}``
DEFAULTS = _Table(lambda m: m.defaults)  #: ``{name: {option: default}}`` (a fresh dict each time)
GRADIENT_METHODS = _Names(lambda m: m.gradient)  #: methods whose map is |gradient| max over channels
SLOW = _Names(lambda m: m.slow)  #: methods of many forwards


# --- the result ------------------------------------------------------------------------------------
@dataclass
class Attribution:
    """One attribution map and how it was made (a partial one while ``done < total``)."""

    map: np.ndarray  #: HxW: |grad| max over channels for gradient methods, else the channel sum (signed)
    raw: np.ndarray  #: CxHxW signed attribution (1xHxW for Grad-CAM), at the model's input size
    target: int  #: class index explained
    method: str
    image: np.ndarray  #: CxHxW in [0, 1]: the image as the model sees it (resized, cropped)
    target_name: str = ""
    score: float = float("nan")  #: the target's logit
    prob: float = float("nan")  #: the target's softmax probability
    layer: str | None = None  #: Grad-CAM layer
    coarse: np.ndarray | None = None  #: Grad-CAM map at the layer's resolution, before upsampling
    delta: float | None = None  #: Integrated Gradients convergence delta (completeness error)
    segments: np.ndarray | None = None  #: LIME superpixels (HxW labels)
    options: dict = field(default_factory=dict)
    seconds: float = 0.0
    model: str = ""
    done: int = 1  #: units of work (samples, path steps, window positions) in this map
    total: int = 1  #: units the final map takes

    @property
    def partial(self) -> bool:
        return self.done < self.total

    @property
    def kind(self) -> Method:
        return get(self.method)

    @property
    def signed(self) -> bool:
        """Whether :attr:`map` can be negative (display it with a diverging colormap)."""
        return self.kind.signed

    @property
    def label(self) -> str:
        return self.kind.label

    @property
    def progress(self) -> str:
        """``"20 / 50 samples"``."""
        unit = self.kind.unit
        return f"{self.done} / {self.total} {unit}{'' if self.total == 1 else 's'}"

    def as_map(self, sign: str = "auto") -> np.ndarray:
        """The HxW map as ``"abs"`` (magnitude), ``"signed"`` or ``"auto"`` (the method's own :attr:`map`)."""
        if sign == "auto":
            return self.map
        return channel_reduce(self.raw, sign, gradient=self.kind.gradient)


# --- pacing ----------------------------------------------------------------------------------------
class Pace:
    """Chunk sizes for work done in pieces between two partial maps: the first chunk is one item (a first partial
    map soon); then the time of a chunk of ``b`` items is modelled as ``a + c b`` (a fixed cost per call plus a
    cost per item, fitted to the chunks so far) and the next chunk takes about ``seconds`` (``CHUNK_SECONDS``), or
    longer, up to ``CHUNK_SECONDS_MAX``, while the fixed cost would be more than 5% of it; never more than
    ``growth`` times the last chunk nor ``limit`` items. A Stop does not wait for a chunk: it interrupts it
    (:func:`~.api.attribute_steps`' ``stop``).

    >>> pace = Pace(limit=25)
    >>> for i, j in pace.chunks(50):
    ...     with pace.timed(j - i):
    ...         work(i, j)
    """

    growth = 4

    def __init__(self, limit: int, seconds: float | None = None):
        self.limit = max(1, int(limit))
        self.seconds = CHUNK_SECONDS if seconds is None else seconds
        self.size = 1
        self.seen: list[tuple[int, float]] = []

    def chunks(self, n: int) -> Iterator[tuple[int, int]]:
        i = 0
        while i < n:
            j = min(n, i + self.size)
            yield i, j
            i = j

    def timed(self, items: int) -> "_Timer":
        return _Timer(self, items)

    def took(self, items: int, seconds: float) -> None:
        self.seen = (self.seen + [(items, max(seconds, 1e-6))])[-6:]
        b = np.array([s[0] for s in self.seen], float)
        t = np.array([s[1] for s in self.seen])
        fixed, per = 0.0, seconds / items
        if len(set(b)) > 1:  # least squares t = a + c b over the last chunks, clamped to sense
            c, a = np.polyfit(b, t, 1)
            if c > 0:
                fixed, per = min(max(a, 0.0), seconds), c
        budget = min(max(self.seconds, 20 * fixed), max(self.seconds, CHUNK_SECONDS_MAX))
        self.size = max(1, min(self.limit, self.growth * items, int((budget - fixed) / per)))


class _Timer:
    def __init__(self, pace: Pace, items: int):
        self.pace, self.items = pace, items

    def __enter__(self):
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.pace.took(self.items, time.perf_counter() - self.t)


def spread(n: int) -> list[int]:
    """``range(n)`` in coarse-to-fine order (bit-reversed: 0, n/2, n/4, 3n/4, ...), so that any prefix
    samples the whole range evenly: the path steps of a partial Integrated Gradients."""
    bits = max(1, (n - 1).bit_length())
    return sorted(range(n), key=lambda i: (int(format(i, f"0{bits}b")[::-1], 2), i))


def spread2d(rows: int, cols: int) -> list[tuple[int, int]]:
    """Grid positions coarse to fine: every 2^k-th row and column first, then the ones between, so that
    any prefix covers the whole grid at some spacing (the window positions of a partial occlusion map)."""
    bits = max(1, (max(rows, cols) - 1).bit_length())

    def level(i: int) -> int:
        return 0 if i == 0 else bits - ((i & -i).bit_length() - 1)

    return sorted(((r, c) for r in range(rows) for c in range(cols)), key=lambda rc: (max(level(rc[0]), level(rc[1])), rc))
