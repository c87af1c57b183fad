"""The dream loop: gradient ascent on an image, as a generator of :class:`DreamStep`.

>>> from cnnwidgets.analyses import dream as D
>>> for s in D.dream(probe, D.channel("_blocks.8._project_conv", 5), steps=128):
...     print(s.step, s.loss)                 # s.image: N x C x H x W in [0, 1] on the CPU
>>> last = D.run(probe, D.channels(layer, range(16)), steps=256)   # an atlas, one batch

Two presets: ``"naive"`` is seed 001 / the homework (plain pixels from uniform noise, Adam lr 0.1,
weight decay 1e-6, no transforms, each image min-max rescaled to [0, 1] every step);
``"regularized"`` is Lucent's recipe (FFT parameterisation, decorrelated colour, sigmoid, pad /
jitter / scale / rotate each step, Adam lr 0.05). Every forward goes through
``probe.capture(..., grad=True)``: it stops at the deepest layer the objective reads and leaves
the model as it was, whatever happens (error, interrupt, generator closed early).
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from ...runner import Step
from . import param as P
from . import adam
from . import transforms as TR
from .objectives import LOGITS, Objective, as_objective


@dataclass
class Preset:
    """Settings of a dream recipe; any of them can be overridden in :func:`dream`."""

    param: str  #: "pixels" or "fft"
    lr: float
    decorrelate: bool = False
    weight_decay: float = 0.0
    transforms: str | None = None  #: None or "standard"
    rescale: str = "minmax"  #: for pixels: "minmax" (seed 001), "sigmoid", "clamp", "none" (the homework's filter explanation)
    init: str = "uniform"  #: "uniform" noise in [0, 1] (seed 001) or "randn" (small Gaussian, Lucent)
    steps: int = 256


CPU_CHUNK = 2  #: images per forward slice on a CPU (see :func:`dream`'s ``chunk``)

PRESETS = {
    "naive": Preset(param="pixels", lr=0.1, weight_decay=1e-6, transforms=None, rescale="minmax", init="uniform", steps=256),
    "regularized": Preset(param="fft", lr=0.05, decorrelate=True, transforms="standard", init="randn", steps=256),
}


@dataclass
class DreamStep(Step):
    """One step of a dream: ``image`` (the batch after this step's update, ``N x C x H x W`` in [0, 1], CPU)
    and the objective values this step ascended (``objectives``, one per image, measured before the
    update; ``objective`` their sum; ``loss = -objective``, as seed 001 prints it).
    ``message`` says why a run ended early (a NaN), with ``image`` then the last good frame.

    The dream computes ``image`` only when it is read (``value`` is the same image): a run whose
    consumer shows ~15 frames a second does not pay for the frames it drops."""

    image: torch.Tensor | None = None
    objective: float = math.nan
    objectives: list = field(default_factory=list)
    message: str | None = None

    @classmethod
    def lazy(cls, step, total, image_fn, **kw) -> "DreamStep":
        """A step whose image is ``image_fn()`` (moved to the CPU), computed on first read."""
        s = cls(step, total, None, None, **kw)
        s.__dict__["_image_fn"] = image_fn
        return s

    def _provide(self, image: torch.Tensor) -> None:
        """Hand the step its image if it was not read yet (the next forward computed it anyway)."""
        if self.__dict__.get("_image_fn") is not None:
            self.__dict__["_image"] = image
            self.__dict__["_image_fn"] = None

    @property
    def loss(self) -> float:
        return -self.objective

    def rgb(self, index: int = 0) -> np.ndarray:
        """Image ``index`` as ``H x W x 3`` uint8."""
        t = self.image[index].clamp(0, 1)
        if t.shape[0] == 1:
            t = t.expand(3, -1, -1)
        return (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def _get_image(self):
    d = self.__dict__
    fn = d.get("_image_fn")
    if fn is not None:
        d["_image"] = fn()
        d["_image_fn"] = None
    img = d.get("_image")
    if img is not None and img.device.type != "cpu":
        img = d["_image"] = img.to("cpu")
    return img


def _set_image(self, value):
    self.__dict__["_image"] = value
    self.__dict__["_image_fn"] = None


def _get_value(self):
    v = self.__dict__.get("_value")
    return self.image if v is None else v


def _set_value(self, value):
    self.__dict__["_value"] = value


DreamStep.image = property(_get_image, _set_image, doc="The images after this step, N x C x H x W in [0, 1] (CPU).")
DreamStep.value = property(_get_value, _set_value, doc="What the step carries: its image unless set otherwise.")


def layer_keys(probe, objective: Objective) -> dict:
    """Objective layer key -> Probe layer name (the model's output for :data:`LOGITS`)."""
    out = {}
    for k in objective.layers:
        if k == LOGITS:
            last = [l for l in probe.all_layers if l.shape == probe.output_shape]
            if not last or probe.num_classes is None:
                raise ValueError(f"{probe.name} has no class scores to maximise (output shape {probe.output_shape}).")
            out[k] = last[-1].name
        else:
            out[k] = probe.layer(k).name
    return out


def _runs(probe, names: list[str], h: int, w: int, channels: int) -> bool:
    """Whether one truncated forward (no grad) of an ``h x w`` image up to ``names`` succeeds."""
    try:
        probe.capture(torch.zeros(1, channels, h, w, device=probe.device), names, grad=False)
        return True
    except RuntimeError:
        return False


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def size_problem(probe, names: list[str], h: int, w: int, channels: int, cause: BaseException) -> str:
    """Why an ``h x w`` forward failed, in words, with the size to use instead: a model that takes one size only
    (vision transformers), one that needs multiples of some number (U-Net, DLA, HRNet style), or too small."""
    H, W = probe.transform.input_size
    deepest = max(names, key=lambda n: probe.layer(n).order)
    why = f"({type(cause).__name__}: {str(cause).splitlines()[0][:160]})"
    runs = lambda a, b: _runs(probe, names, a, b, channels)  # noqa: E731
    if (h, w) != (H, W) and runs(H, W):
        if not runs(H + 32, W + 32) and not runs(max(8, H - 32), max(8, W - 32)):
            return (f"{probe.name} takes only {H}x{W} images (its input size is fixed, as a vision transformer's patch "
                    f"grid is), not {h}x{w}. Use size={H}.")
        odd = (max(h, H) + 1) | 1, (max(w, W) + 1) | 1
        if not runs(*odd):  # larger sizes fail too: some multiple is needed
            m = next((m for m in (2, 4, 8, 16, 32, 64) if runs(_round_up(h, m), _round_up(w, m))
                      and runs(_round_up(h, m) + m, _round_up(w, m) + m)), None)
            if m is not None:
                return (f"{probe.name} needs image sizes that are multiples of {m}; {h}x{w} is not. Use size="
                        f"{_round_up(h, m)} (or another multiple of {m}).")
        elif h < H or w < W:
            return (f"A {h}x{w} image is too small for {probe.name} up to layer {deepest!r} {why}. Use a larger size, "
                    f"e.g. the model's input size {H}.")
    return f"{probe.name} fails on a {h}x{w} image up to layer {deepest!r} {why}."


def check(probe, objective: Objective, size: tuple[int, int], channels: int) -> dict:
    """Validate ``objective`` and the image size on ``probe`` with one truncated forward (no grad).

    Returns ``{key: output shape}`` at this size; raises ValueError with a fix when something is off.
    """
    names = layer_keys(probe, objective)
    h, w = size
    x = torch.zeros(1, channels, h, w, device=probe.device)
    capture = sorted(set(names.values()))
    try:
        got = probe.capture(x, capture, grad=False)
    except RuntimeError as e:
        raise ValueError(size_problem(probe, capture, h, w, channels, e.__cause__ or e)) from None
    shapes = {k: tuple(got[n].shape[1:]) for k, n in names.items()}
    for k, s in shapes.items():
        if len(s) == 3 and (s[1] < 1 or s[2] < 1):
            raise ValueError(f"A {h}x{w} image gives an empty map at layer {names[k]!r}: use a larger size.")
    objective.check(probe, shapes)
    return shapes


def size_multiple(probe, names: list[str], sizes: Sequence[tuple[int, int]], channels: int) -> int | None:
    """The smallest of 2, 4, ..., 64 such that every size in ``sizes`` rounded up to a multiple of it runs
    (for models that accept only such sizes); None when none does."""
    for m in (2, 4, 8, 16, 32, 64):
        rounded = sorted({(_round_up(h, m), _round_up(w, m)) for h, w in sizes})
        if all(_runs(probe, names, h, w, channels) for h, w in rounded):
            return m
    return None


def takes_only(probe, names: list[str], h: int, w: int, channels: int) -> bool:
    """Whether the model runs at ``h x w`` but at no other size near it (a fixed patch grid)."""
    return _runs(probe, names, h, w, channels) and not _runs(probe, names, h + 32, w + 32, channels) and \
        not _runs(probe, names, max(8, h - 32), max(8, w - 32), channels)


_SHAPES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # probe -> {(layers, h, w, channels): shapes}


def checked(probe, objective: Objective, size: tuple[int, int], channels: int) -> dict:
    """:func:`check`, remembering the layer shapes per probe and size: a re-run (Start again, the
    next image of a gallery) validates its objective without another forward."""
    names = layer_keys(probe, objective)
    key = (tuple(sorted(names.items())), int(size[0]), int(size[1]), channels)
    memo = _SHAPES.setdefault(probe, {})
    shapes = memo.get(key)
    if shapes is None:
        shapes = memo[key] = check(probe, objective, size, channels)
    else:
        objective.check(probe, shapes)
    return shapes


def make_param(probe, preset: Preset, shape, generator, init=None, sd=None) -> P.ImageParam:
    dev = probe.device
    if preset.param == "pixels":
        if init is not None or preset.init == "uniform":
            return P.pixels(shape, init=init, generator=generator, device=dev, rescale=preset.rescale)
        return P.pixels(shape, sd=sd or 0.01, generator=generator, device=dev, rescale=preset.rescale)
    if preset.param == "fft":
        if init is not None:
            raise ValueError("init images work with the pixel parameterisation (param='pixels'), not 'fft'.")
        return P.image(shape[2], shape[3], batch=shape[0], channels=shape[1], fft_param=True, decorrelated=preset.decorrelate,
                       sd=sd or 0.01, generator=generator, device=dev)
    raise ValueError(f"param must be 'pixels' or 'fft', got {preset.param!r}.")


def resolve_preset(preset: str | Preset, **overrides) -> Preset:
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"Unknown preset {preset!r}: use one of {sorted(PRESETS)}.")
        preset = PRESETS[preset]
    kw = {k: v for k, v in overrides.items() if v is not None}
    return Preset(**{**preset.__dict__, **kw})


def dream(probe, objective, *, steps: int | None = None, preset: str | Preset = "regularized", size: int | Sequence[int] | None = None,
          batch: int | None = None, lr: float | None = None, seed: int = 0, init: torch.Tensor | None = None,
          transforms: Sequence | str | None = None, weight_decay: float | None = None, param: str | None = None,
          decorrelate: bool | None = None, chunk: int | None = None, channels_last: bool | None = None,
          fold_bn: bool = True) -> Iterator[DreamStep]:
    """Maximise ``objective`` on ``probe``'s model; yields a :class:`DreamStep` per step.

    ``size``: image size (default: the model's input size); ``batch``: images (default: what the
    objective needs, e.g. 16 for ``channels(layer, range(16))``, else 1); ``init``: start images
    ``N x C x H x W`` in [0, 1] (pixels only); ``transforms``: ``"standard"``, ``()`` or a list of
    :mod:`.transforms` functions. Deterministic for a ``seed`` (on a given device).
    ``chunk``: run the forward/backward in slices of this many images (same result; on a CPU,
    slices of a few images keep each layer in cache; default 2 on a CPU (measured best of 1-8 with 2 threads), the whole batch elsewhere);
    ``channels_last``: feed the model NHWC tensors (default: on a CPU, where oneDNN's convolutions
    and their backward run 1.2-1.6x faster that way; the values are the same up to rounding).
    ``fold_bn``: run the steps on :meth:`Probe.folded` (BatchNorms folded into their convolutions in a
    private copy of the model: eval-mode outputs equal up to rounding, ~1.4x faster steps).
    """
    objective = as_objective(objective)
    pr = resolve_preset(preset, lr=lr, weight_decay=weight_decay, param=param, decorrelate=decorrelate,
                        transforms=transforms if isinstance(transforms, str) else None)
    steps = pr.steps if steps is None else int(steps)
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}.")
    if not (isinstance(pr.lr, (int, float)) and pr.lr > 0) or math.isnan(pr.lr):
        raise ValueError(f"The learning rate must be a positive number, got {pr.lr!r} (try 0.05).")
    if size is None:
        size = probe.transform.input_size
    h, w = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
    if h < 1 or w < 1:
        raise ValueError(f"The image size must be positive, got {h}x{w}.")
    channels = probe.transform.channels
    if init is not None:
        init = torch.as_tensor(init, dtype=torch.float32)
        init = init[None] if init.ndim == 3 else init
        if init.ndim != 4 or init.shape[1] != channels:
            raise ValueError(f"init must be N x {channels} x H x W in [0, 1], got shape {tuple(init.shape)}.")
        h, w = init.shape[2], init.shape[3]
        batch = batch or init.shape[0]
    n = batch or objective.batch or 1
    if objective.batch is not None and n != objective.batch:
        raise ValueError(f"The objective is for {objective.batch} images but batch={n}.")
    if init is not None and init.shape[0] != n:
        raise ValueError(f"init has {init.shape[0]} images but the batch has {n}.")

    if transforms is None or isinstance(transforms, str):
        name = transforms if isinstance(transforms, str) else pr.transforms
        if name not in (None, "standard", "none"):
            raise ValueError(f"transforms must be 'standard', 'none', or a list of functions, got {name!r}.")
        tlist = TR.standard(size=min(h, w)) if name == "standard" else []
    else:
        tlist = list(transforms)

    checked(probe, objective, (h, w), channels)  # clear errors before the first step
    names = layer_keys(probe, objective)
    capture_names = sorted(set(names.values()))
    if chunk is None:
        chunk = CPU_CHUNK if probe.device.type == "cpu" else n
    if int(chunk) < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}.")
    if channels_last is None:
        channels_last = prefers_channels_last(probe)
    prepare = model_input(probe, tlist, bool(channels_last))
    return _loop(probe, objective, pr, steps, n, channels, h, w, seed, init, prepare, names, capture_names,
                 int(chunk), bool(channels_last), bool(fold_bn), tlist)


def model_input(probe, transforms: list, channels_last: bool = False):
    """``f(images, generator) -> model input``: the transforms, then the model's normalisation (one
    multiply-add). When the last transform is a :class:`.transforms.OnePass` the normalisation and the
    NHWC layout (``channels_last``) happen inside its resampling pass."""
    mean = torch.tensor(probe.transform.mean, device=probe.device, dtype=torch.float32).reshape(1, -1, 1, 1)
    std = torch.tensor(probe.transform.std, device=probe.device, dtype=torch.float32).reshape(1, -1, 1, 1)
    scale, shift = 1 / std, -mean / std
    if transforms and isinstance(transforms[-1], TR.OnePass):
        return TR.compose(list(transforms[:-1]) + [transforms[-1].normalising(scale, shift, channels_last)])
    transform = TR.compose(transforms)
    return lambda images, generator: torch.addcmul(shift, transform(images, generator), scale)


def prefers_channels_last(probe) -> bool:
    """Whether a dream feeds ``probe`` NHWC images by default: on a CPU (oneDNN), yes."""
    return probe.device.type == "cpu"


def forward_chunks(probe, x, names: list[str], chunk: int, channels_last: bool = False) -> dict:
    """``probe.capture(x, names, grad=True)`` in slices of ``chunk`` images, outputs joined along the batch."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if x.shape[0] <= chunk:
        return probe.capture(x, names, grad=True)
    parts = [probe.capture(x[i : i + chunk], names, grad=True) for i in range(0, x.shape[0], chunk)]
    return {nm: torch.cat([p[nm] for p in parts]) for nm in names}


def _loop(probe, objective, pr, steps, n, channels, h, w, seed, init, prepare, names, capture_names, chunk, channels_last,
          fold_bn, tlist):
    generator = torch.Generator().manual_seed(int(seed))
    prm = make_param(probe, pr, (n, channels, h, w), generator, init)
    opt = adam.make(prm.params, lr=pr.lr, weight_decay=pr.weight_decay)
    last_good = DreamStep.lazy(0, steps, prm.snapshot())
    model = probe.folded(capture_names) if fold_bn else probe  # built when the run starts, not at dream()
    # every forward runs on the Probe's private view (eval, frozen): the user's model is never switched or frozen
    rounded = False
    for i in range(1, steps + 1):
        opt.zero_grad(set_to_none=True)
        img = prm()
        last_good._provide(img.detach())  # the previous step's image: no second evaluation for it
        x = prepare(img, generator)
        try:
            got = forward_chunks(model, x, capture_names, chunk, channels_last)
        except RuntimeError as e:
            if rounded or not tlist or tuple(x.shape[-2:]) == (h, w):
                raise ValueError(size_problem(probe, capture_names, *x.shape[-2:], channels, e.__cause__ or e)) from None
            # the transforms made a size this model refuses: round their sizes up to the multiple it needs (32 for
            # some), or, for a model that takes one size only (a patch grid), resample each step to that size
            if takes_only(probe, capture_names, h, w, channels):
                fitted = TR.to_size(tlist, h, w)
            else:
                m = size_multiple(probe, capture_names, TR.output_sizes(tlist, h, w), channels)
                fitted = TR.to_multiple(tlist, m) if m is not None else None
            if fitted is None:
                raise ValueError(size_problem(probe, capture_names, *x.shape[-2:], channels, e.__cause__ or e)
                                 + " The robustness transforms change the size each step; try transforms='none'.") from None
            rounded = True
            prepare = model_input(probe, fitted, channels_last)
            x = prepare(img, generator)
            got = forward_chunks(model, x, capture_names, chunk, channels_last)
        values = objective({k: got[nm] for k, nm in names.items()})
        if values.ndim == 0:
            values = values.expand(n)
        vals = values.detach().to("cpu").tolist()
        finite_objective = all(math.isfinite(v) for v in vals)
        ok = finite_objective
        if ok:
            (-values.sum()).backward()
            opt.step()
            ok = prm.finite
        if not ok:
            msg = (f"Stopped at step {i}: the {'image' if finite_objective else 'objective'} became "
                   f"NaN/inf (learning rate {pr.lr:g} too large?). Showing the last good frame (step {last_good.step}).")
            yield DreamStep(last_good.step, steps, None, {"stopped": "nan"}, image=last_good.image,
                            objective=last_good.objective, objectives=last_good.objectives, message=msg)
            return
        step = DreamStep.lazy(i, steps, prm.snapshot(), objective=float(sum(vals)), objectives=vals)
        last_good = step
        yield step


def run(probe, objective, **kwargs) -> DreamStep:
    """Run :func:`dream` to the end; the last :class:`DreamStep`."""
    last = None
    for last in dream(probe, objective, **kwargs):
        pass
    return last


def evaluate(probe, objective, images: torch.Tensor) -> torch.Tensor:
    """Objective values (one per image) of ``images`` (``N x C x H x W`` in [0, 1]), no transforms, no grad."""
    objective = as_objective(objective)
    names = layer_keys(probe, objective)
    x = probe.transform.normalize(images.to(probe.device, torch.float32))
    got = probe.capture(x, sorted(set(names.values())))
    with torch.no_grad():
        v = objective({k: got[nm] for k, nm in names.items()})
    return v.detach().to("cpu").expand(images.shape[0]) if v.ndim == 0 else v.detach().to("cpu")
