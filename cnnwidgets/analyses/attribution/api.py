"""The verb: ``attribute(probe, image, method, target, **options)``, and the same as a job of partial maps."""
from __future__ import annotations

import threading
import time
from typing import Iterator

import torch

from ... import hooks
from ...runner import Step
from .base import Attribution, Method, get, registered
from .common import check_classifier, check_target, guarded, pixels


class Stopped(Exception):
    """Raised inside the model's forward or backward once a job's ``stop`` event is set (caught by the job)."""


def interruptible(fn, stop: threading.Event | None):
    """While the block runs, every layer of the pixel model ``fn`` checks ``stop`` after its forward and when its
    gradient arrives in the backward, and raises :class:`Stopped` once it is set: a Stop does not wait for a chunk
    of work to finish."""
    return hooks.stop_checks(fn, stop, Stopped)


def attribute(probe, image, method: str = "saliency", target: int | None = None, *, resize: bool = True,
              **opts) -> Attribution:
    """Explain the model's score for class ``target`` (default: its top-1) on one image.

    ``opts`` override the method's defaults (``DEFAULTS[method]``; each method's ``options`` say what they
    mean and may be): ``samples``/``noise`` (SmoothGrad, LIME), ``steps``/``baseline`` (IG), ``layer``
    (Grad-CAM), ``window``/``stride`` (occlusion), ``segments``/``segmentation`` (LIME), ``batch_size``
    (most images per forward), ``seed``.
    """
    item = None
    for item in attribute_steps(probe, image, method, target, resize=resize, **opts):
        pass
    return item.value


def attribute_steps(probe, image, method: str = "saliency", target: int | None = None, *, resize: bool = True,
                    stop: threading.Event | None = None, **opts) -> Iterator[Step]:
    """:func:`attribute` as a job: ``Step(done, total, Attribution, info)`` each time the map has sharpened (more
    samples, path steps or window positions), the last one final. ``value`` is None while a method has no map
    to show yet (LIME before it has as many samples as superpixels); ``info["status"]`` says what runs.

    Method, options, target and image are checked here, before the job starts; the work runs when it is iterated
    (on the thread that iterates it), in chunks of about a second (:class:`~.base.Pace`). ``stop``: an Event;
    once it is set the job ends within one layer of the model, inside a chunk, without a final map."""
    m = get(method)
    o = m.resolve(opts)
    check_classifier(probe)
    if target is not None:
        target = check_target(probe, target)  # before any forward: a bad target fails fast
    x = pixels(probe, image, resize)
    m.check(o, x)
    return _steps(probe, m, x, target, o, stop)


def _steps(probe, m: Method, x: torch.Tensor, target: int | None, o: dict, stop=None) -> Iterator[Step]:
    t0 = time.perf_counter()
    fn = probe.pixel_model()
    with torch.no_grad():
        logits = fn(x).float()
    if target is None:
        target = int(logits[0].argmax())
    target = check_target(probe, target)
    prob = float(logits.softmax(-1)[0, target])
    total = m.total(o, x)
    image = x[0].cpu().numpy()
    gen = m.steps(probe, fn, x, target, o)
    try:
        while True:
            try:
                with guarded(fn), interruptible(fn, stop):  # hooks added in this chunk are gone after it
                    part = next(gen, None)
            except Stopped:
                return
            if part is None:
                break
            a = None
            extras = dict(part.extras)
            note = extras.pop("note", "")
            if part.raw is not None:
                raw = part.raw.detach().float()[0].cpu().numpy()
                a = Attribution(map=m.reduce(raw), raw=raw, target=target, method=m.name, image=image,
                                target_name=probe.class_name(target), score=float(logits[0, target]), prob=prob,
                                options=dict(o), seconds=time.perf_counter() - t0, model=probe.name,
                                done=part.done, total=total, **extras)
            unit = m.unit + ("" if total == 1 else "s")
            status = f"{m.label}: {part.done} / {total} {unit}" if total > 1 else f"{m.label}: done"
            status += f" ({note})" if note else ""
            yield Step(part.done, total, a, {"status": status, "method": m.name})
    finally:
        gen.close()


def all_methods(probe, image, target: int | None = None, methods=None, *, stop: threading.Event | None = None,
                **per_method) -> Iterator[Step]:
    """Every method on one image: ``Step(finished, methods, {method: Attribution}, info)``, with the map being
    computed in the dict as it sharpens (``a.partial``). ``per_method`` gives options per method, e.g.
    ``smoothgrad={"samples": 20}``; ``stop`` as in :func:`attribute_steps`."""
    names = [m.name for m in (registered() if methods is None else [get(n) for n in methods])]
    jobs = [attribute_steps(probe, image, n, target, stop=stop, **per_method.get(n, {})) for n in names]  # checked now
    out: dict[str, Attribution] = {}
    for i, (name, job) in enumerate(zip(names, jobs)):
        if stop is not None and stop.is_set():
            return
        for s in job:
            if s.value is not None:
                out[name] = s.value
            status = (s.info or {}).get("status", "")
            yield Step(i + (0 if s.value is None or s.value.partial else 1), len(names), dict(out),
                       {"status": status, "method": name})
