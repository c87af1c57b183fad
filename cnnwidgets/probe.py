"""The Probe: the one object that holds the model, knows its layers and runs its forwards.

Every forward runs on a private *view* of the model (:mod:`cnnwidgets.view`): new module objects that
read the user's weights, in eval mode, with frozen parameters and hooks of their own. The user's module
is never given a hook, never switched to eval, never frozen and never moved: a training loop in another
cell or thread runs exactly as it would without cnnwidgets, while any number of jobs run beside it.
"""
from __future__ import annotations

import difflib
import operator
import threading
import warnings
from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from . import hooks, view
from .cache import ActivationCache, digest
from .images import IMAGENET_MEAN, IMAGENET_STD, Preprocess, to_images
from .models import info as model_info
from .tokens import Reshape
from . import tokens as _tokens


#: the preprocessing line a guessed-normalisation warning shows, by the model's number of channels
_EXAMPLE_PREPROCESSING = {1: "MNIST's: Probe(model, input_size=28, mean=0.1307, std=0.3081)",
                          3: "CIFAR-10's: Probe(model, input_size=32, mean=(0.491, 0.482, 0.447), "
                             "std=(0.247, 0.243, 0.262))"}


class OutputChosen(UserWarning):
    """The model returns several tensors (a dict, a tuple); the Probe says once which one it reads as the scores."""


class PreprocessingGuessed(UserWarning):
    """The Probe had to guess how images are normalised (or sized) for a model."""


class InputResized(UserWarning):
    """A batch of another size was resized to the only input size the model takes."""


class TokenGridUnknown(UserWarning):
    """A transformer block outputs tokens that the Probe cannot lay out as a grid of the input (give ``token_grid=``)."""


class LayerNotFound(KeyError):
    """No layer by that name; the message suggests close names."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Layer:
    """One module of the model as the Probe sees it."""

    name: str  #: module path, e.g. ``"features.3"`` or ``"layer2.0.conv1"``
    type: str  #: class name, e.g. ``"Conv2d"``
    shape: tuple[int, ...]  #: output shape for one image, without the batch dimension
    order: int  #: position in forward order (when its last call finished)
    calls: int = 1  #: how many times one forward calls it (shared ReLUs are called twice)
    module: nn.Module = field(default=None, repr=False, compare=False)  #: the user's module (read it, do not hook it)
    #: how the module's raw output becomes ``shape`` (a transformer's tokens or channels-last map -> C x H x W), or None
    reshape: Reshape | None = field(default=None, compare=False)

    def maps(self, output: torch.Tensor, hw=None) -> torch.Tensor:
        """The module's raw output (batch first) as this layer's output: reshaped to ``N x C x H x W`` for a token
        or channels-last layer (``hw``: the input's height and width), as it is otherwise."""
        return output if self.reshape is None else self.reshape.apply(output, hw)

    @property
    def channels(self) -> int | None:
        return self.shape[0] if len(self.shape) >= 1 else None

    @property
    def spatial(self) -> bool:
        """True when the output is a stack of 2-D maps (C x H x W)."""
        return len(self.shape) == 3

    @property
    def label(self) -> str:
        """Readable label for sliders and axes: ``features.3 · Conv2d · 128×56×56``."""
        return f"{self.name} · {self.type} · {'×'.join(map(str, self.shape))}" + (
            f" ({self.reshape.describe()})" if self.reshape is not None else "")

    def __str__(self) -> str:
        return self.label


class LayerList(Sequence[Layer]):
    """Layers in forward order, indexable by position or by name."""

    def __init__(self, layers: Iterable[Layer]):
        self._layers = list(layers)
        self._by_name = {l.name: l for l in self._layers}

    def __len__(self) -> int:
        return len(self._layers)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return LayerList(self._layers[key])
        if isinstance(key, str):
            return self._by_name[key]
        return self._layers[key]

    def __contains__(self, name) -> bool:
        return name in self._by_name if isinstance(name, str) else name in self._layers

    @property
    def names(self) -> list[str]:
        return [l.name for l in self._layers]

    def __repr__(self) -> str:
        rows = "\n".join(f"  [{i:>3}] {l.label}" for i, l in enumerate(self._layers))
        return f"LayerList({len(self)} layers)\n{rows}"


def _is_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.conv._ConvNd)


def _input_channels(model: nn.Module) -> int | None:
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.in_channels
    return None


def best_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _device(device) -> torch.device:
    """``device`` checked: a clear error for a GPU that is not there."""
    if device is None:
        return best_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r} is not a device: use 'cpu', 'cuda', 'cuda:1' or 'mps' (or None: the GPU "
                         "when there is one).") from None
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        have = f"{torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() else "no GPU that torch can use"
        raise ValueError(f"device={device!r}, but this machine has {have}. Use device='cpu', or device=None for the "
                         "best device available.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r}, but Apple's MPS is not available here. Use device='cpu' or device=None.")
    return dev


def _unwrap(model):
    """A module the Probe can work with: DataParallel / DDP and ``torch.compile`` wrappers are unwrapped
    (their module is the same weights); TorchScript is refused (it takes no forward hooks)."""
    if isinstance(model, str):
        from .models import load_model

        model = load_model(model)
    if isinstance(model, torch.jit.ScriptModule):
        raise TypeError("This is a TorchScript model (torch.jit.script / torch.jit.trace / torch.jit.load): it takes no "
                        "forward hooks, so its layers cannot be read. Build the Python model and load its weights "
                        "(model.load_state_dict(scripted.state_dict())), then Probe(model).")
    if not isinstance(model, nn.Module):
        raise TypeError(f"Probe needs a torch.nn.Module, got {type(model).__name__}. "
                        "Use cnnwidgets.load_model('efficientnet_lite0') or pass your own nn.Module.")
    for _ in range(4):
        inner = getattr(model, "_orig_mod", None)  # torch.compile's OptimizedModule
        if isinstance(inner, nn.Module) and type(model).__name__ == "OptimizedModule":
            model = inner
            continue
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
            continue
        break
    return model


def _index(key, what: str = "the layer index") -> int | None:
    """``key`` as an int if it is an integer (int, numpy integer, 0-d integer tensor), else None; floats are refused."""
    if isinstance(key, bool):
        return None
    say = what[0].upper() + what[1:] if what.startswith("the ") else what
    if isinstance(key, float) or (isinstance(key, torch.Tensor) and key.is_floating_point()) or isinstance(key, np.floating):
        raise TypeError(f"{say} must be a whole number, got {key!r}.")
    if isinstance(key, torch.Tensor):
        if key.ndim != 0:
            raise TypeError(f"{say} must be one whole number, got a tensor of shape {tuple(key.shape)}.")
        return int(key.item())
    try:
        return operator.index(key)
    except TypeError:
        return None


def whole_number(value, what: str = "the index") -> int:
    """``value`` as an int when it is a whole number (int, numpy integer, 0-d integer tensor); a clear TypeError
    for anything else (``2.7`` is not silently channel 2)."""
    i = _index(value, what)
    if i is None:
        raise TypeError(f"{what[0].upper() + what[1:] if what.startswith('the ') else what} must be a whole number, "
                        f"got {value!r}.")
    return i


def _hw(input_size) -> tuple[int, int]:
    if isinstance(input_size, bool) or isinstance(input_size, (str, bytes)):
        raise TypeError(f"input_size is a number of pixels or (height, width), got {input_size!r}.")
    if isinstance(input_size, (int, np.integer)):
        hw = (int(input_size), int(input_size))
    elif isinstance(input_size, (tuple, list)) and len(input_size) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in input_size):
        hw = (int(input_size[0]), int(input_size[1]))
    else:
        raise TypeError(f"input_size is a number of pixels or (height, width), got {input_size!r}.")
    if min(hw) < 1:
        raise ValueError(f"input_size must be positive, got {input_size!r} (e.g. input_size=28 for 28x28 images).")
    return hw


def _stat(values, name: str, channels: int) -> tuple[float, ...]:
    try:
        v = tuple(float(x) for x in (values if isinstance(values, (list, tuple, np.ndarray, torch.Tensor)) else [values]))
    except (TypeError, ValueError):
        raise TypeError(f"{name} is one number per input channel, got {values!r}.") from None
    if len(v) == 1 and channels > 1:
        v = v * channels
    if len(v) != channels:
        raise ValueError(f"{name} has {len(v)} values but the model takes {channels}-channel images: give {channels} "
                         f"(one per channel), e.g. {name}={tuple(round(x, 3) for x in (IMAGENET_MEAN if name == 'mean' else IMAGENET_STD))[:channels] if channels == 3 else (0.5,)}.")
    if not all(np.isfinite(v)) or (name == "std" and min(v) <= 0):
        raise ValueError(f"{name} must be finite{' and positive' if name == 'std' else ''}, got {v}.")
    return v


def class_names(classes, n: int | None) -> list[str] | None:
    """Class names from a list, a ``{index: name}`` dict or a dataset with ``.classes``, checked against ``n``."""
    if classes is None:
        return None
    src = classes
    if hasattr(classes, "classes") and not isinstance(classes, (list, tuple, dict)):
        classes = classes.classes
    if isinstance(classes, dict):
        if not all(isinstance(k, (int, np.integer)) for k in classes):
            raise TypeError("classes as a dict maps class index -> name, e.g. {0: 'cat', 1: 'dog'}.")
        size = max(n or 0, max(classes) + 1 if classes else 0)
        names = [str(classes.get(i, f"class {i}")) for i in range(size)]
    elif isinstance(classes, (list, tuple, np.ndarray)):
        names = [str(c) for c in classes]
    else:
        raise TypeError(f"classes is a list of names, a dict {{index: name}} or a dataset with .classes, got "
                        f"{type(src).__name__}.")
    if n is not None and len(names) != n:
        raise ValueError(f"Got {len(names)} class names but the model outputs {n} scores per image: give one name per "
                         "output, in the order of the outputs.")
    return names


def _token_grid(value) -> dict | None:
    """``token_grid=`` checked: ``{layer name or "*": (H, W)}`` or None."""
    if value is None:
        return None

    def pair(v):
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            v = (v, v)
        if not (isinstance(v, (tuple, list)) and len(v) == 2 and all(
                isinstance(a, (int, np.integer)) and not isinstance(a, bool) and a >= 1 for a in v)):
            raise TypeError(f"token_grid is the (height, width) of the token grid, e.g. token_grid=(12, 16), or "
                            f"{{layer name: (height, width)}}; got {value!r}.")
        return int(v[0]), int(v[1])

    if isinstance(value, dict):
        return {str(k): pair(v) for k, v in value.items()}
    return {"*": pair(value)}


#: sizes tried, in this order, when a model given without ``input_size`` refuses 224x224
SIZE_GUESSES = (224, 32, 28, 64, 96, 128, 256, 299, 384, 512)


class Probe:
    """Holds ``model`` and answers questions about its layers.

    >>> probe = Probe(load_model())                # efficientnet_lite0, on the GPU if there is one
    >>> probe.layers                               # conv layers in forward order, with shapes
    >>> acts = probe.activations(sample_image(), ["_blocks.3._project_conv"])
    >>> Probe(my_cnn, input_size=28, channels=1, mean=0.1307, std=0.3081, classes=train_set)

    Preprocessing (resize, crop, mean/std) comes from the model's weights when cnnwidgets loaded it,
    else from the arguments (``transform=`` a whole :class:`~cnnwidgets.images.Preprocess`, or any of
    ``input_size``, ``channels``, ``mean``, ``std``); what is neither is guessed (ImageNet statistics,
    224x224, channels from the first convolution) and the Probe says so once. ``classes``: a list of
    names, a ``{index: name}`` dict, or a dataset with ``.classes`` (ImageFolder, MNIST...).
    ``output_key``: the entry to read when the model returns a dict (default: ``"logits"``, or its only tensor).
    ``token_grid``: ``(H, W)`` of a transformer's token grid when it is not found from the input size (a grid that
    is not square), for every token layer or ``{layer name: (H, W)}``.

    A transformer's blocks (ViT encoder layers, Swin blocks, timm's ``blocks``) are layers too: their token
    sequences (class and register tokens set aside) and channels-last maps are read as C x H x W maps
    (:mod:`cnnwidgets.tokens`; ``layer.reshape`` says how).
    """

    def __init__(self, model: nn.Module, device: str | torch.device | None = None, transform: Preprocess | None = None,
                 input_size: int | tuple[int, int] | None = None, cache_bytes: int = 512 * 2**20, *,
                 classes=None, mean=None, std=None, channels: int | None = None, output_key: str | None = None,
                 token_grid=None):
        model = _unwrap(model)
        self._token_grid = _token_grid(token_grid)
        self.model = model
        self.device = _device(device)
        if transform is not None and not isinstance(transform, Preprocess):
            raise TypeError(f"transform is a cnnwidgets.Preprocess(resize=, crop=, mean=, std=, channels=), got "
                            f"{type(transform).__name__}.")
        meta = model_info(model)
        self.name = meta.name if meta else type(model).__name__
        self.output_key = output_key
        self.output_note = None  # which of several outputs is read, when the Probe chose (see _output)
        self._mirror = view.Mirror(self.device)
        self._local = threading.local()
        self._lock = threading.RLock()  # building views and copies
        self.cache = ActivationCache(cache_bytes)
        self._cache_version = None
        self._private = False
        self.transform, self.preprocessing = self._preprocess(meta, transform, input_size, channels, mean, std)
        self._discover(guess_size=input_size is None and transform is None and meta is None)
        n = self.num_classes
        self.classes: list[str] | None = class_names(classes, n) if classes is not None else (
            meta.classes if meta and meta.classes and (n is None or len(meta.classes) == n) else None)
        if self.preprocessing.get("guessed"):
            warnings.warn(f"{self.name}: {self.preprocessing['guessed']}", PreprocessingGuessed, stacklevel=2)

    # --- preprocessing -------------------------------------------------------------------------
    def _preprocess(self, meta, transform, input_size, channels, mean, std):
        """The Preprocess to use and where each part came from (shown in the repr and the panels)."""
        if channels is not None:
            if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels not in (1, 3):
                raise ValueError(f"channels is 1 (grayscale) or 3 (RGB), got {channels!r}.")
        base = transform or (meta.preprocess if meta else None)
        info: dict = {"source": "given" if transform is not None else ("the model's weights" if meta else None)}
        guessed = []
        if base is None:
            c = channels or _input_channels(self.model)
            if c is None:
                c = 3
            elif c not in (1, 3):
                raise ValueError(f"The model's first convolution takes {c} input channels; cnnwidgets shows 1-channel "
                                 "(grayscale) and 3-channel (RGB) images.")
            if mean is None or std is None:
                guessed.append("ImageNet's mean and std" if c == 3 else "mean 0.449 / std 0.226 (ImageNet's, in gray)")
            base = Preprocess(channels=c) if c == 3 else Preprocess(channels=1, mean=(0.449,), std=(0.226,))
            if input_size is None:
                guessed.append("224x224 inputs")
            info["source"] = "arguments" if (mean is not None or input_size is not None) else "defaults"
        c = channels or base.channels
        m = _stat(mean, "mean", c) if mean is not None else (base.mean if len(base.mean) == c else base.mean[:1] * c)
        s = _stat(std, "std", c) if std is not None else (base.std if len(base.std) == c else base.std[:1] * c)
        resize, crop = base.resize, base.crop
        if input_size is not None:
            hw = _hw(input_size)
            resize, crop = (None if base.resize is None else max(hw)), hw
        pre = Preprocess(resize=resize, crop=crop, mean=tuple(m), std=tuple(s), channels=c, interpolation=base.interpolation)
        if guessed:
            info["guessed"] = (f"guessed {' and '.join(guessed)}: nothing says how this model's images were prepared. "
                               f"If it was trained otherwise, say so with the values of your training transform, "
                               f"e.g. {_EXAMPLE_PREPROCESSING[c]} (mean=0, std=1 for ToTensor() alone).")
        return pre, info

    def describe_preprocessing(self) -> str:
        """One line: what images become before the model sees them, and where that came from."""
        t = self.transform
        fmt = lambda v: ", ".join(f"{x:.3g}" for x in v)  # noqa: E731
        steps = []
        if t.resize is not None:
            steps.append(f"resize {t.resize}")
        if t.crop is not None:
            steps.append(f"centre crop {t.crop[0]}×{t.crop[1]}" if t.crop[0] != t.crop[1] else f"centre crop {t.crop[0]}")
        steps.append(f"mean ({fmt(t.mean)}), std ({fmt(t.std)})")
        where = self.preprocessing.get("guessed") and "guessed — pass mean=, std=, input_size= to set it" or \
            f"from {self.preprocessing.get('source') or 'defaults'}"
        gray = "grayscale" if t.channels == 1 else "RGB"
        return f"{gray} {'×'.join(map(str, t.input_size))}: {', '.join(steps)} ({where})"

    # --- the private view ----------------------------------------------------------------------
    def _view(self) -> nn.Module:
        """This thread's view of the model (built on first use, rebuilt when the model's structure or a
        tensor's storage changed; mirrored copies refreshed when the weights changed)."""
        if self._private:
            return self.model
        loc = self._local
        key = view.structure_key(self.model)
        v = getattr(loc, "view", None)
        if v is None or loc.key != key:
            with self._lock:
                v = view.build(self.model, self._mirror)
            loc.view, loc.key = v, key
            loc.synced = None
        if self._mirror.active:
            version = self.weights_version()
            if getattr(loc, "synced", None) != version:
                with self._lock:
                    self._mirror.sync()
                loc.synced = version
        return v

    def view_module(self, name: str) -> nn.Module:
        """The module ``name`` in this thread's view (for attribution libraries that hook a layer)."""
        v = self._view()
        return v if not name else v.get_submodule(name)

    def weights_version(self) -> str:
        """Changes whenever the model's weights, buffers or modules change (training steps, ``load_state_dict``,
        edits through ``.data``, replaced layers). Panels compare it to know their results are stale."""
        return view.fingerprint(self.model)

    # --- layers --------------------------------------------------------------------------------
    def _dry_run(self, hw) -> tuple[dict, object]:
        x = torch.zeros(1, self.transform.channels, *hw, device=self.device)
        v = self._view()
        with hooks.trace(v) as rec, torch.no_grad():
            out = v(x)
        return rec, out

    def _discover(self, guess_size: bool = False) -> None:
        """One dry forward of the view with hooks on every module: forward order, call counts, output shapes.
        Without an input size to go on, sizes from :data:`SIZE_GUESSES` are tried until the model takes one."""
        hw = tuple(self.transform.input_size)
        try:
            rec, out = self._dry_run(hw)
        except Exception as first:
            if not guess_size:
                raise RuntimeError(
                    f"The model's forward raised on a 1x{self.transform.channels}x{hw[0]}x{hw[1]} input: "
                    f"{type(first).__name__}: {first}\nIf it expects another input size, pass Probe(model, input_size=(H, W)); "
                    "for another number of channels, channels=1 or 3.") from first
            for size in SIZE_GUESSES[1:]:
                try:
                    rec, out = self._dry_run((size, size))
                except Exception:
                    continue
                resize = None if self.transform.resize is None else size
                self.transform = Preprocess(resize=resize, crop=(size, size), mean=self.transform.mean,
                                            std=self.transform.std, channels=self.transform.channels,
                                            interpolation=self.transform.interpolation)
                self.preprocessing["guessed"] = self.preprocessing.get("guessed", "").replace(
                    "224x224 inputs", f"{size}x{size} inputs (the first size it accepted)")
                break
            else:
                raise RuntimeError(
                    f"The model's forward raised on a 1x{self.transform.channels}x{hw[0]}x{hw[1]} input ({type(first).__name__}: "
                    f"{first}), and on every other size tried ({', '.join(map(str, SIZE_GUESSES[1:]))}). Pass the size and "
                    "channels it was trained on: Probe(model, input_size=(H, W), channels=1 or 3).") from first
        out = self._output(out)
        self.output_shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None
        named = dict(self.model.named_modules())
        vnamed = dict(self._view().named_modules())
        shapes, order, calls = rec["shapes"], rec["order"], rec["calls"]
        ran = sorted((n for n in vnamed if n and n in shapes), key=order.__getitem__)
        reshapes, blocks = self._token_layers(vnamed, ran, shapes, None)
        self.all_layers = LayerList(
            Layer(n, type(vnamed[n]).__name__, _tokens.maps_shape(shapes[n], reshapes[n]) if n in reshapes else shapes[n], i,
                  calls[n], named.get(n), reshapes.get(n)) for i, n in enumerate(ran))
        conv = [l for l in self.all_layers if (_is_conv(vnamed[l.name]) or l.name in blocks) and l.spatial
                and l.shape[1] * l.shape[2] > 1]
        self.layers = LayerList(conv)

    def _token_layers(self, vnamed, ran, shapes, hw) -> tuple[dict, set]:
        """``({name: Reshape}, block names)``: a transformer's outputs that read as maps, and its blocks (a module
        with children of its own, one of a Sequential / ModuleList, whose output is a token sequence or a
        channels-last map; the innermost where blocks nest). A model without such blocks (a CNN) gets neither."""
        hw = tuple(self.transform.input_size) if hw is None else tuple(hw)
        given = self._token_grid
        hint = getattr(self.model, "num_prefix_tokens", None)
        hint = hint if isinstance(hint, int) else None
        found = {}
        for n in ran:
            r = _tokens.detect(shapes[n], hw, extra_hint=hint,
                               given=given.get(n, given.get("*")) if given else None)
            if r is not None:
                found[n] = r
        containers = (nn.Sequential, nn.ModuleList)
        blocks = set()
        for n in found:
            m = vnamed[n]
            parent = vnamed.get(n.rsplit(".", 1)[0] if "." in n else "")
            if isinstance(parent, containers) and not isinstance(m, containers) and next(m.children(), None) is not None \
                    and shapes[n] and found[n].grid[0] * found[n].grid[1] > 1:
                blocks.add(n)
        blocks = {b for b in blocks if not any(o != b and o.startswith(b + ".") for o in blocks)}
        unread = [n for n in ran if n not in found and len(shapes[n]) == 2 and shapes[n][0] > 1
                  and isinstance(vnamed.get(n.rsplit(".", 1)[0] if "." in n else ""), containers)
                  and not isinstance(vnamed[n], containers) and next(vnamed[n].children(), None) is not None]
        if unread:
            n = unread[0]
            t, c = shapes[n]
            more = f" (and {len(unread) - 1} more blocks)" if len(unread) > 1 else ""
            warnings.warn(f"{self.name}: {n} outputs {t} tokens of {c} channels{more}, which do not make a grid of the "
                          f"{hw[0]}x{hw[1]} input (after up to {_tokens.MAX_EXTRA} class/register tokens), so they are not "
                          f"shown as maps. Give the grid: Probe(model, token_grid=(H, W)), e.g. the patch rows and columns.",
                          TokenGridUnknown, stacklevel=4)
        if not blocks and not given:
            return {}, set()
        return found, blocks

    def _output(self, out):
        """The model's output tensor: ``output_key`` of a dict (or ``"logits"``, or its only tensor), the first
        element of nested tuples/lists."""
        if isinstance(out, dict):
            keys = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
            key = self.output_key or ("logits" if "logits" in keys else (keys[0] if len(keys) == 1 else None))
            if key is None or key not in out:
                raise ValueError(f"The model returns a dict with keys {list(out)}; say which one holds the class "
                                 f"scores: Probe(model, output_key={keys[0] if keys else 'name'!r}).")
            out = out[key]
            if self.output_key is None and len(keys) > 1:
                self._say_output(f"returns a dict ({', '.join(map(repr, keys))}): its {key!r} is read as the class "
                                 f"scores; Probe(model, output_key=...) reads another")
        while isinstance(out, (tuple, list)) and out:
            if len(out) > 1:
                self._say_output(f"returns a {type(out).__name__} of {len(out)}: its first element is read as the "
                                 "class scores")
            out = out[0]
        return out

    def _say_output(self, text: str) -> None:
        if self.output_note is None:
            self.output_note = text
            warnings.warn(f"{self.name} {text}.", OutputChosen, stacklevel=4)

    def layer(self, key: str | int | Layer) -> Layer:
        """A layer by name (any module, not only convs), by index into :attr:`layers`, or as given."""
        if isinstance(key, Layer):
            return key
        if isinstance(key, str):
            if key in self.all_layers:
                return self.all_layers[key]
            names = self.all_layers.names
            close = difflib.get_close_matches(key, names, n=5, cutoff=0.4)
            if not close:
                close = [n for n in names if key.split(".")[-1] in n][:5]
            hint = f" Close names: {', '.join(map(repr, close))}." if close else ""
            raise LayerNotFound(
                f"No layer named {key!r} in {self.name}.{hint} See probe.layers (conv layers) or probe.all_layers (every module).")
        i = _index(key)
        if i is None:
            raise TypeError(f"A layer is given by name (str) or index (int), got {type(key).__name__}.")
        if not self.layers:
            raise IndexError(f"{self.name} has no convolution layer with spatial output, so there is no layer {i}: "
                             "give a layer by name (see probe.all_layers).")
        if not -len(self.layers) <= i < len(self.layers):
            raise IndexError(f"Layer index {i} is out of range: this model has {len(self.layers)} conv layers (0..{len(self.layers) - 1}).")
        return self.layers[i]

    def require_layers(self, what: str) -> LayerList:
        """:attr:`layers`, or a clear error for a model without convolution layers (an MLP)."""
        if not self.layers:
            kinds = sorted({l.type for l in self.all_layers})
            raise ValueError(f"{what} shows convolution layers, and {self.name} has none with spatial output (its layers: "
                             f"{', '.join(kinds) or 'none'}). cnnwidgets is for convolutional networks; the Histogram "
                             "panel still shows the weights of any model.")
        return self.layers

    def _resolve(self, layers) -> list[Layer]:
        if layers is None:
            return list(self.require_layers("This"))
        if isinstance(layers, (str, Layer)) or _index(layers) is not None:
            layers = [layers]
        out = [self.layer(k) for k in layers]
        if not out:
            raise ValueError("Got an empty list of layers; pass None for all conv layers.")
        return out

    # --- images --------------------------------------------------------------------------------
    def prepare(self, images, preprocess: bool = True) -> torch.Tensor:
        """Images of any kind -> the normalised batch ``NxCxHxW`` the model takes, on the device."""
        if not preprocess:
            if not isinstance(images, torch.Tensor) or images.ndim not in (3, 4):
                raise ValueError("preprocess=False takes a tensor CxHxW or NxCxHxW that is already normalised for the model.")
            x = images if images.ndim == 4 else images[None]
            if x.is_complex():
                raise TypeError("Got a complex tensor: images are real numbers.")
            x = x.to(self.device, torch.float32)
            want = tuple(self.transform.input_size)
            if tuple(x.shape[-2:]) != want and self.fixed_input_size():
                warnings.warn(f"{self.name} takes only {want[0]}x{want[1]} inputs: the {x.shape[-2]}x{x.shape[-1]} "
                              f"batch was resized to {want[0]}x{want[1]} (bilinear).", InputResized, stacklevel=2)
                x = torch.nn.functional.interpolate(x, size=want, mode="bilinear", align_corners=False)
            return x
        if isinstance(images, torch.Tensor) and images.ndim == 5:
            raise ValueError(f"Got a 5-D tensor of shape {tuple(images.shape)}: expected CxHxW or NxCxHxW (a video? pass its frames as a batch).")
        return self.transform(images).to(self.device)

    def fixed_input_size(self) -> bool:
        """Whether the model's layers run only at its input size (a ViT's patch grid and position embedding): one
        forward at another size up to the last of :attr:`layers`, the first time it is asked. (A CNN whose conv layers
        run at any size and only its classifier does not is not fixed: its maps are shown at the image's size.)"""
        fixed = getattr(self, "_fixed_size", None)
        if fixed is None:
            h, w = self.transform.input_size
            x = torch.zeros(1, self.transform.channels, h + 32, w + 32, device=self.device)
            try:
                if self.layers:
                    self._run(x, [self.layers[-1]], grad=False, truncate=True)
                else:
                    self._dry_run((h + 32, w + 32))
                fixed = False
            except Exception:
                fixed = True
            self._fixed_size = fixed
        return fixed

    def display(self, images) -> torch.Tensor:
        """Images resized and cropped like the model sees them, un-normalised: ``NxCxHxW`` in [0, 1] (CPU)."""
        return torch.stack([self.transform.geometry(t) for t in to_images(images, self.transform.channels)])

    # --- forwards ------------------------------------------------------------------------------
    def capture(self, x: torch.Tensor, layers, *, grad: bool = False, truncate: bool = True) -> dict[str, torch.Tensor]:
        """Run the model on a prepared batch ``x`` and return the chosen layers' outputs (on the device).

        ``truncate=True`` stops the forward right after the deepest of ``layers``. With ``grad=True``
        the outputs keep their graph to ``x`` (the view's parameters are frozen); otherwise they are
        detached. Outputs are copies, so an in-place op later in the model cannot change them.
        """
        return self._run(x, self._resolve(layers), grad, truncate)[0]

    def layer_gradient(self, x: torch.Tensor, layer, score) -> tuple[torch.Tensor, torch.Tensor]:
        """``(maps, d score / d maps)`` of ``layer`` for the prepared batch ``x``, both as the layer's output
        (``N x C x H x W`` for a token layer), detached. ``score`` takes the model's output tensor and returns the
        number to differentiate (e.g. ``lambda out: out[:, 281].sum()``). One full forward, one backward (Grad-CAM
        on a layer whose output the Probe reshapes)."""
        l = self.layer(layer)
        x = x.detach().requires_grad_(True)  # the view is frozen: without this no graph would reach the layer
        hw = tuple(x.shape[-2:])
        v = self._view()
        with torch.enable_grad(), hooks.capture(v, {l.name: v.get_submodule(l.name)}, {l.name: l.calls}, grad=True) as cap:
            cap.keep_raw = True
            try:
                out = v(x)
            except Exception as e:
                raise RuntimeError(f"The model's forward raised: {type(e).__name__}: {e}") from e
            if l.name not in cap.raw:
                raise RuntimeError(f"Layer {l.name!r} produced no tensor output in this forward.")
            raw = cap.raw[l.name]
            g, = torch.autograd.grad(score(self._output(out)), raw, allow_unused=True)
        if g is None:
            g = torch.zeros_like(raw)
        return l.maps(cap.outputs[l.name].detach(), hw), l.maps(g.detach(), hw)

    def extra_tokens(self, images, layer, *, preprocess: bool = True) -> torch.Tensor:
        """The tokens a token layer sets aside from its maps (class, distillation, register tokens): ``N x extra x C``,
        detached, on the CPU; ``N x 0 x C`` for a layer without any."""
        l = self.layer(layer)
        if l.reshape is None or l.reshape.kind != "tokens":
            raise ValueError(f"{l.name!r} is not a token layer (its output is {'×'.join(map(str, l.shape))} as it is); "
                             "extra tokens belong to a transformer's token layers, e.g. a ViT's encoder blocks.")
        x = self.prepare(images, preprocess)
        v = self._view()
        with torch.no_grad(), hooks.capture(v, {l.name: v.get_submodule(l.name)}, {l.name: l.calls},
                                            stop_after=l.name) as cap:
            cap.keep_raw = True
            hooks.run_forward(v, x)
        if l.name not in cap.raw:
            raise RuntimeError(f"Layer {l.name!r} produced no tensor output in this forward.")
        return l.reshape.extra_tokens(cap.raw[l.name]).detach().to("cpu").clone()

    def module_inputs(self, x: torch.Tensor, names) -> dict[str, torch.Tensor]:
        """The input tensor of each module ``names`` (any module, e.g. a ViT block's attention) for the prepared batch
        ``x``: one forward of the view, no grad, detached."""
        v = self._view()
        mods = {n: v.get_submodule(n) for n in names}
        with torch.no_grad(), hooks.capture_inputs(mods) as got:
            try:
                v(x)
            except Exception as e:
                raise RuntimeError(f"The model's forward raised: {type(e).__name__}: {e}") from e
        return dict(got)

    def _run(self, x: torch.Tensor, targets, grad: bool, truncate: bool):
        """:meth:`capture`'s forward: ``({layer: output}, model output or None when truncated)``."""
        stop = max(targets, key=lambda l: l.order).name if truncate and targets else None
        v = self._view()
        modules = {l.name: v.get_submodule(l.name) for l in targets}
        with torch.set_grad_enabled(grad), hooks.capture(v, modules, {l.name: l.calls for l in targets},
                                                         stop_after=stop, grad=grad) as cap:
            try:
                cap.output = hooks.run_forward(v, x)
            except Exception as e:
                raise RuntimeError(f"The model's forward raised: {type(e).__name__}: {e}") from e
        missing = [l.name for l in targets if l.name not in cap.outputs]
        if missing:
            raise RuntimeError(f"Layers {missing} produced no tensor output in this forward (not called for this input?).")
        hw = tuple(x.shape[-2:])
        return {l.name: l.maps(cap.outputs[l.name], hw) for l in targets}, cap.output

    def folded(self, keep=()) -> "Probe":
        """A Probe over a private copy of the model with each BatchNorm folded into the convolution
        that feeds it (:mod:`cnnwidgets.fold`): same layer names and, in eval mode, the same outputs up
        to rounding, with forward+backward passes ~1.4x faster on a CPU. For loops of many gradient
        steps (a dream). Convolutions in ``keep`` stay unfolded (their raw output is read).

        The copy is checked against the model on a random input (the ``keep`` layers and the output)
        and built again when the weights change; ``self`` when nothing folds, or the copy cannot be made
        or does not match (a model that cannot be copied, weight_norm or parametrized convolutions)."""
        keep = tuple(sorted(self.layer(k).name for k in keep))
        key = (self.weights_version(), keep)
        cached = getattr(self, "_folded_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        from .fold import fold_batchnorm

        g = torch.Generator().manual_seed(0)
        x = torch.rand(2, self.transform.channels, *self.transform.input_size, generator=g).to(self.device)
        result = self
        try:
            model, pairs = fold_batchnorm(view.build(self.model, self._mirror), x[:1], keep)
            if pairs:
                other = self._derived(model)
                names = [n for n in keep if n in other.all_layers]
                a, b = self._outputs(x, names), other._outputs(x, names)  # one forward each
                if all(torch.allclose(a[k].float(), b[k].float(), rtol=1e-3, atol=1e-3 * float(a[k].abs().max()) + 1e-6)
                       for k in a):
                    result = other
        except Exception:  # a copy we cannot make or check: the model as it is (slower, same values)
            result = self
        self._folded_cache = (key, result)
        return result

    def _derived(self, model: nn.Module) -> "Probe":
        """A Probe over ``model``, a private module with this model's layer names (a folded or independent copy):
        no discovery forward, no view (the module is ours)."""
        p = object.__new__(Probe)
        p.__dict__.update({k: v for k, v in self.__dict__.items() if k not in ("_local", "_folded_cache", "cache", "_lock")})
        p.model = model
        p._private = True
        p._local = threading.local()
        p._lock = threading.RLock()
        p.cache = ActivationCache(self.cache.budget)
        p._cache_version = None
        named = dict(model.named_modules())
        p.all_layers = LayerList(replace(l, module=named.get(l.name)) for l in self.all_layers)
        p.layers = LayerList(p.all_layers[l.name] for l in self.layers)
        return p

    def copy(self) -> "Probe":
        """A Probe over an independent copy of the model's current weights (for experiments that change the
        weights, like the randomisation sanity check); the model itself is untouched."""
        with self._lock:
            model = view.build(self.model, self._mirror, clone=True)
        return self._derived(model)

    def _outputs(self, x: torch.Tensor, names) -> dict[str, torch.Tensor]:
        """The outputs of layers ``names`` and the model's output (key ``"output"``) from one full forward of
        the prepared batch ``x``, without grad."""
        outs, out = self._run(x, self._resolve(names) if names else [], grad=False, truncate=False)
        return {**outs, "output": self._output(out)}

    def forward(self, images, preprocess: bool = True, grad: bool = False) -> torch.Tensor:
        """The model's output for images (logits for a classifier)."""
        x = self.prepare(images, preprocess)
        v = self._view()
        with torch.set_grad_enabled(grad):
            try:
                out = v(x)
            except Exception as e:
                raise RuntimeError(f"The model's forward raised: {type(e).__name__}: {e}") from e
        return self._output(out)

    def pixel_model(self) -> nn.Module:
        """``model(normalise(x))`` for images ``x`` in [0, 1] (what attribution methods differentiate), on this
        thread's view; its ``.layer(name)`` is the view's module, for methods that hook a layer."""
        return _PixelModel(self)

    def named_tensors(self) -> dict[str, torch.Tensor]:
        """Every parameter and buffer of the model by ``state_dict`` name, as it is now (detached; read them, do
        not write them): the Histogram's live view of the weights."""
        return {k: v.detach() for k, v in self.model.state_dict(keep_vars=True).items()}

    def parameter_names(self) -> set[str]:
        """The ``state_dict`` names of the model's parameters (the rest of :meth:`named_tensors` are buffers)."""
        return {n for n, _ in self.model.named_parameters()}

    def activations(self, images, layers=None, *, preprocess: bool = True, truncate: bool = True, batch_size: int = 32):
        """Outputs of ``layers`` for one image or a batch: detached, on the CPU, batch dimension first.

        ``layers`` is a name, an index, a list of them, or None (all conv layers). A single name
        gives a tensor; a list gives ``{name: tensor}``. Results are cached per image and layer and
        dropped when the weights change. For one image, the other conv layers on the way are cached
        too (as many as the cache's budget allows), so a slider over layers is instant.
        """
        single = isinstance(layers, (str, Layer)) or _index(layers) is not None
        targets = self._resolve(layers)
        x = self.prepare(images, preprocess)
        key = digest(x)
        version = self.weights_version()
        if version != self._cache_version:  # the model was trained or re-loaded since: old activations are stale
            self.cache.clear()
            self._cache_version = version
        out: dict[str, torch.Tensor] = {}
        for l in targets:
            hit = self.cache.get((key, l.name))
            if hit is not None:
                out[l.name] = hit
        todo = [l for l in targets if l.name not in out]
        if todo:
            deepest = max(todo, key=lambda l: l.order)
            grab = list(todo)
            if x.shape[0] == 1:  # one image: keep the conv layers on the way, within the cache's budget
                room = self.cache.budget // 2 - sum(self._nbytes(l, x) for l in todo)
                for l in self.layers:
                    if l.order <= deepest.order and l.name not in out and l not in todo:
                        size = self._nbytes(l, x)
                        if size <= room:
                            grab.append(l)
                            room -= size
            parts: dict[str, list[torch.Tensor]] = {l.name: [] for l in grab}
            for i in range(0, x.shape[0], batch_size):
                got = self.capture(x[i : i + batch_size], grab, truncate=truncate)
                for n, t in got.items():
                    parts[n].append(t.to("cpu"))
            for l in grab:
                t = torch.cat(parts[l.name])
                self.cache.put((key, l.name), t)
                if l in todo:
                    out[l.name] = t
        result = {l.name: out[l.name] for l in targets}
        return result[targets[0].name] if single else result

    def _nbytes(self, layer: Layer, x: torch.Tensor) -> int:
        """Bytes of ``layer``'s float32 output for batch ``x`` (shapes scale with the input's area)."""
        h0, w0 = self.transform.input_size
        scale = (x.shape[-2] * x.shape[-1]) / max(1, h0 * w0)
        return int(x.shape[0] * 4 * int(np.prod(layer.shape)) * (scale if layer.spatial else 1.0))

    def predict(self, images, k: int = 5) -> list[list[tuple[int, str, float]]]:
        """Top-``k`` classes per image: ``[(index, name, probability), ...]`` (all classes when ``k`` is larger)."""
        k = _index(k, "k")
        if k is None or k < 1:
            raise ValueError(f"k is how many classes to list, a whole number >= 1; got {k!r}.")
        logits = self.forward(images)
        if logits.ndim != 2:
            raise ValueError(f"{self.name} gives outputs of shape {tuple(logits.shape[1:])}, not class scores.")
        p = logits.float().softmax(-1).cpu()
        v, i = p.topk(min(k, p.shape[1]), dim=1)
        return [[(int(c), self.class_name(int(c)), float(s)) for s, c in zip(vs, cs)] for vs, cs in zip(v, i)]

    def class_name(self, index: int) -> str:
        if self.classes and 0 <= index < len(self.classes):
            return self.classes[index]
        return f"class {index}"

    @property
    def num_classes(self) -> int | None:
        return self.output_shape[0] if self.output_shape is not None and len(self.output_shape) == 1 else None

    def __repr__(self) -> str:
        classes = (f"{len(self.classes)} named classes" if self.classes else
                   (f"{self.num_classes} unnamed classes (classes=[...] names them)" if self.num_classes else "no class scores"))
        return (f"Probe({self.name}, device={self.device}, {len(self.layers)} conv layers, "
                f"input {self.transform.channels}x{'x'.join(map(str, self.transform.input_size))})\n"
                f"  preprocessing: {self.describe_preprocessing()}\n  output: {classes}"
                + (f" (the model {self.output_note})" if self.output_note else ""))


class _PixelModel(nn.Module):
    """``view(normalise(x))`` for ``x`` in [0, 1]; the output tensor (first of a tuple, ``output_key`` of a dict)."""

    def __init__(self, probe: Probe):
        super().__init__()
        self.view = probe._view()
        self._probe = [probe]  # a list: not registered as a submodule
        dev = probe.device
        self.register_buffer("mean", torch.tensor(probe.transform.mean, device=dev).reshape(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(probe.transform.std, device=dev).reshape(1, -1, 1, 1), persistent=False)

    def layer(self, name: str) -> nn.Module:
        return self.view.get_submodule(name)

    def forward(self, x):
        return self._probe[0]._output(self.view((x - self.mean) / self.std))


def _first(out):
    """A model's output tensor: the first element of nested tuples/lists (models that return extras)."""
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out
