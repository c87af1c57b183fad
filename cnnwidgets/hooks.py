"""The only place cnnwidgets registers hooks, always on the Probe's private view of a model.

:func:`capture` registers forward hooks that collect layer outputs and (optionally) stop the forward
right after the deepest requested layer; :func:`capture_inputs` collects modules' inputs (a ViT block's
attention input); :func:`trace` records every module's output shape and call order; :func:`conv_bn_pairs`
finds convolutions feeding a BatchNorm; :func:`guided_relus` turns a backward into guided backpropagation;
:func:`stop_checks` lets a Stop end a forward or backward at the next layer. Each is a ``with`` block or
removes its hooks in ``finally``, so an exception, a ``KeyboardInterrupt`` or a re-run cell cannot
leave a hook behind. The user's own module never gets a hook (:mod:`cnnwidgets.view`).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Mapping

import torch
from torch import nn


class StopForward(Exception):
    """Raised inside a hook to end a forward pass early (caught by :func:`run_forward`)."""


def first_tensor(out):
    """The tensor a module's output stands for: the first of nested tuples/lists, the first tensor of a dict."""
    while isinstance(out, (tuple, list)) and out:
        out = out[0]
    if isinstance(out, dict):
        out = next((v for v in out.values() if isinstance(v, torch.Tensor)), None)
    return out


class Capture:
    """Outputs of named modules from one forward pass (the last call of each, if called twice).

    Every kept output is a copy (``clone``, which autograd differentiates through when ``grad``), so a
    later in-place op (``ReLU(inplace=True)`` after a convolution, a residual ``+=``) cannot change it;
    the one exception is the output the forward stops at, after which nothing runs."""

    def __init__(self, modules: Mapping[str, nn.Module], calls: Mapping[str, int] | None = None,
                 stop_after: str | None = None, grad: bool = False):
        self.modules = dict(modules)
        self.calls = dict(calls or {})
        self.stop_after = stop_after
        self.grad = grad
        self.outputs: dict[str, torch.Tensor] = {}
        #: with ``keep_raw``: the outputs themselves (not copies), to take a gradient with respect to them
        self.keep_raw = False
        self.raw: dict[str, torch.Tensor] = {}
        self._seen: dict[str, int] = {}
        self.stopped = False
        self.output = None

    def hook(self, name: str):
        def fn(module, inputs, output):
            out = first_tensor(output)
            n = self._seen.get(name, 0) + 1
            self._seen[name] = n
            last = name == self.stop_after and n >= self.calls.get(name, 1)
            if isinstance(out, torch.Tensor):
                if not self.grad:
                    out = out.detach()
                self.outputs[name] = out if last else out.clone()
                if self.keep_raw:
                    self.raw[name] = out
            if last:
                self.stopped = True
                raise StopForward
        return fn


@contextlib.contextmanager
def capture(model: nn.Module, modules: Mapping[str, nn.Module], calls: Mapping[str, int] | None = None,
            stop_after: str | None = None, grad: bool = False) -> Iterator[Capture]:
    """Hooks on ``modules`` for the duration of the block; removed on exit whatever happens."""
    cap = Capture(modules, calls, stop_after, grad)
    handles = []
    try:
        for name, m in cap.modules.items():
            handles.append(m.register_forward_hook(cap.hook(name)))
        yield cap
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def capture_inputs(modules: Mapping[str, nn.Module]) -> Iterator[dict]:
    """Forward pre-hooks on ``modules`` for the block: ``{name: first positional input}`` of each one's last call
    (detached). Removed on exit whatever happens."""
    got: dict[str, torch.Tensor] = {}

    def keep(name):
        def fn(module, inputs):
            if inputs and isinstance(inputs[0], torch.Tensor):
                got[name] = inputs[0].detach()
        return fn

    handles = []
    try:
        for name, m in modules.items():
            handles.append(m.register_forward_pre_hook(keep(name)))
        yield got
    finally:
        for h in handles:
            h.remove()


def run_forward(model: nn.Module, x: torch.Tensor):
    """``model(x)`` that treats :class:`StopForward` as a normal early end; returns the output or None."""
    try:
        return model(x)
    except StopForward:
        return None


@contextlib.contextmanager
def trace(model: nn.Module) -> Iterator[dict]:
    """Hooks on every named module that record, for one forward: ``order`` (when each call ended),
    ``calls`` (how many times it ran) and ``shapes`` (its output tensor's shape without the batch)."""
    rec = {"order": {}, "calls": {}, "shapes": {}}
    counter = iter(range(10**9))

    def keep_shape(name):
        def fn(module, inputs, output):
            out = first_tensor(output)
            rec["calls"][name] = rec["calls"].get(name, 0) + 1
            rec["order"][name] = next(counter)
            if isinstance(out, torch.Tensor):
                rec["shapes"][name] = tuple(out.shape[1:])
        return fn

    handles = []
    try:
        for n, m in model.named_modules():
            if n:
                handles.append(m.register_forward_hook(keep_shape(n)))
        yield rec
    finally:
        for h in handles:
            h.remove()



@contextlib.contextmanager
def guided_relus(model: nn.Module) -> Iterator[None]:
    """Guided backpropagation (Springenberg et al. 2014) on ``model`` (a view) for the block: the gradient reaching
    each ``nn.ReLU``'s output is clamped at zero (then the ReLU's own backward keeps it where the input was
    positive). A ReLU whose output needs no gradient (one on constants, like Swin V2's position-bias MLP) is left
    alone. Hooks removed on exit, whatever happens."""
    def clamp(grad):
        return grad.clamp(min=0)

    def after(module, inputs, output):
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(clamp)

    handles = [m.register_forward_hook(after) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def stop_checks(model: nn.Module, stop, error: type[BaseException]) -> Iterator[None]:
    """While the block runs, every leaf module of ``model`` (a view) checks the event ``stop`` after its forward
    and when its output's gradient arrives in the backward, and raises ``error`` once it is set."""
    if stop is None:
        yield
        return

    def check(*_):
        if stop.is_set():
            raise error

    def after(module, inputs, output):
        check()
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(check)  # returns None: the gradient is unchanged

    handles = [m.register_forward_hook(after) for m in model.modules() if next(m.children(), None) is None]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def hook_count(model: nn.Module) -> int:
    """Number of forward/backward hooks on all modules (tests use it to prove none is left)."""
    n = 0
    for m in model.modules():
        n += len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        n += len(getattr(m, "_backward_pre_hooks", {}))
    return n


HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
              "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")


@contextlib.contextmanager
def no_new_hooks(model: nn.Module) -> Iterator[None]:
    """For third-party code that registers its own hooks (Captum): on exit, whatever happened, every
    hook added to ``model``'s modules inside the block is removed (hooks from before are kept)."""
    mods = list(model.modules())
    before = [{d: set(getattr(m, d, {}) or {}) for d in HOOK_DICTS} for m in mods]
    try:
        yield
    finally:
        for m, old in zip(mods, before):
            for d in HOOK_DICTS:
                table = getattr(m, d, None)
                if table:
                    for k in [k for k in table if k not in old[d]]:
                        del table[k]


def conv_bn_pairs(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str]]:
    """``(conv, batchnorm)`` module names where a ``BatchNorm2d``'s input is exactly the output of a
    ``Conv2d`` (the tensor itself), each of the two called once, seen in one forward of ``x`` (no grad).
    ``model`` is a view (already in eval mode)."""
    named = {n: m for n, m in model.named_modules() if n}
    made_by: dict[int, tuple[str, torch.Tensor]] = {}  # the tensors are held, so no id is reused meanwhile
    fed: list[tuple[torch.Tensor, str]] = []
    calls: dict[str, int] = {}

    def on_conv(name):
        def fn(module, inputs, output):
            calls[name] = calls.get(name, 0) + 1
            made_by[id(output)] = (name, output)
        return fn

    def on_bn(name):
        def fn(module, inputs, output):
            calls[name] = calls.get(name, 0) + 1
            fed.append((inputs[0], name))
        return fn

    handles = []
    try:
        with torch.no_grad():
            for n, m in named.items():
                if isinstance(m, nn.Conv2d):
                    handles.append(m.register_forward_hook(on_conv(n)))
                elif isinstance(m, nn.BatchNorm2d):
                    handles.append(m.register_forward_hook(on_bn(n)))
            model(x)
            pairs = [(made_by[id(t)][0], bn) for t, bn in fed if id(t) in made_by and made_by[id(t)][1] is t]
    finally:
        for h in handles:
            h.remove()
    return [(c, b) for c, b in pairs if calls.get(c) == 1 and calls.get(b) == 1]
