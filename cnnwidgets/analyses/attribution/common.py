"""What every attribution method shares: checks, the image in pixels, class names, baselines, hook safety."""
from __future__ import annotations

import contextlib
import difflib
import re
from typing import Iterator

import numpy as np
import torch

from ... import hooks

BASELINES = ("black", "blurred", "uniform", "mean")
#: the reference images as the panel lists them
BASELINE_LABELS = (("black", "black image"), ("blurred", "blurred image"), ("uniform", "random noise"),
                   ("mean", "average colour"))


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
    if last.reshape is not None and last.reshape.extra and len(probe.layers) > 1:
        # a ViT reads its class token after the last block, so no gradient reaches the last block's grid tokens:
        # the last block's input (the block before it) is the map it classifies from (pytorch-grad-cam's advice)
        return probe.layers[-2]
    same = [l for l in spatial_layers(probe) if l.order >= last.order and l.shape == last.shape]
    return same[-1] if same else last


def cam_layer(probe, layer=None):
    """The layer Grad-CAM reads (``None``: :func:`default_cam_layer`), checked."""
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


def channel_words(channels: int) -> str:
    """How the colour channels are named in legends: ``"R, G, B"`` or ``"channels"`` (grayscale and others)."""
    return "R, G, B" if channels == 3 else "channels"


# --- predictions and class names -----------------------------------------------------------------
def top_classes(probe, image, k: int = 5, resize: bool = True) -> list[tuple[int, str, float]]:
    """The model's top-``k`` predictions ``[(index, name, probability)]`` for one image."""
    check_classifier(probe)
    x = pixels(probe, image, resize)
    with torch.no_grad():
        p = probe.pixel_model()(x).float().softmax(-1)[0].cpu()
    v, i = p.topk(min(k, p.numel()))
    return [(int(c), probe.class_name(int(c)), float(s)) for s, c in zip(v, i)]


def class_names(probe) -> list[str]:
    """Every class's name (``probe.classes``, or ``"class 7"`` where there is none)."""
    return [probe.class_name(i) for i in range(check_classifier(probe))]


def find_classes(probe, query: str, k: int = 10) -> list[tuple[int, str]]:
    """Classes whose name contains ``query`` (case-insensitive), then close spellings; ``[(index, name)]``.
    A number finds that index."""
    names = class_names(probe)
    n = len(names)
    q = str(query).strip().lower()
    if not q:
        return []
    if q.isdigit():
        i = int(q)
        return [(i, names[i])] if i < n else []
    lower = [s.lower() for s in names]
    exact = [i for i, s in enumerate(lower) if s == q]
    word = re.compile(r"\b" + re.escape(q) + r"\b")
    hits = [i for i, s in enumerate(lower) if q in s]
    hits.sort(key=lambda i: (i not in exact, not word.search(lower[i]), not lower[i].startswith(q), len(names[i])))
    if len(hits) < k:
        for c in difflib.get_close_matches(q, lower, n=k, cutoff=0.6):
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


def minmax(a):
    """``(a - a.min()) / (a.max() - a.min())`` over the whole array or tensor: the NTU homework's ``normalize``
    (zeros where ``a`` is constant, where the homework's would divide by zero)."""
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if float(hi - lo) > 0 else a * 0
