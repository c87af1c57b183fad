"""The Probe: the one object that holds the model, knows its layers and runs its forwards."""
from __future__ import annotations

import contextlib
import difflib
import itertools
import threading
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
from torch import nn

from . import hooks
from .cache import ActivationCache, digest
from .images import Preprocess, to_images
from .models import info as model_info


@dataclass(frozen=True)
class Layer:
    """One module of the model as the Probe sees it."""

    name: str  #: module path, e.g. ``"features.3"`` or ``"layer2.0.conv1"``
    type: str  #: class name, e.g. ``"Conv2d"``
    shape: tuple[int, ...]  #: output shape for one image, without the batch dimension
    order: int  #: position in forward order (when its last call finished)
    calls: int = 1  #: how many times one forward calls it (shared ReLUs are called twice)
    module: nn.Module = field(default=None, repr=False, compare=False)

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
        return f"{self.name} · {self.type} · {'×'.join(map(str, self.shape))}"

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


def _input_channels(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.in_channels
    return 3


def best_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Probe:
    """Holds ``model`` on a device and answers questions about its layers.

    >>> probe = Probe(load_model())                # efficientnet_lite0, on the GPU if there is one
    >>> probe.layers                               # conv layers in forward order, with shapes
    >>> acts = probe.activations(sample_image(), ["_blocks.3._project_conv"])

    ``transform`` is a :class:`~cnnwidgets.images.Preprocess` (resize, crop, mean/std); by default
    the one that came with the model's weights, else resize 256 / crop 224 / ImageNet statistics
    (``input_size`` changes the crop, for models trained on small images).
    """

    def __init__(self, model: nn.Module, device: str | torch.device | None = None, transform: Preprocess | None = None,
                 input_size: int | tuple[int, int] | None = None, cache_bytes: int = 512 * 2**20):
        if isinstance(model, str):
            from .models import load_model

            model = load_model(model)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"Probe needs a torch.nn.Module, got {type(model).__name__}. "
                "Use cnnwidgets.load_model('efficientnet_lite0') or pass your own nn.Module."
            )
        self.model = model
        self.device = torch.device(device) if device is not None else best_device()
        meta = model_info(model)
        self.name = meta.name if meta else type(model).__name__
        self.classes: list[str] | None = meta.classes if meta else None
        if transform is None:
            if meta is not None:
                transform = meta.preprocess
            else:
                transform = Preprocess(channels=_input_channels(model))
                if transform.channels == 1:
                    transform = Preprocess(channels=1, mean=(0.449,), std=(0.226,))
        if input_size is not None:
            hw = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
            resize = None if transform.resize is None else max(hw)
            transform = Preprocess(resize=resize, crop=hw, mean=transform.mean, std=transform.std,
                                   channels=transform.channels, interpolation=transform.interpolation)
        self.transform = transform
        self.cache = ActivationCache(cache_bytes)
        self._cache_version = None
        self._lock = threading.RLock()
        self._frozen = threading.local()  # see frozen(): depth per thread
        self.model.to(self.device)
        self._discover()

    # --- layers --------------------------------------------------------------------------------
    def _discover(self) -> None:
        """One dry forward with hooks on every module: forward order, call counts, output shapes."""
        named = {n: m for n, m in self.model.named_modules() if n}
        order: dict[str, int] = {}
        shapes: dict[str, tuple[int, ...]] = {}
        calls: dict[str, int] = {}
        counter = iter(range(10**9))

        def keep_shape(name):
            def fn(module, inputs, output):
                out = output
                while isinstance(out, (tuple, list)) and out:
                    out = out[0]
                calls[name] = calls.get(name, 0) + 1
                order[name] = next(counter)
                if isinstance(out, torch.Tensor):
                    shapes[name] = tuple(out.shape[1:])
            return fn

        x = torch.zeros(1, self.transform.channels, *self.transform.input_size, device=self.device)
        handles = []
        try:
            with hooks.model_state(self.model), torch.no_grad():
                for n, m in named.items():
                    handles.append(m.register_forward_hook(keep_shape(n)))
                try:
                    out = self.model(x)
                except Exception as e:
                    raise RuntimeError(
                        f"The model's forward raised on a {'x'.join(map(str, x.shape))} input: {type(e).__name__}: {e}\n"
                        "If it expects another input size, pass Probe(model, input_size=(H, W)); for another number of "
                        "channels or normalisation, pass transform=cnnwidgets.Preprocess(...)."
                    ) from e
        finally:
            for h in handles:
                h.remove()
        while isinstance(out, (tuple, list)) and out:
            out = out[0]
        self.output_shape = tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None
        ran = sorted((n for n in named if n in shapes), key=order.__getitem__)
        self.all_layers = LayerList(
            Layer(n, type(named[n]).__name__, shapes[n], i, calls[n], named[n]) for i, n in enumerate(ran)
        )
        conv = [l for l in self.all_layers if _is_conv(l.module) and l.spatial and l.shape[1] * l.shape[2] > 1]
        self.layers = LayerList(conv)

    def layer(self, key: str | int | Layer) -> Layer:
        """A layer by name (any module, not only convs), by index into :attr:`layers`, or as given."""
        if isinstance(key, Layer):
            return key
        if isinstance(key, int) and not isinstance(key, bool):
            if not -len(self.layers) <= key < len(self.layers):
                raise IndexError(f"Layer index {key} is out of range: this model has {len(self.layers)} conv layers (0..{len(self.layers) - 1}).")
            return self.layers[key]
        if isinstance(key, str):
            if key in self.all_layers:
                return self.all_layers[key]
            names = self.all_layers.names
            close = difflib.get_close_matches(key, names, n=5, cutoff=0.4)
            if not close:
                close = [n for n in names if key.split(".")[-1] in n][:5]
            hint = f" Close names: {', '.join(map(repr, close))}." if close else ""
            raise KeyError(
                f"No layer named {key!r} in {self.name}.{hint} See probe.layers (conv layers) or probe.all_layers (every module)."
            )
        raise TypeError(f"A layer is given by name (str) or index (int), got {type(key).__name__}.")

    def _resolve(self, layers) -> list[Layer]:
        if layers is None:
            return list(self.layers)
        if isinstance(layers, (str, int, Layer)):
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
            return x.to(self.device, torch.float32)
        if isinstance(images, torch.Tensor) and images.ndim == 5:
            raise ValueError(f"Got a 5-D tensor of shape {tuple(images.shape)}: expected CxHxW or NxCxHxW (a video? pass its frames as a batch).")
        return self.transform(images).to(self.device)

    def display(self, images) -> torch.Tensor:
        """Images resized and cropped like the model sees them, un-normalised: ``NxCxHxW`` in [0, 1] (CPU)."""
        return torch.stack([self.transform.geometry(t) for t in to_images(images, self.transform.channels)])

    # --- forwards ------------------------------------------------------------------------------
    def capture(self, x: torch.Tensor, layers, *, grad: bool = False, truncate: bool = True,
                clone: bool = True) -> dict[str, torch.Tensor]:
        """Run the model on a prepared batch ``x`` and return the chosen layers' outputs (on the device).

        ``truncate=True`` stops the forward right after the deepest of ``layers``. With
        ``grad=True`` the outputs keep their graph (parameters are frozen meanwhile, so only the
        input gets gradients); otherwise they are detached copies. The model's state is restored.
        """
        return self._run(x, self._resolve(layers), grad, truncate, clone)[0]

    def _run(self, x: torch.Tensor, targets, grad: bool, truncate: bool, clone: bool):
        """:meth:`capture`'s forward: ``({layer: output}, model output or None when truncated)``."""
        keep = None if grad else ((lambda t: t.detach().clone()) if clone else (lambda t: t.detach()))
        stop = max(targets, key=lambda l: l.order).name if truncate and targets else None
        held = getattr(self._frozen, "depth", 0) and not self.model.training  # inside frozen(): state already set
        state = contextlib.nullcontext() if held else hooks.model_state(self.model, freeze=grad)
        with self._lock, state, torch.set_grad_enabled(grad):
            with hooks.capture(self.model, {l.name: l.module for l in targets}, {l.name: l.calls for l in targets},
                               stop_after=stop, keep=keep) as cap:
                try:
                    cap.output = hooks.run_forward(self.model, x, cap)
                except Exception as e:
                    raise RuntimeError(f"The model's forward raised: {type(e).__name__}: {e}") from e
        missing = [l.name for l in targets if l.name not in cap.outputs]
        if missing:
            raise RuntimeError(f"Layers {missing} produced no tensor output in this forward (not called for this input?).")
        return {l.name: cap.outputs[l.name] for l in targets}, cap.output

    @contextlib.contextmanager
    def frozen(self):
        """A block in which the model stays in eval mode with frozen parameters, restored on exit.

        For loops of many ``capture(..., grad=True)`` calls (a dream): captures made by this thread
        inside the block skip setting and restoring the model's state each time. Nestable; an
        error or a closed generator inside the block still restores everything.
        """
        with self._lock:  # no other thread is inside a model_state block while we enter
            state = hooks.model_state(self.model, freeze=True)
            state.__enter__()
        self._frozen.depth = getattr(self._frozen, "depth", 0) + 1
        try:
            yield self
        finally:
            self._frozen.depth -= 1
            with self._lock:
                state.__exit__(None, None, None)

    def folded(self, keep=()) -> "Probe":
        """A Probe over a private copy of the model with each BatchNorm folded into the convolution
        that feeds it (:mod:`cnnwidgets.fold`): same layer names and, in eval mode, the same outputs up
        to rounding, with forward+backward passes ~1.4x faster on a CPU. For loops of many gradient
        steps (a dream). Convolutions in ``keep`` stay unfolded (their raw output is read).

        The copy is checked against the model on a random input (the ``keep`` layers and the output)
        and built again when the weights change; ``self`` when nothing folds or the check fails."""
        keep = tuple(sorted(self.layer(k).name for k in keep))
        key = (self._weights_version(), keep)
        cached = getattr(self, "_folded_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        from .fold import fold_batchnorm

        g = torch.Generator().manual_seed(0)
        x = torch.rand(2, self.transform.channels, *self.transform.input_size, generator=g).to(self.device)
        with self._lock:
            model, pairs = fold_batchnorm(self.model, x[:1], keep)
        result = self
        if pairs:
            other = Probe(model, device=self.device, transform=self.transform)
            names = [n for n in keep if n in other.all_layers]
            try:
                a, b = self._outputs(x, names), other._outputs(x, names)  # one forward each
                same = all(torch.allclose(a[k].float(), b[k].float(), rtol=1e-3, atol=1e-3 * float(a[k].abs().max()) + 1e-6)
                           for k in a)
            except (RuntimeError, TypeError, AttributeError, KeyError):  # outputs that are not tensors: keep the model
                same = False
            if same:
                result = other
        self._folded_cache = (key, result)
        return result

    def _outputs(self, x: torch.Tensor, names) -> dict[str, torch.Tensor]:
        """The outputs of layers ``names`` and the model's output (key ``"output"``) from one full forward of
        the prepared batch ``x``, without grad, the model's state restored."""
        outs, out = self._run(x, self._resolve(names) if names else [], grad=False, truncate=False, clone=True)
        return {**outs, "output": _first(out)}

    def forward(self, images, preprocess: bool = True, grad: bool = False) -> torch.Tensor:
        """The model's output for images (logits for a classifier), state restored."""
        x = self.prepare(images, preprocess)
        with self._lock, hooks.model_state(self.model, freeze=grad), torch.set_grad_enabled(grad):
            try:
                out = self.model(x)
            except Exception as e:
                raise RuntimeError(f"The model's forward raised: {type(e).__name__}: {e}") from e
        return _first(out)

    def activations(self, images, layers=None, *, preprocess: bool = True, truncate: bool = True, batch_size: int = 32):
        """Outputs of ``layers`` for one image or a batch: detached, on the CPU, batch dimension first.

        ``layers`` is a name, an index, a list of them, or None (all conv layers). A single name
        gives a tensor; a list gives ``{name: tensor}``. Results are cached per image and layer.
        """
        single = isinstance(layers, (str, int, Layer))
        targets = self._resolve(layers)
        x = self.prepare(images, preprocess)
        key = digest(x)
        version = self._weights_version()
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
            if x.shape[0] == 1:  # one image: keep every conv layer on the way, so a slider is instant
                grab += [l for l in self.layers if l.order <= deepest.order and l.name not in out and l not in todo]
            parts: dict[str, list[torch.Tensor]] = {l.name: [] for l in grab}
            for i in range(0, x.shape[0], batch_size):
                got = self.capture(x[i : i + batch_size], grab, truncate=truncate, clone=self.device.type == "cpu")
                for n, t in got.items():
                    parts[n].append(t.to("cpu"))
            for l in grab:
                t = torch.cat(parts[l.name])
                self.cache.put((key, l.name), t)
                if l in todo:
                    out[l.name] = t
        result = {l.name: out[l.name] for l in targets}
        return result[targets[0].name] if single else result

    def _weights_version(self) -> int:
        """Changes when any parameter or buffer is modified in place or replaced (a training step, load_state_dict)."""
        tensors = itertools.chain(self.model.parameters(), self.model.buffers())
        return hash(tuple((id(t), t._version) for t in tensors))

    def predict(self, images, k: int = 5) -> list[list[tuple[int, str, float]]]:
        """Top-``k`` classes per image: ``[(index, name, probability), ...]``."""
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
        return f"Probe({self.name}, device={self.device}, {len(self.layers)} conv layers, input {self.transform.channels}x{'x'.join(map(str, self.transform.input_size))})"


def _first(out):
    """A model's output tensor: the first element of nested tuples/lists (models that return extras)."""
    while isinstance(out, (tuple, list)):
        out = out[0]
    return out
