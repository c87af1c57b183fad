"""Dream engine vs Lucent's render_vis, side by side in one run (CPU by default).

    python benchmarks/dream.py [--steps 30] [--atlas-steps 8] [--repeats 3] [--threads 1] [--device cpu]

Same model (efficientnet_lite0, real weights), layer, channel, image (224 px FFT + decorrelated
colour + sigmoid), transforms (Lucent's standard: pad 12, jitter 8, scale 0.9-1.1, rotate +-10,
jitter 4), normalisation, Adam lr 0.05 and number of steps. Lucent gets every benefit: its model is
frozen (requires_grad False, as ours is during the step) and the hooks render_vis leaves on every
module are removed after each of its runs (otherwise they pile up and slow every later run).

(a) one channel: steps/s; (b) a 16-channel atlas: image-steps/s (ours: one batch of 16; Lucent:
once per channel); (c) final objective of the last image, evaluated the same way for both (no
transforms); (d) our step vs a bare truncated forward+backward of the same batch.
Medians of ``--repeats`` runs; ratios are ours / theirs.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cnnwidgets as cw  # noqa: E402
from cnnwidgets.analyses import dream as D  # noqa: E402

LAYER = "_blocks.8._project_conv"  # 112 x 14 x 14, the middle of the network
CHANNEL = 18
SIZE = 224


def lucent_available() -> str | None:
    try:
        import lucent.optvis.render  # noqa: F401
    except Exception as e:  # pragma: no cover - reported in the table
        return f"{type(e).__name__}: {e}"
    return None


def lucent_run(model, probe, objective: str, steps: int, seed: int):
    """One render_vis call; returns (seconds, final image N x 3 x H x W in [0, 1])."""
    from lucent.optvis import param, render, transform

    torch.manual_seed(seed)
    np.random.seed(seed)
    mean = torch.tensor(probe.transform.mean, device=probe.device).reshape(1, -1, 1, 1)
    std = torch.tensor(probe.transform.std, device=probe.device).reshape(1, -1, 1, 1)
    tfs = list(transform.standard_transforms) + [lambda x: (x - mean) / std]  # the model's own normalisation
    holder = {}

    def param_f():
        params, image_f = param.image(SIZE)
        holder["image_f"] = image_f
        return params, image_f

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        render.render_vis(model, objective, param_f=param_f, transforms=tfs, thresholds=(steps,), preprocess=False,
                          show_image=False, progress=False)
    dt = time.perf_counter() - t
    for m in model.modules():  # render_vis never removes its hooks
        m._forward_hooks.clear()
    with torch.no_grad():
        img = holder["image_f"]().detach().cpu()
    return dt, img


def ours_run(probe, objective, steps: int, seed: int, batch_times: list | None = None):
    t = time.perf_counter()
    last = None
    prev = t
    for last in D.dream(probe, objective, steps=steps, preset="regularized", size=SIZE, seed=seed):
        now = time.perf_counter()
        if batch_times is not None:
            batch_times.append(now - prev)
        prev = now
    return time.perf_counter() - t, last.image


def bare_step(probe, n: int, reps: int) -> float:
    """Median time of a truncated forward+backward of an n x 3 x 248 x 248 batch (the size fed after pad 12)."""
    x0 = torch.rand(n, 3, SIZE + 24, SIZE + 24, device=probe.device)
    times = []
    for _ in range(reps):
        x = x0.clone().requires_grad_(True)
        t = time.perf_counter()
        a = probe.capture(x, [LAYER], grad=True)[LAYER]
        a[:, CHANNEL].mean().backward()
        _ = x.grad.sum().item()  # wait for the device
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--atlas-steps", type=int, default=8)
    ap.add_argument("--atlas", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable timings on a shared machine)")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    model = cw.load_model()
    probe = cw.Probe(model, device=a.device)
    print(f"# dream benchmark · efficientnet_lite0 · layer {LAYER} channel {CHANNEL} · {SIZE}px + standard transforms · "
          f"device {probe.device} · torch threads {torch.get_num_threads()} · {a.repeats} repeats")
    why = lucent_available()
    rows = []
    obj = D.channel(LAYER, CHANNEL)
    lname = LAYER.replace(".", "_")

    lmodel = None
    if why is None:
        lmodel = copy.deepcopy(model).to(probe.device).eval()
        for p in lmodel.parameters():
            p.requires_grad_(False)

    # (a) + (c): one channel
    ours_t, theirs_t, ours_v, theirs_v = [], [], [], []
    step_times = []
    for r in range(a.repeats):
        t, img = ours_run(probe, obj, a.steps, seed=r, batch_times=step_times)
        ours_t.append(t)
        ours_v.append(float(D.evaluate(probe, obj, img)[0]))
        if lmodel is not None:
            t, img = lucent_run(lmodel, probe, f"{lname}:{CHANNEL}", a.steps, seed=r)
            theirs_t.append(t)
            theirs_v.append(float(D.evaluate(probe, obj, img)[0]))
    ours_sps = a.steps / statistics.median(ours_t)
    if theirs_t:
        theirs_sps = a.steps / statistics.median(theirs_t)
        rows.append(("(a) one channel, steps/s", ours_sps, theirs_sps, ours_sps / theirs_sps, ">= 1.5"))
        rows.append(("(c) final objective (median)", statistics.median(ours_v), statistics.median(theirs_v),
                     statistics.median(ours_v) / statistics.median(theirs_v), ">= 1.0"))
    else:
        rows.append(("(a) one channel, steps/s", ours_sps, float("nan"), float("nan"), ">= 1.5"))

    # (b): an atlas of N channels
    cs = list(range(a.atlas))
    ours_t, theirs_t = [], []
    atlas_steps = []
    for r in range(a.repeats):
        t, _ = ours_run(probe, D.channels(LAYER, cs), a.atlas_steps, seed=r, batch_times=atlas_steps)
        ours_t.append(t)
        if lmodel is not None:
            theirs_t.append(sum(lucent_run(lmodel, probe, f"{lname}:{c}", a.atlas_steps, seed=r)[0] for c in cs))
    ours_tp = a.atlas * a.atlas_steps / statistics.median(ours_t)
    if theirs_t:
        theirs_tp = a.atlas * a.atlas_steps / statistics.median(theirs_t)
        rows.append((f"(b) {a.atlas}-channel atlas, image-steps/s", ours_tp, theirs_tp, ours_tp / theirs_tp, ">= 3"))
    else:
        rows.append((f"(b) {a.atlas}-channel atlas, image-steps/s", ours_tp, float("nan"), float("nan"), ">= 3"))

    # (d): overhead of our step over a bare truncated forward+backward of the same batch
    ours_1 = statistics.median(step_times[2:] if len(step_times) > 4 else step_times)
    bare_1 = bare_step(probe, 1, max(5, a.repeats * 3))
    rows.append(("(d) step time, 1 image (s)", ours_1, bare_1, ours_1 / bare_1 - 1, "<= 0.30 overhead"))
    ours_n = statistics.median(atlas_steps[2:] if len(atlas_steps) > 4 else atlas_steps)
    bare_n = bare_step(probe, a.atlas, max(3, a.repeats))
    rows.append((f"(d) step time, {a.atlas} images (s)", ours_n, bare_n, ours_n / bare_n - 1, "<= 0.30 overhead"))

    print(f"\n| {'measure':<38} | {'cnnwidgets':>11} | {'Lucent / bare':>13} | {'ratio':>8} | target |")
    print(f"|{'-' * 40}|{'-' * 13}|{'-' * 15}|{'-' * 10}|--------|")
    for name, o, t, ratio, target in rows:
        print(f"| {name:<38} | {o:>11.4g} | {t:>13.4g} | {ratio:>8.3g} | {target} |")
    if why is not None:
        print(f"\nLucent's render_vis could not run here: {why}")
    print("\n(d) 'ratio' is the overhead: our step time / bare truncated forward+backward - 1 "
          "(the bare batch is fed at 248 px, our transforms vary it 223..273 px).")


if __name__ == "__main__":
    main()
