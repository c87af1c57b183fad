"""Attribution maps: which pixels made the model say "tiger cat"? One verb for every method.

>>> a = attribute(probe, sample_image("chelsea"), "integrated_gradients", baseline="blurred")
>>> a.map.shape, a.target, a.delta          # (224, 224), 282, convergence delta

Methods (all computed by Captum; cnnwidgets adds defaults, batching, model safety and display):
``saliency`` (the NTU homework's map: |d score / d pixel|, max over colour channels), ``smoothgrad``,
``integrated_gradients``, ``gradcam``, ``guided_gradcam``, ``occlusion``, ``lime``.

Attributions are taken with respect to the image *in pixels* (the [0, 1] image as the model sees it,
resized and cropped); the model's normalisation runs inside the attributed function, so an IG baseline
"black" is a black image and SmoothGrad noise is a fraction of the pixel range.

Every call runs on the Probe's private view of the model (``probe.pixel_model()``: eval mode, frozen
parameters, so gradients flow to the input only; the user's module is never hooked, switched or frozen) and
removes any hook Captum leaves on that view, even after an exception.
Display maths (percentile clip, abs/signed scaling, overlay) is in :mod:`.attribution_display`;
the randomisation sanity check in :mod:`.sanity`.
"""
from __future__ import annotations

import contextlib
import difflib
import time
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .. import hooks
from ..runner import Step
from .attribution_display import channel_reduce, clip_percentile, normalize_map, overlay, to_rgb  # noqa: F401

METHODS = ("saliency", "smoothgrad", "integrated_gradients", "gradcam", "guided_gradcam", "occlusion", "lime")
LABELS = {
    "saliency": "Vanilla gradient (saliency)",
    "smoothgrad": "SmoothGrad",
    "integrated_gradients": "Integrated Gradients",
    "gradcam": "Grad-CAM",
    "guided_gradcam": "Guided Grad-CAM",
    "occlusion": "Occlusion",
    "lime": "LIME (superpixels)",
}
BASELINES = ("black", "blurred", "uniform", "mean")
#: Methods whose natural map is |gradient| max over channels (the homework's definition).
GRADIENT_METHODS = ("saliency", "smoothgrad")
#: Default options per method (any may be overridden as a keyword of :func:`attribute`).
DEFAULTS = {
    "saliency": {},
    "smoothgrad": {"samples": 50, "noise": 0.15, "batch_size": 25, "seed": 0},
    "integrated_gradients": {"steps": 50, "baseline": "black", "batch_size": 25, "seed": 0},
    "gradcam": {"layer": None},
    "guided_gradcam": {"layer": None},
    "occlusion": {"window": 32, "stride": 16, "baseline": "mean", "batch_size": 32},
    "lime": {"samples": 200, "segments": 50, "segmentation": "slic", "baseline": "mean", "batch_size": 32,
             "seed": 0},
}


@dataclass
class Attribution:
    """One attribution map and how it was made."""

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

    @property
    def signed(self) -> bool:
        """Whether :attr:`map` can be negative (display it with a diverging colormap)."""
        return self.method not in GRADIENT_METHODS + ("gradcam",)

    @property
    def label(self) -> str:
        return LABELS.get(self.method, self.method)

    def as_map(self, sign: str = "auto") -> np.ndarray:
        """The HxW map as ``"abs"`` (magnitude), ``"signed"`` or ``"auto"`` (the method's own :attr:`map`)."""
        if sign == "auto":
            return self.map
        return channel_reduce(self.raw, sign, gradient=self.method in GRADIENT_METHODS)


# --- the model in pixel space ------------------------------------------------------------------
@contextlib.contextmanager
def guarded(fn) -> Iterator[None]:
    """The frame of every Captum call on a pixel model (``probe.pixel_model()``, a private view of the model:
    eval mode, frozen parameters): grad enabled, and no hook Captum adds is left behind, even after an error."""
    with hooks.no_new_hooks(fn), torch.enable_grad():
        yield


# --- checks ------------------------------------------------------------------------------------
def check_classifier(probe) -> int:
    """The number of classes, or a ValueError saying why these maps need class scores."""
    shape = getattr(probe, "output_shape", None)
    if shape is None or len(shape) != 1:
        got = "no tensor" if shape is None else "×".join(map(str, shape))
        raise ValueError(
            f"Attribution explains one class score, but {probe.name} outputs {got} per image, not a vector of class "
            "scores (no final linear layer). Wrap the model so it returns N x classes (e.g. add pooling and a "
            "Linear head, or take the score you care about) and build a Probe on that."
        )
    return shape[0]


def check_target(probe, target: int) -> int:
    n = check_classifier(probe)
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise TypeError(f"target is a class index (int), got {type(target).__name__}; find one with find_classes(probe, 'cat').")
    if not 0 <= int(target) < n:
        raise ValueError(f"target class {target} is out of range: {probe.name} has {n} classes (0..{n - 1}).")
    return int(target)


def spatial_layers(probe) -> list:
    """Layers Grad-CAM can use: modules with a CxHxW output (H*W > 1), called once per forward."""
    return [l for l in probe.all_layers if l.spatial and l.shape[1] * l.shape[2] > 1 and l.calls == 1]


def default_cam_layer(probe):
    """The output of the last conv block: the last spatial module (called once) whose output has the
    shape of the last conv layer's (after its norm/activation/residual, e.g. ``layer4`` in a ResNet)."""
    if not probe.layers:
        raise ValueError(f"{probe.name} has no conv layer with spatial output; Grad-CAM needs one.")
    last = probe.layers[-1]
    same = [l for l in spatial_layers(probe) if l.order >= last.order and l.shape == last.shape]
    return same[-1] if same else last


def cam_layer(probe, layer=None):
    if layer is None or layer == "":
        return default_cam_layer(probe)
    l = probe.layer(layer)
    if not l.spatial or l.shape[1] * l.shape[2] <= 1:
        raise ValueError(
            f"Grad-CAM needs a layer with spatial maps (C×H×W); {l.name!r} outputs {'×'.join(map(str, l.shape))}. "
            f"Pick one of probe.layers, e.g. {default_cam_layer(probe).name!r} (the default)."
        )
    if l.calls != 1:
        raise ValueError(f"{l.name!r} is called {l.calls} times per forward (a shared module); Grad-CAM needs a layer "
                         "called once. Pick the conv or block around it.")
    return l


def pixels(probe, image, resize: bool = True) -> torch.Tensor:
    """1xCxHxW in [0, 1] on the device: the image as the model sees it.

    ``resize=False`` takes a CxHxW / 1xCxHxW tensor in [0, 1] as it is; its size must then be the
    model's input size (``probe.transform.input_size``).
    """
    if resize:
        x = probe.display(image)
    else:
        if not isinstance(image, torch.Tensor) or image.ndim not in (3, 4):
            raise ValueError("resize=False takes a tensor CxHxW or 1xCxHxW with values in [0, 1].")
        x = image if image.ndim == 4 else image[None]
    if x.shape[0] != 1:
        raise ValueError(f"Explain one image at a time; got a batch of {x.shape[0]}.")
    want = tuple(probe.transform.input_size)
    if tuple(x.shape[-2:]) != want:
        raise ValueError(
            f"The image is {x.shape[-2]}×{x.shape[-1]} but {probe.name} takes {want[0]}×{want[1]} inputs. Pass the image "
            "with resize=True (the probe's resize/crop), resize it yourself, or build Probe(model, input_size=...)."
        )
    return x.to(probe.device, torch.float32)


# --- predictions and class names -----------------------------------------------------------------
def top_classes(probe, image, k: int = 5, resize: bool = True) -> list[tuple[int, str, float]]:
    """The model's top-``k`` predictions ``[(index, name, probability)]`` for one image."""
    check_classifier(probe)
    x = pixels(probe, image, resize)
    with torch.no_grad():
        p = probe.pixel_model()(x).float().softmax(-1)[0].cpu()
    v, i = p.topk(min(k, p.numel()))
    return [(int(c), probe.class_name(int(c)), float(s)) for s, c in zip(v, i)]


def find_classes(probe, query: str, k: int = 10) -> list[tuple[int, str]]:
    """Classes whose name contains ``query`` (case-insensitive), then close spellings; ``[(index, name)]``.
    A number finds that index."""
    n = check_classifier(probe)
    names = [probe.class_name(i) for i in range(n)]
    q = str(query).strip().lower()
    if not q:
        return []
    if q.isdigit():
        i = int(q)
        return [(i, names[i])] if i < n else []
    import re

    word = re.compile(r"\b" + re.escape(q) + r"\b")
    hits = [i for i, s in enumerate(names) if q in s.lower()]
    hits.sort(key=lambda i: (not word.search(names[i].lower()), not names[i].lower().startswith(q), len(names[i])))
    if len(hits) < k:
        close = difflib.get_close_matches(q, [s.lower() for s in names], n=k, cutoff=0.6)
        lower = [s.lower() for s in names]
        for c in close:
            i = lower.index(c)
            if i not in hits:
                hits.append(i)
    return [(i, names[i]) for i in hits[:k]]


# --- baselines ---------------------------------------------------------------------------------
def make_baseline(probe, x: torch.Tensor, kind: str = "black", seed: int = 0) -> torch.Tensor:
    """A reference image like ``x`` (pixels): ``black``, ``blurred`` (Gaussian, sigma = 5% of the size),
    ``uniform`` (noise in [0, 1], seeded), ``mean`` (the dataset mean colour, i.e. zero after normalising)."""
    if kind == "black":
        return torch.zeros_like(x)
    if kind == "mean":
        mean = torch.tensor(probe.transform.mean, dtype=x.dtype, device=x.device)[None, :, None, None]
        return mean.expand_as(x).clone()
    if kind == "uniform":
        g = torch.Generator().manual_seed(seed)
        return torch.rand(x.shape, generator=g).to(x.device, x.dtype)
    if kind == "blurred":
        import torchvision.transforms.functional as TF

        sigma = max(1.0, 0.05 * max(x.shape[-2:]))
        k = int(2 * round(3 * sigma) + 1)
        return TF.gaussian_blur(x, [k, k], [sigma, sigma])
    raise ValueError(f"Unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}.")


# --- the verb ----------------------------------------------------------------------------------
def attribute(probe, image, method: str = "saliency", target: int | None = None, *, resize: bool = True,
              **opts) -> Attribution:
    """Explain the model's score for class ``target`` (default: its top-1) on one image.

    ``opts`` override :data:`DEFAULTS` for the method: ``samples``/``noise`` (SmoothGrad, LIME),
    ``steps``/``baseline`` (IG), ``layer`` (Grad-CAM), ``window``/``stride`` (occlusion),
    ``segments``/``segmentation`` (LIME), ``batch_size`` (forwards per batch), ``seed``.
    """
    for item in attribute_steps(probe, image, method, target, resize=resize, **opts):
        pass
    return item.value


def attribute_steps(probe, image, method: str = "saliency", target: int | None = None, *, resize: bool = True,
                    **opts) -> Iterator[Step]:
    """:func:`attribute` as a job: yields ``Step``s (SmoothGrad one per batch of samples); the last
    Step's value is the :class:`Attribution`."""
    if method not in METHODS:
        close = difflib.get_close_matches(str(method), METHODS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown method {method!r}.{hint} Methods: {', '.join(METHODS)}.")
    unknown = set(opts) - set(DEFAULTS[method])
    if unknown:
        raise TypeError(f"{method} takes options {sorted(DEFAULTS[method]) or 'none'}, not {sorted(unknown)}.")
    o = {**DEFAULTS[method], **opts}
    check_classifier(probe)
    if target is not None:
        check_target(probe, target)  # before any forward: a bad target fails fast
    x = pixels(probe, image, resize)
    fn = probe.pixel_model()
    t0 = time.perf_counter()
    with torch.no_grad():
        logits = fn(x).float()
    if target is None:
        target = int(logits[0].argmax())
    target = check_target(probe, target)
    prob = float(logits.softmax(-1)[0, target])
    extra: dict = {}
    raw = None
    if method == "smoothgrad":
        for done, total, partial in smoothgrad(probe, x, target, **o):
            if done < total:
                yield Step(done, total, None, {"status": f"SmoothGrad: {done}/{total} samples"})
            raw = partial
    else:
        yield Step(0, 1, None, {"status": f"{LABELS[method]}: computing…"})
        with guarded(fn):
            raw, extra = _COMPUTE[method](probe, fn, x, target, o)
    raw = raw.detach().float()[0].cpu().numpy()
    m = channel_reduce(raw, "abs" if method in GRADIENT_METHODS else "signed", gradient=method in GRADIENT_METHODS)
    a = Attribution(map=m, raw=raw, target=target, method=method, image=x[0].cpu().numpy(),
                    target_name=probe.class_name(target), score=float(logits[0, target]), prob=prob,
                    options=o, seconds=time.perf_counter() - t0, model=probe.name, **extra)
    yield Step(1, 1, a, {"status": "done"})


# --- methods (each: probe, pixel model, x, target, options -> (1xCxHxW tensor, extras)) ----------
def _saliency(probe, fn, x, target, o):
    from captum.attr import Saliency

    return Saliency(fn).attribute(x.clone().requires_grad_(), target=target, abs=False), {}


def smoothgrad_noise(x: torch.Tensor, samples: int, noise: float, seed: int) -> torch.Tensor:
    """The ``samples`` noisy copies of ``x`` (samples x C x H x W), Gaussian with std ``noise`` x the
    pixel range, from a seeded generator (reproducible, and the same for batched and looped runs)."""
    g = torch.Generator().manual_seed(int(seed))
    eps = torch.randn((samples, *x.shape[1:]), generator=g) * float(noise)
    return x + eps.to(x.device, x.dtype)


def smoothgrad(probe, x, target, samples=50, noise=0.15, batch_size=25, seed=0):
    """SmoothGrad (Smilkov et al. 2017): the mean gradient over ``samples`` noisy copies, ``batch_size``
    copies per backward pass. Yields ``(done, samples, running mean 1xCxHxW)``."""
    from captum.attr import Saliency

    if samples < 1 or batch_size < 1:
        raise ValueError("SmoothGrad needs samples >= 1 and batch_size >= 1.")
    fn = probe.pixel_model()
    noisy = smoothgrad_noise(x, samples, noise, seed).requires_grad_()
    total = torch.zeros_like(x)
    done = 0
    for i in range(0, samples, batch_size):
        chunk = noisy[i:i + batch_size].detach().requires_grad_()
        with guarded(fn):
            g = Saliency(fn).attribute(chunk, target=target, abs=False)
        total += g.sum(0, keepdim=True)
        done += chunk.shape[0]
        yield done, samples, total / done


def _integrated_gradients(probe, fn, x, target, o):
    from captum.attr import IntegratedGradients

    base = make_baseline(probe, x, o["baseline"], o.get("seed", 0))
    attr, delta = IntegratedGradients(fn).attribute(
        x, baselines=base, target=target, n_steps=int(o["steps"]), internal_batch_size=int(o["batch_size"]),
        return_convergence_delta=True)
    return attr, {"delta": float(delta.abs().max())}


def _gradcam(probe, fn, x, target, o):
    from captum.attr import LayerAttribution, LayerGradCam

    l = cam_layer(probe, o.get("layer"))
    cam = LayerGradCam(fn, fn.layer(l.name)).attribute(x, target=target, relu_attributions=True)
    coarse = cam.detach()[0, 0].float().cpu().numpy()
    up = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return up, {"layer": l.name, "coarse": coarse}


def _guided_gradcam(probe, fn, x, target, o):
    import warnings

    from captum.attr import GuidedGradCam

    l = cam_layer(probe, o.get("layer"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        attr = GuidedGradCam(fn, fn.layer(l.name)).attribute(x, target=target, interpolate_mode="bilinear")
    return attr, {"layer": l.name}


def _occlusion(probe, fn, x, target, o):
    from captum.attr import Occlusion

    w, s = int(o["window"]), int(o["stride"])
    c = x.shape[1]
    base = make_baseline(probe, x, o["baseline"])
    attr = Occlusion(fn).attribute(x, sliding_window_shapes=(c, w, w), strides=(c, s, s), baselines=base,
                                   target=target, perturbations_per_eval=int(o["batch_size"]))
    return attr, {}


def superpixels(image_chw: np.ndarray, segments: int = 50, method: str = "slic") -> np.ndarray:
    """HxW integer labels 0..K-1 of superpixels (scikit-image SLIC or quickshift)."""
    from skimage.segmentation import quickshift, slic

    img = np.ascontiguousarray(np.transpose(image_chw, (1, 2, 0)).astype(np.float64))
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if method == "slic":
        lab = slic(img, n_segments=int(segments), compactness=10, start_label=0)
    elif method == "quickshift":
        lab = quickshift(img, kernel_size=4, max_dist=200 / max(1, int(segments)) * 5, ratio=0.5)
    else:
        raise ValueError(f"segmentation is 'slic' or 'quickshift', not {method!r}.")
    _, lab = np.unique(lab, return_inverse=True)
    return lab.reshape(img.shape[:2])


def lime_samples(x: torch.Tensor, seg: np.ndarray, baseline: torch.Tensor, n: int, generator: torch.Generator):
    """``n`` LIME perturbations of ``x`` (1xCxHxW): each superpixel of ``seg`` kept or replaced by ``baseline`` at
    random (Bernoulli 0.5, Captum's default). Returns (``n x K`` 0/1 choices, ``n x C x H x W`` images)."""
    k = int(seg.max()) + 1
    z = torch.bernoulli(torch.full((n, k), 0.5), generator=generator)
    keep = z.to(x.device)[:, torch.as_tensor(seg, device=x.device)].unsqueeze(1)  # n x 1 x H x W
    return z, keep * x + (1 - keep) * baseline


def lime_weights(x: torch.Tensor, images: torch.Tensor, kernel_width: float = 0.25) -> torch.Tensor:
    """Captum's exponential cosine kernel: ``exp(-d² / (2 w²))`` with ``d = 1 - cos(x, image)`` (flattened)."""
    d = 1 - torch.nn.functional.cosine_similarity(images.flatten(1).float(), x.flatten(1).float(), dim=1)
    return torch.exp(-(d ** 2) / (2 * kernel_width ** 2))


def lime_fit(z: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Weighted ridge regression of the scores on the choices (scikit-learn's Ridge, as Captum's SkLearnRidge)."""
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha).fit(z, y, sample_weight=w).coef_.astype(np.float32)


def _lime(probe, fn, x, target, o):
    """LIME (Ribeiro et al. 2016) on superpixels, as Captum's ``Lime`` computes it (Bernoulli choices, cosine
    exponential kernel of width 0.25, ridge alpha 1), with the choices drawn from its own seeded generator (Captum
    draws them, and a DataLoader seed, from the global one: the user's random stream)."""
    seg = superpixels(x[0].detach().cpu().numpy(), o["segments"], o["segmentation"])
    base = make_baseline(probe, x, o["baseline"])
    gen = torch.Generator().manual_seed(int(o["seed"]))
    n, bs = int(o["samples"]), int(o["batch_size"])
    zs, ys, ws = [], [], []
    with torch.no_grad():
        for i in range(0, n, bs):
            z, imgs = lime_samples(x, seg, base, min(bs, n - i), gen)
            zs.append(z.numpy())
            ys.append(fn(imgs)[:, target].float().cpu().numpy())
            ws.append(lime_weights(x, imgs).cpu().numpy())
    coef = lime_fit(np.concatenate(zs), np.concatenate(ys), np.concatenate(ws))
    attr = torch.as_tensor(coef[seg], device=x.device)[None, None].expand(1, x.shape[1], *seg.shape)
    return attr, {"segments": seg}


_COMPUTE = {
    "saliency": _saliency,
    "integrated_gradients": _integrated_gradients,
    "gradcam": _gradcam,
    "guided_gradcam": _guided_gradcam,
    "occlusion": _occlusion,
    "lime": _lime,
}


def all_methods(probe, image, target: int | None = None, methods=METHODS, **per_method) -> Iterator[Step]:
    """Every method on one image, one ``Step`` per finished map (value: ``{method: Attribution}``).
    ``per_method`` gives options per method, e.g. ``smoothgrad={"samples": 20}``."""
    out: dict[str, Attribution] = {}
    methods = list(methods)
    yield Step(0, len(methods), dict(out), {"status": f"{LABELS[methods[0]]}…"})
    for i, m in enumerate(methods):
        out[m] = attribute(probe, image, m, target, **per_method.get(m, {}))
        nxt = f"{LABELS[methods[i + 1]]}…" if i + 1 < len(methods) else "done"
        yield Step(i + 1, len(methods), dict(out), {"status": nxt})


# sanity check lives in its own module; re-exported here so `cw.attribution.sanity_check` works
from .sanity import cascading_randomization, sanity_check, spearman  # noqa: E402,F401
