"""What a dream maximises: objectives that compose with ``+``, ``-`` and scalar ``*``.

An :class:`Objective` maps the captured activations ``{layer: tensor}`` of a batch of images to
one value per image (shape ``N``); the dream maximises their sum. Each objective names the layers
it reads (``.layers``), so the engine stops the forward at the deepest of them, and can check its
arguments against a Probe before a run (``.check(probe, shapes)``).

>>> obj = channel("_blocks.8._project_conv", 5) - 0.5 * layer("_blocks.3._project_conv")
>>> atlas = channels("_blocks.8._project_conv", range(16))   # image i maximises channel i
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from ...probe import whole_number

LOGITS = "logits"  #: layer key of the model's output (class scores); see :func:`class_logit`

class Objective:
    """A value per image to maximise, computed from layer activations.

    ``fn(acts) -> Tensor[N]``; ``layers``: the layer keys (names, indices or :data:`LOGITS`) it
    reads; ``checks``: functions ``(probe, shapes)`` that raise a clear error on bad arguments.
    """

    def __init__(self, fn: Callable, layers: Iterable = (), name: str = "objective", checks: Sequence[Callable] = (),
                 batch: int | None = None):
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.name = name
        self.checks = tuple(checks)
        self.batch = batch  #: number of images this objective needs (None: any)

    def __call__(self, acts) -> torch.Tensor:
        return self.fn(acts)

    def check(self, probe, shapes: dict | None = None) -> None:
        """Raise ValueError/KeyError if an argument does not fit ``probe`` (``shapes``: key -> map shape)."""
        for c in self.checks:
            c(probe, shapes or {})

    # --- algebra -------------------------------------------------------------------------------
    @staticmethod
    def _lift(other) -> "Objective":
        if isinstance(other, Objective):
            return other
        if isinstance(other, (int, float)):
            return Objective(lambda acts, k=float(other): torch.tensor(k), name=repr(other))
        return NotImplemented

    def _join(self, other, op, symbol) -> "Objective":
        o = self._lift(other)
        if o is NotImplemented:
            return NotImplemented
        batch = self.batch if self.batch is not None else o.batch
        return Objective(lambda acts: op(self(acts), o(acts)), self.layers + o.layers, f"{self.name} {symbol} {o.name}",
                         self.checks + o.checks, batch)

    def __add__(self, other):
        return self._join(other, torch.add, "+")

    def __radd__(self, other):
        return self._lift(other)._join(self, torch.add, "+") if isinstance(other, (int, float)) else NotImplemented

    def __sub__(self, other):
        return self._join(other, torch.sub, "-")

    def __rsub__(self, other):
        return self._lift(other)._join(self, torch.sub, "-") if isinstance(other, (int, float)) else NotImplemented

    def __mul__(self, k):
        if not isinstance(k, (int, float)):
            raise TypeError(f"An objective can only be multiplied by a number, got {type(k).__name__}.")
        return Objective(lambda acts: k * self(acts), self.layers, f"{k:g}*({self.name})", self.checks, self.batch)

    __rmul__ = __mul__

    def __truediv__(self, k):
        if not isinstance(k, (int, float)):
            raise TypeError(f"An objective can only be divided by a number, got {type(k).__name__}.")
        return self * (1.0 / k)

    def __neg__(self):
        return self * -1

    def named(self, name: str) -> "Objective":
        """The same objective under another display name."""
        return Objective(self.fn, self.layers, name, self.checks, self.batch)

    def __repr__(self) -> str:
        return f"Objective({self.name})"


# --- checks ----------------------------------------------------------------------------------------
def _layer_of(probe, key):
    if key == LOGITS:
        return None
    return probe.layer(key)


def _check_channel(key, c):
    def check(probe, shapes):
        shape = shapes.get(key) or _shape(probe, key)
        n = shape[0] if shape else None
        if n is not None and not (0 <= c < n):
            what = "the model's output" if key == LOGITS else f"layer {_layer_of(probe, key).name!r}"
            raise ValueError(f"Channel {c} is out of range: {what} has {n} channels (0..{n - 1}).")
    return check


def _check_position(key, x, y, ref=None):
    def check(probe, shapes):
        shape = shapes.get(key) or _shape(probe, key)
        if ref is not None and len(shape) == 3:
            ref["hw"] = (shape[1], shape[2])  # the map at the dream's own image size: positions refer to it
        if len(shape) != 3:
            raise ValueError(
                f"Layer {_layer_of(probe, key).name!r} gives units of shape {tuple(shape)}, not maps: it has no (x, y) position. "
                "Use channel(layer, c) for a unit of a non-convolutional layer.")
        h, w = shape[1], shape[2]
        if x is not None and not (0 <= x < w) or y is not None and not (0 <= y < h):
            raise ValueError(f"Neuron position (x={x}, y={y}) is outside the {h}x{w} map of layer "
                             f"{_layer_of(probe, key).name!r}: use 0 <= x < {w} and 0 <= y < {h}.")
    return check


def _check_direction(key, d):
    def check(probe, shapes):
        shape = shapes.get(key) or _shape(probe, key)
        if shape and d.numel() != shape[0]:
            raise ValueError(f"The direction has {d.numel()} entries but layer {_layer_of(probe, key).name!r} has "
                             f"{shape[0]} channels.")
    return check


def _shape(probe, key):
    if key == LOGITS:
        return probe.output_shape
    return probe.layer(key).shape


def _per_image(t: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the first."""
    return t.reshape(t.shape[0], -1).mean(1)


def _at(t: torch.Tensor, x, y, ref=None) -> torch.Tensor:
    """Activations at map position (x, y) (centre when None), clamped to the map. ``ref``: the ``(h, w)`` of the map
    the position refers to (the dream's image untransformed); a larger or smaller map (the robustness transforms pad
    and scale the image around its centre) is read at the same place relative to the centre."""
    if t.ndim != 4:
        return t
    h, w = t.shape[2], t.shape[3]
    dy, dx = ((h - ref[0] + 1) // 2, (w - ref[1] + 1) // 2) if ref else (0, 0)  # the offset of the centres, rounded
    xi = w // 2 if x is None else min(max(int(x) + dx, 0), w - 1)
    yi = h // 2 if y is None else min(max(int(y) + dy, 0), h - 1)
    return t[:, :, yi : yi + 1, xi : xi + 1]


# --- objectives -------------------------------------------------------------------------------------
def channel(layer, c: int) -> Objective:
    """Mean activation of channel ``c`` of ``layer`` (of unit ``c`` for a non-spatial layer)."""
    c = whole_number(c, "the channel")
    return Objective(lambda acts: _per_image(acts[layer][:, c]), [layer], f"channel {layer}:{c}", [_check_channel(layer, c)])


def neuron(layer, c: int, x: int | None = None, y: int | None = None) -> Objective:
    """Activation of channel ``c`` at map position (``x``, ``y``); the centre of the map by default. In a dream the
    position is on the map of the image itself: the transforms' padding (a larger map) does not move it."""
    c = whole_number(c, "the channel")
    x = None if x is None else whole_number(x, "the x position")
    y = None if y is None else whole_number(y, "the y position")
    ref: dict = {}  # the map size the position refers to, noted when a dream checks the objective
    return Objective(lambda acts: _per_image(_at(acts[layer], x, y, ref.get("hw"))[:, c]), [layer],
                     f"neuron {layer}:{c}@({x},{y})", [_check_channel(layer, c), _check_position(layer, x, y, ref)])


def layer(layer, mode: str = "mean") -> Objective:
    """A whole layer (the DeepDream objective): its ``"mean"``, or ``"squares"`` (mean of squares)."""
    if mode not in ("mean", "squares"):
        raise ValueError(f"layer objective mode must be 'mean' or 'squares', got {mode!r}.")
    f = (lambda acts: _per_image(acts[layer])) if mode == "mean" else (lambda acts: _per_image(acts[layer] ** 2))
    return Objective(f, [layer], f"layer {layer} ({mode})")


def direction(layer, vector, x: int | None = None, y: int | None = None) -> Objective:
    """A direction in channel space: cosine similarity of each position's channel vector with ``vector``
    (all positions, or only (x, y) when given)."""
    d = torch.as_tensor(vector, dtype=torch.float32).flatten()

    def f(acts):
        t = acts[layer]
        if x is not None or y is not None:
            t = _at(t, x, y)
        v = d.to(t.device, t.dtype).reshape((1, -1) + (1,) * (t.ndim - 2))
        return _per_image(F.cosine_similarity(t, v, dim=1) if t.ndim > 2 else F.cosine_similarity(t, v.reshape(1, -1), dim=1)[:, None])

    checks = [_check_direction(layer, d)] + ([_check_position(layer, x, y)] if x is not None or y is not None else [])
    return Objective(f, [layer], f"direction {layer}", checks)


def class_logit(c: int) -> Objective:
    """The model's output (logit) for class ``c``: the whole forward runs."""
    return channel(LOGITS, c).named(f"class {c}")


def diversity(layer) -> Objective:
    """A diversity term across the batch: minus each image's mean cosine similarity of Gram matrices with the
    others (as in Lucid/Lucent). Add it with a weight: ``channel(L, 3) + 0.5 * diversity(L)``."""
    def f(acts):
        t = acts[layer]
        n = t.shape[0]
        if n < 2:
            return torch.zeros(n, device=t.device)
        flat = t.reshape(n, t.shape[1], -1)
        grams = F.normalize(torch.bmm(flat, flat.transpose(1, 2)).reshape(n, -1), dim=1)
        sim = grams @ grams.T
        return -(sim.sum(1) - sim.diagonal()) / n
    return Objective(f, [layer], f"diversity {layer}")


def per_image(objectives: Sequence[Objective]) -> Objective:
    """Image ``i`` of the batch maximises ``objectives[i]``: N objectives optimised as ONE batch."""
    objs = list(objectives)
    if not objs:
        raise ValueError("per_image needs at least one objective.")

    def f(acts):
        return torch.stack([o(acts)[i] for i, o in enumerate(objs)])

    layers = [k for o in objs for k in o.layers]
    checks = [c for o in objs for c in o.checks]
    return Objective(f, layers, f"{len(objs)} objectives", checks, batch=len(objs))


def channels(layer, cs: Iterable[int]) -> Objective:
    """Image ``i`` maximises channel ``cs[i]`` of ``layer`` (an atlas), in one batch and one gather."""
    cs = [whole_number(c, "the channel") for c in cs]
    if not cs:
        raise ValueError("channels needs at least one channel index.")
    idx = torch.tensor(cs)

    def f(acts):
        t = acts[layer]
        n = len(cs)
        sel = t[torch.arange(n, device=t.device), idx.to(t.device)]
        return _per_image(sel)

    return Objective(f, [layer], f"channels {layer}:{cs[0]}..{cs[-1]}", [_check_channel(layer, c) for c in cs], batch=len(cs))


def as_objective(obj, probe=None) -> Objective:
    """An Objective as given, or ``"layer:c"`` -> :func:`channel`."""
    if isinstance(obj, Objective):
        return obj
    if isinstance(obj, str) and ":" in obj:
        name, c = obj.rsplit(":", 1)
        if not c.strip().lstrip("-").isdigit():
            raise ValueError(f"{obj!r}: after the colon comes a channel number, e.g. '{name.strip()}:3'.")
        return channel(name.strip(), int(c))
    raise TypeError(f"Expected an Objective (e.g. cnnwidgets.dream.channel(layer, 3)) or 'layer:channel', got {obj!r}.")
