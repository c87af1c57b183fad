"""Receptive fields: the crop of the input that one unit ``(layer, y, x)`` of a layer sees.

Two ways, and :attr:`ReceptiveField.method` says which was used:

* ``"arithmetic"`` — from the kernels, strides, paddings and dilations of the convolutions, poolings and pads on the
  way to the layer (the usual ``rf += (k_eff - 1) * jump; jump *= stride`` recursion, with each module's first
  input pixel). It is used when the modules' recorded output sizes show a chain (plain CNNs, VGG, EfficientNet's
  explicit pads) where single-module side branches join it again (a ResNet's strided 1x1 shortcut: the unit sees
  the union of both). A module whose size the recursion does not predict (an upsampling, a transformer's tokens)
  makes the arithmetic unclear, and so does one gradient at the centre unit that reaches outside its box (a pooling
  and an upsampling inside a ``forward`` keep the sizes but widen the field).
* ``"gradient"`` — measured: the nonzero support (or the box holding ``mass`` of it) of ``d unit / d input``, summed
  over channels and a small batch of noise images, at the centre unit, then shifted by the layer's stride for the
  other units. Used where the arithmetic is unclear, or when asked for (``method="gradient"``).

Non-spatial layers (a classifier's vector) see the whole image (``"whole image"``).
Everything runs through the :class:`~cnnwidgets.probe.Probe`: the layer list it recorded, and its forwards.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

METHODS = ("auto", "arithmetic", "gradient")


@dataclass(frozen=True)
class ReceptiveField:
    """Where the units of one layer look in the model's input (pixels of the preprocessed input)."""

    layer: str
    size: tuple[int, int]  #: height and width of one unit's field before clipping to the image
    stride: tuple[int, int]  #: input pixels between two neighbouring units
    offset: tuple[int, int]  #: first input row/column seen by unit (0, 0) (negative: it starts in the padding)
    input_size: tuple[int, int]  #: the input's height and width
    method: str  #: "arithmetic", "gradient" or "whole image"

    def box(self, y: int | None, x: int | None) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` in input pixels (bottom/right exclusive), clipped to the image, of the unit
        at ``(y, x)`` of the layer's map; the whole image for ``None`` (a non-spatial layer)."""
        H, W = self.input_size
        if y is None or x is None or self.method == "whole image":
            return 0, 0, H, W
        top = int(y) * self.stride[0] + self.offset[0]
        left = int(x) * self.stride[1] + self.offset[1]
        return max(0, top), max(0, left), min(H, top + self.size[0]), min(W, left + self.size[1])

    def describe(self) -> str:
        """One line in the user's words."""
        if self.method == "whole image":
            return "this layer's units see the whole image"
        how = ("computed from the kernels, strides and padding of the layers on the way" if self.method == "arithmetic"
               else "measured from the gradient of a unit with respect to the input")
        return f"each unit sees {self.size[0]}×{self.size[1]} input pixels, {self.stride[0]} apart ({how})"


# --- arithmetic ------------------------------------------------------------------------------------------------

_POOLS = (nn.MaxPool2d, nn.AvgPool2d)
_PADS = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class _Unclear(Exception):
    pass


def _geometry(m: nn.Module):
    """Per axis (y, x): ``(kernel_eff, stride, pad_before, pad_after, ceil_mode)`` of a module that changes
    geometry, or None for one that keeps it (a BatchNorm, a ReLU, a 1x1-stride-1 op included)."""
    if isinstance(m, nn.Conv2d):
        if isinstance(m.padding, str):  # "same" / "valid"
            k, d = _pair(m.kernel_size), _pair(m.dilation)
            ke = [d[i] * (k[i] - 1) + 1 for i in range(2)]
            if m.padding == "valid":
                pads = [(0, 0), (0, 0)]
            else:
                pads = [((e - 1) // 2, e - 1 - (e - 1) // 2) for e in ke]
        else:
            k, d, p = _pair(m.kernel_size), _pair(m.dilation), _pair(m.padding)
            ke = [d[i] * (k[i] - 1) + 1 for i in range(2)]
            pads = [(p[i], p[i]) for i in range(2)]
        s = _pair(m.stride)
        return [(ke[i], s[i], pads[i][0], pads[i][1], False) for i in range(2)]
    if isinstance(m, _POOLS):
        k = _pair(m.kernel_size)
        s = _pair(m.stride if m.stride is not None else m.kernel_size)
        p = _pair(m.padding)
        d = _pair(getattr(m, "dilation", 1))
        return [(d[i] * (k[i] - 1) + 1, s[i], p[i], p[i], bool(m.ceil_mode)) for i in range(2)]
    if isinstance(m, _PADS):
        left, right, top, bottom = m.padding if len(m.padding) == 4 else (m.padding[0],) * 4
        return [(1, 1, int(top), int(bottom), False), (1, 1, int(left), int(right), False)]
    return None


def _out(size: int, g) -> int:
    ke, s, pb, pa, ceil = g
    span = size + pb + pa - ke
    if span < 0:
        return -1
    if not ceil:
        return span // s + 1
    n = -(-span // s) + 1
    if (n - 1) * s >= size + pb:  # the last window must start inside the input or the left padding
        n -= 1
    return n


def _step(state, g):
    """Compose one axis state ``(size, rf, jump, lo)`` with one module's geometry."""
    size, rf, jump, lo = state
    ke, s, pb, _, _ = g
    return _out(size, g), rf + (ke - 1) * jump, jump * s, lo - pb * jump


def arithmetic(probe, layer) -> ReceptiveField:
    """The receptive field of ``layer`` from the modules' geometry; ``ValueError`` when it is not clear."""
    l = probe.layer(layer)
    H, W = (int(v) for v in probe.transform.input_size)
    if not l.spatial or l.reshape is not None:
        raise ValueError(f"{l.name}'s output is not a plain convolutional map: its receptive field is measured instead.")
    try:
        states = [((H, 1, 1, 0), (W, 1, 1, 0))]  # the chain's states so far, per axis (size, rf, jump, lo)
        for m in probe.all_layers:
            if m.order > l.order or m.module is None:
                continue
            g = _geometry(m.module)
            leaf = not any(True for _ in m.module.children())
            if g is None:
                if leaf and len(m.shape) == 3 and tuple(m.shape[1:]) != (states[-1][0][0], states[-1][1][0]) and \
                        not any(tuple(m.shape[1:]) == (a[0], b[0]) for a, b in states):
                    raise _Unclear(m.name)  # an unknown module changed the map's size
                continue
            if m.calls != 1 or len(m.shape) != 3:
                raise _Unclear(m.name)
            want = tuple(m.shape[1:])
            cur = states[-1]
            nxt = tuple(_step(cur[i], g[i]) for i in range(2))
            if (nxt[0][0], nxt[1][0]) == want:
                states.append(nxt)
                continue
            # a side branch from an earlier state (a ResNet's shortcut) that joins the chain at its current size
            for earlier in reversed(states[:-1]):
                br = tuple(_step(earlier[i], g[i]) for i in range(2))
                if (br[0][0], br[1][0]) == want == (cur[0][0], cur[1][0]) and all(br[i][2] == cur[i][2] for i in range(2)):
                    if m.name == l.name:  # the layer is the branch itself: it sees what the branch sees
                        states.append(br)
                        break
                    merged = []
                    for i in range(2):
                        lo = min(cur[i][3], br[i][3])
                        hi = max(cur[i][3] + cur[i][1], br[i][3] + br[i][1])
                        merged.append((cur[i][0], hi - lo, cur[i][2], lo))
                    states.append(tuple(merged))
                    break
            else:
                raise _Unclear(m.name)
        last = states[-1]
        if (last[0][0], last[1][0]) != tuple(l.shape[1:]):
            raise _Unclear(l.name)
    except _Unclear as e:
        raise ValueError(f"The receptive field of {l.name} is not clear from the layers' geometry (at {e.args[0]}).") from None
    (_, ry, jy, oy), (_, rx, jx, ox) = last
    return ReceptiveField(l.name, (ry, rx), (jy, jx), (oy, ox), (H, W), "arithmetic")


# --- gradient --------------------------------------------------------------------------------------------------

def _noise(probe, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)  # never torch's global generator
    c = probe.transform.channels
    H, W = probe.transform.input_size
    return torch.rand(n, c, H, W, generator=g)


def gradient_map(probe, layer, y: int, x: int, images=None, *, n: int = 4, seed: int = 0) -> np.ndarray:
    """``|d unit / d input|`` summed over the layer's channels, the images and the colour channels: ``H x W``.
    ``images``: images in [0, 1] (any kind the Probe takes); default ``n`` noise images."""
    l = probe.layer(layer)
    if not l.spatial:
        raise ValueError(f"{l.name} has no spatial map (its output is {'×'.join(map(str, l.shape))}).")
    imgs = _noise(probe, n, seed) if images is None else images
    x0 = probe.prepare(imgs).detach().requires_grad_(True)
    maps = probe.capture(x0, [l.name], grad=True)[l.name]
    score = maps[:, :, int(y), int(x)].float().sum()
    g, = torch.autograd.grad(score, x0, allow_unused=True)
    if g is None:
        return np.zeros(tuple(x0.shape[-2:]))
    return g.detach().abs().sum((0, 1)).double().cpu().numpy()


def support(grad: np.ndarray, mass: float | None = None) -> tuple[int, int, int, int] | None:
    """``(top, left, bottom, right)`` of the nonzero entries of ``grad`` (``mass=None``), or of the box that keeps
    ``mass`` (0..1) of its sum, trimming equal shares from each side of each axis; None when all are zero."""
    g = np.asarray(grad, dtype=np.float64)
    if not np.any(g > 0):
        return None
    out = []
    for axis in (1, 0):
        prof = g.sum(axis)
        if mass is None:
            nz = np.flatnonzero(prof > 0)
            out.append((int(nz[0]), int(nz[-1]) + 1))
            continue
        c = np.cumsum(prof) / prof.sum()
        cut = (1.0 - float(mass)) / 2
        lo = int(np.searchsorted(c, cut, side="right"))
        hi = int(np.searchsorted(c, 1.0 - cut, side="left")) + 1
        out.append((lo, min(hi, len(prof))))
    (t, b), (le, r) = out
    return t, le, b, r


def measured(probe, layer, *, mass: float | None = None, images=None, n: int = 4, seed: int = 0) -> ReceptiveField:
    """The receptive field of ``layer`` measured by gradient at its centre unit and shifted by its stride."""
    l = probe.layer(layer)
    H, W = (int(v) for v in probe.transform.input_size)
    if not l.spatial:
        return ReceptiveField(l.name, (H, W), (H, W), (0, 0), (H, W), "whole image")
    if mass is not None and not 0 < float(mass) <= 1:
        raise ValueError(f"mass is the fraction of the gradient the box keeps, in (0, 1]; got {mass!r}.")
    h, w = int(l.shape[1]), int(l.shape[2])
    yc, xc = h // 2, w // 2
    box = support(gradient_map(probe, l.name, yc, xc, images, n=n, seed=seed), mass)
    jy, jx = max(1, round(H / h)), max(1, round(W / w))
    if box is None:  # nothing reaches the input (a dead unit): the pixels under the unit's position
        return ReceptiveField(l.name, (jy, jx), (jy, jx), (0, 0), (H, W), "gradient")
    t, le, b, r = box
    size, offset = [], []
    for lo, hi, n_in, j, c in ((t, b, H, jy, yc), (le, r, W, jx, xc)):
        if lo == 0 and hi == n_in:  # the centre unit sees the whole axis: so does every unit (a field this wide)
            size.append(3 * n_in)
            offset.append(-n_in - c * j)
        else:
            size.append(hi - lo)
            offset.append(lo - c * j)
    return ReceptiveField(l.name, tuple(size), (jy, jx), tuple(offset), (H, W), "gradient")


def receptive_field(probe, layer, method: str = "auto", *, mass: float | None = None) -> ReceptiveField:
    """The receptive field of ``layer``: by arithmetic where it is clear, else measured by gradient
    (``method="auto"``); ``"arithmetic"`` raises where it is not clear; ``"gradient"`` always measures."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")
    l = probe.layer(layer)
    if method != "gradient" and l.spatial:
        try:
            rf = arithmetic(probe, l)
            _check(probe, rf)
            return rf
        except ValueError:
            if method == "arithmetic":
                raise
    return measured(probe, l, mass=mass)


def _check(probe, rf: ReceptiveField) -> None:
    """One gradient at the centre unit must fall inside the arithmetic's box: geometry hidden in a ``forward`` (a
    functional pooling, an upsampling back to the same size) keeps the sizes but widens the field."""
    h, w = probe.layer(rf.layer).shape[1:]
    y, x = h // 2, w // 2
    seen = support(gradient_map(probe, rf.layer, y, x, n=2))
    t, le, b, r = rf.box(y, x)
    if seen is not None and not (t <= seen[0] and le <= seen[1] and seen[2] <= b and seen[3] <= r):
        raise ValueError(f"The receptive field of {rf.layer} is not clear from the layers' geometry: a gradient "
                         "reaches pixels outside it (geometry inside a module's forward).")


def patch(image: torch.Tensor, rf: ReceptiveField, y: int | None, x: int | None) -> torch.Tensor:
    """The crop of ``image`` (``C x H x W`` at the model's input size, e.g. from ``probe.display``) that the unit
    ``(y, x)`` sees."""
    t, le, b, r = rf.box(y, x)
    if tuple(image.shape[-2:]) != tuple(rf.input_size):
        raise ValueError(f"The image is {image.shape[-2]}×{image.shape[-1]}; the receptive field is in the model's "
                         f"input pixels ({rf.input_size[0]}×{rf.input_size[1]}): use probe.display(image).")
    return image[..., t:b, le:r]


def centre(rf: ReceptiveField, y: int | None, x: int | None) -> tuple[float, float]:
    """The input pixel at the centre of unit ``(y, x)``'s field (unclipped), to mark the peak."""
    if y is None or x is None or rf.method == "whole image":
        return rf.input_size[0] / 2, rf.input_size[1] / 2
    return (int(y) * rf.stride[0] + rf.offset[0] + rf.size[0] / 2, int(x) * rf.stride[1] + rf.offset[1] + rf.size[1] / 2)


__all__ = ["ReceptiveField", "receptive_field", "arithmetic", "measured", "gradient_map", "support", "patch", "centre"]
