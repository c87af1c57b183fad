"""Dream engine vs Lucent's render_vis, side by side in one run (CPU by default).

    python benchmarks/dream.py [--steps 20] [--atlas-steps 4] [--repeats 3] [--layers early,panel,middle]
                               [--quality-steps 64] [--seeds 16] [--threads 0] [--device cpu] [--only abcd]

Same model (efficientnet_lite0, real weights), layer, channel, image (224 px FFT + decorrelated
colour + sigmoid), transforms (Lucent's standard: pad 12, jitter 8, scale 0.9-1.1, rotate +-10,
jitter 4), normalisation, Adam lr 0.05 and number of steps. Lucent gets every benefit: its model is
frozen (requires_grad False, as ours is during the step) and the hooks render_vis leaves on every
module are removed after each of its runs (otherwise they pile up and slow every later run).

(a) one channel: steps/s; (b) a 16-channel atlas: image-steps/s (ours: one batch of 16; Lucent:
once per channel); (c) final objective of the last image after --quality-steps steps, evaluated the
same way for both (no transforms), mean over --seeds seeds (and the paired difference); (d) our step vs a bare truncated
forward+backward of the same batch at the same transformed sizes, taken in turns (one of ours, one bare), plus
the "floor": the work outside the network timed alone, and (info) the same step against a bare
pass on the model as given (BatchNorms unfolded, NCHW), what a hand-written loop would run.
Our transforms are the same chain with the same random draws, applied as one resampling (``transforms.one_pass``). Each measure for several layers:
an early one, the one the Dream panel starts on, and the middle of the network (our forward stops
at the layer; Lucent runs the whole model, so the deeper the layer, the less truncation saves).
(f) first frame: the time from Start (the Dream panel on the default model, its default layer and size) to the
first image on its canvas, in a fresh process (import, model and Probe made first, not timed), with a fresh Probe
in a warm process, and warm (Start again); the limit beside it is one bare truncated forward+backward at the
size the first step runs (cold in a fresh process / warm), which no first frame can beat. Target: under 1 s.
Medians of ``--repeats`` runs; ratios are ours / theirs. Both sides use the same torch threads.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cnnwidgets as cw  # noqa: E402
from cnnwidgets.analyses import dream as D  # noqa: E402

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


def ours_run(probe, objective, steps: int, seed: int):
    t = time.perf_counter()
    last = None
    for last in D.dream(probe, objective, steps=steps, preset="regularized", size=SIZE, seed=seed):
        pass
    return time.perf_counter() - t, last.image


def bare_sizes(k: int, seed: int = 0) -> list[int]:
    """Sizes of the batches our transforms feed the model (pad 12 -> 248 px; random scale up to 273 px)."""
    g = torch.Generator().manual_seed(seed)
    tf = D.transforms.compose(D.transforms.standard())
    x = torch.zeros(1, 1, SIZE, SIZE)
    return [tf(x, g).shape[-1] for _ in range(k)]


class Bare:
    """A bare truncated forward+backward of an ``n``-image batch (input leaf with grad, mean of channel 0
    backwards) on the model our engine uses (BatchNorms folded), in the memory layout and slices it
    uses on this device (NHWC and slices of 2 on a CPU), at the sizes our transforms produce: the
    difference to our step is what the dream adds (parameterisation, transforms, objective, optimiser).
    The input is made NHWC before the clock starts, as our transforms write it. ``plain=True``: the
    Probe's truncated forward+backward on the model as given (BatchNorms, NCHW, the whole batch at
    once), what a hand-written loop over the user's model runs."""

    def __init__(self, probe, layer: str, n: int, plain: bool = False):
        self.probe, self.layer, self.n = (probe if plain else probe.folded([layer])), layer, n
        self.nhwc = not plain and D.engine.prefers_channels_last(self.probe)
        self.chunk = D.engine.CPU_CHUNK if self.probe.device.type == "cpu" and not plain else n
        self.sizes = bare_sizes(400)
        for s in sorted(set(self.sizes)):  # warm-ups: oneDNN builds its kernels per shape
            self(s)

    def __call__(self, size: int) -> float:
        """Seconds for one bare step at ``size`` (on the Probe's view: eval mode, frozen parameters)."""
        x = torch.rand(self.n, 3, size, size, device=self.probe.device)
        if self.nhwc:  # our transforms hand the model NHWC images: no layout copy in either step
            x = x.contiguous(memory_format=torch.channels_last)
        x.requires_grad_(True)
        t = time.perf_counter()
        a = D.engine.forward_chunks(self.probe, x, [self.layer], self.chunk, self.nhwc)[self.layer]
        a[:, 0].mean().backward()
        _ = x.grad.sum().item()  # wait for the device
        return time.perf_counter() - t


def overhead(probe, objective, layer: str, n: int, steps: int, repeats: int, plain: bool = False):
    """(d): median seconds of our step and of a bare step, measured in turns (one of ours, then one bare
    step at a size drawn as ours are), so that both see the same machine load and cache state.
    The first two steps of each run (checks, warm-up) are left out. ``plain``: the bare step runs on the
    model as given (a third pass in the same turns would change the cache state our step sees)."""
    bare = Bare(probe, layer, n, plain=plain)
    ours, theirs = [], []
    k = 0
    for r in range(repeats):
        run = iter(D.dream(probe, objective, steps=steps, preset="regularized", size=SIZE, seed=r))
        next(run), next(run)
        for _ in range(steps - 2):
            t = time.perf_counter()
            next(run)
            ours.append(time.perf_counter() - t)
            theirs.append(bare(bare.sizes[k % len(bare.sizes)]))
            k += 1
    return statistics.median(ours), statistics.median(theirs)


def outside_work(probe, n: int, steps: int = 60) -> float:
    """Median seconds of a dream step's work outside the network alone, warm, in a tight loop: the image
    from its parameters, the transforms + normalisation, their backward (from a gradient of ones) and
    Adam. A lower bound of what any step adds to the bare pass (inside a real step the network's pass
    leaves the caches cold and this work takes longer)."""
    pr = D.engine.resolve_preset("regularized")
    g = torch.Generator().manual_seed(0)
    prm = D.engine.make_param(probe, pr, (n, 3, SIZE, SIZE), g)
    opt = D.adam.make(prm.params, lr=pr.lr)
    prepare = D.engine.model_input(probe, D.transforms.standard(), D.engine.prefers_channels_last(probe))
    times = []
    for i in range(steps + 10):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        prepare(prm(), g).sum().backward()
        opt.step()
        _ = float(prm.params[0].detach()[0, 0, 0, 0, 0])  # wait for the device
        if i >= 10:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def first_frame(probe, panel=None) -> tuple[float, object]:
    """Seconds from the Dream panel's Start (its default layer and size, in a thread as in JupyterLab) to the first
    image on its canvas; and the panel (Start it again for a warm figure)."""
    d = panel or cw.Dream(probe, run_mode="thread")
    d.steps_slider.value = 20
    got, seen = threading.Event(), {}
    handler = lambda ch: (seen.setdefault("t", time.perf_counter()), got.set())  # noqa: E731
    d.canvas.observe(handler, "value")
    t = time.perf_counter()
    d.start()
    if not got.wait(120):
        raise RuntimeError("no frame arrived within 120 s")
    d.canvas.unobserve(handler, "value")
    d.stop()
    d.join(30)
    return seen["t"] - t, d


def first_size(probe) -> int:
    """The side of the first step's input in the panel's default run: its image size plus Lucent's 12 px pad twice."""
    return D.jobs.default_size(probe) + 24


def bare_once(probe, layer: str, size: int) -> float:
    """Seconds of one truncated forward+backward of one image on the model as given (the Probe's view, NCHW)."""
    x = torch.rand(1, 3, size, size, device=probe.device, requires_grad=True)
    t = time.perf_counter()
    probe.capture(x, [layer], grad=True)[layer][:, 0].mean().backward()
    _ = x.grad.sum().item()
    return time.perf_counter() - t


def _child(kind: str) -> None:
    """In a fresh process: the first frame (``frame``) or one bare pass (``bare``), cold; prints JSON."""
    probe = cw.Probe(cw.load_model())
    if kind == "frame":
        secs = first_frame(probe)[0]
    else:
        secs = bare_once(probe, panel_default_layer(probe), first_size(probe))
    print(json.dumps({"seconds": secs}))


def _in_fresh_process(kind: str, threads: int) -> float:
    cmd = [sys.executable, __file__, "--first-frame-child", kind] + (["--threads", str(threads)] if threads else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def bench_first_frame(probe, a, rows: list) -> None:
    """(f) first frame after Start: a fresh process, a fresh Probe, warm; against one bare truncated pass."""
    layer = panel_default_layer(probe)
    tag = f"panel #{probe.layers.names.index(layer)} {layer}, {D.jobs.default_size(probe)} px"
    cold = statistics.median(_in_fresh_process("frame", a.threads) for _ in range(a.repeats))
    bare_cold = statistics.median(_in_fresh_process("bare", a.threads) for _ in range(a.repeats))
    rows.append((f"(f) s to first frame, fresh process · {tag}", cold, bare_cold, cold / bare_cold, "< 1 s"))
    fresh = statistics.median(first_frame(cw.Probe(probe.model))[0] for _ in range(a.repeats))
    bare_warm = statistics.median(bare_once(probe, layer, first_size(probe)) for _ in range(max(5, a.repeats)))
    rows.append((f"(f) s to first frame, fresh Probe, warm process · {tag}", fresh, bare_warm, fresh / bare_warm, "< 1 s"))
    secs, d = first_frame(probe)
    warm = [first_frame(probe, d)[0] for _ in range(a.repeats)]
    d.close()
    rows.append((f"(f) s to first frame, Start again · {tag}", statistics.median(warm), bare_warm,
                 statistics.median(warm) / bare_warm, "< 1 s"))


def panel_default_layer(probe) -> str:
    names = probe.layers.names
    return names[len(names) // 2]  # what cnnwidgets.Dream starts on (widgets/dream.py)


def bench_layer(probe, lmodel, layer: str, a, rows: list, tag: str) -> None:
    if "a" in a.only:
        bench_speed(probe, lmodel, layer, a, rows, tag)
    if "b" in a.only and a.atlas:
        bench_atlas(probe, lmodel, layer, a, rows, tag)
    if "d" in a.only:
        bench_overhead(probe, layer, a, rows, tag)


def bench_speed(probe, lmodel, layer: str, a, rows: list, tag: str) -> None:
    """(a) one channel: steps/s."""
    obj = D.channel(layer, CHANNEL)
    lname = layer.replace(".", "_")
    ours_t, theirs_t = [], []
    ours_run(probe, obj, a.steps, seed=99)  # warm-ups: every transformed size once
    if lmodel is not None:
        lucent_run(lmodel, probe, f"{lname}:{CHANNEL}", a.steps, seed=99)
    for r in range(a.repeats):
        ours_t.append(ours_run(probe, obj, a.steps, seed=r)[0])
        if lmodel is not None:
            theirs_t.append(lucent_run(lmodel, probe, f"{lname}:{CHANNEL}", a.steps, seed=r)[0])
    ours_sps = a.steps / statistics.median(ours_t)
    theirs_sps = a.steps / statistics.median(theirs_t) if theirs_t else float("nan")
    rows.append((f"(a) 1 channel, steps/s · {tag}", ours_sps, theirs_sps, ours_sps / theirs_sps, ">= 1.5"))


def bench_atlas(probe, lmodel, layer: str, a, rows: list, tag: str) -> None:
    """(b) an atlas of N channels: ours one batch, Lucent once per channel."""
    lname = layer.replace(".", "_")
    cs = list(range(a.atlas))
    ours_run(probe, D.channels(layer, cs), a.steps, seed=99)  # warm-up: the batch's shapes at every size
    ours_t, theirs_t = [], []
    for r in range(a.repeats):
        ours_t.append(ours_run(probe, D.channels(layer, cs), a.atlas_steps, seed=r)[0])
        if lmodel is not None:
            theirs_t.append(sum(lucent_run(lmodel, probe, f"{lname}:{c}", a.atlas_steps, seed=r)[0] for c in cs))
    ours_tp = a.atlas * a.atlas_steps / statistics.median(ours_t)
    theirs_tp = a.atlas * a.atlas_steps / statistics.median(theirs_t) if theirs_t else float("nan")
    rows.append((f"(b) {a.atlas}-ch atlas, image-steps/s · {tag}", ours_tp, theirs_tp, ours_tp / theirs_tp, ">= 3"))


def bench_overhead(probe, layer: str, a, rows: list, tag: str) -> None:
    """(d) our step vs a bare truncated forward+backward at the same sizes, in turns."""
    obj = D.channel(layer, CHANNEL)
    ours_1, bare_1 = overhead(probe, obj, layer, 1, max(a.steps, 24), a.repeats)
    rows.append((f"(d) s/step 1 image vs bare · {tag}", ours_1, bare_1, ours_1 / bare_1 - 1, "<= 0.30"))
    ours_p, plain_1 = overhead(probe, obj, layer, 1, max(a.steps, 24), a.repeats, plain=True)
    rows.append((f"(d) info: our step vs a bare pass on the model as given (BN, NCHW) · {tag}", ours_p, plain_1,
                 ours_p / plain_1 - 1, "info"))
    floor = outside_work(probe, 1)
    rows.append((f"(d) floor: outside-network work alone, warm, 1 image · {tag}", floor, bare_1, floor / bare_1, "info"))
    if a.atlas:
        ours_n, bare_n = overhead(probe, D.channels(layer, list(range(a.atlas))), layer, a.atlas, max(a.atlas_steps, 6), a.repeats)
        rows.append((f"(d) s/step {a.atlas} images vs bare · {tag}", ours_n, bare_n, ours_n / bare_n - 1, "<= 0.30"))


def bench_quality(probe, lmodel, layer: str, a, rows: list, tag: str) -> None:
    """(c) final objective (no transforms) after ``--quality-steps`` steps, median over ``--seeds`` seeds."""
    obj = D.channel(layer, CHANNEL)
    lname = layer.replace(".", "_")
    ours_v, theirs_v = [], []
    for r in range(a.seeds):
        ours_v.append(float(D.evaluate(probe, obj, ours_run(probe, obj, a.quality_steps, seed=100 + r)[1])[0]))
        if lmodel is not None:
            img = lucent_run(lmodel, probe, f"{lname}:{CHANNEL}", a.quality_steps, seed=100 + r)[1]
            theirs_v.append(float(D.evaluate(probe, obj, img)[0]))
    o = statistics.mean(ours_v)
    t = statistics.mean(theirs_v) if theirs_v else float("nan")
    rows.append((f"(c) mean objective @{a.quality_steps} steps, {a.seeds} seeds · {tag}", o, t, o / t, ">= 1.0"))
    print(f"  (c) {tag}: ours {', '.join(f'{v:.3f}' for v in ours_v)} | Lucent {', '.join(f'{v:.3f}' for v in theirs_v)}",
          flush=True)
    if len(theirs_v) > 1:
        d = [x - y for x, y in zip(ours_v, theirs_v)]
        print(f"  (c) medians {statistics.median(ours_v):.3f} vs {statistics.median(theirs_v):.3f}; paired difference "
              f"(ours - Lucent, same seed) {statistics.mean(d):+.3f} +- {statistics.stdev(d) / len(d) ** 0.5:.3f} (s.e.)",
              flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--atlas-steps", type=int, default=4)
    ap.add_argument("--atlas", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quality-steps", type=int, default=64)
    ap.add_argument("--seeds", type=int, default=16, help="seeds for (c) (fewer: noise decides)")
    ap.add_argument("--layers", default="early,panel,middle",
                    help="comma list of layer names or early / panel (the panel's default) / middle / late")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads for both sides (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", default="abcdf", help="measures to run, e.g. 'd' or 'ab' (default all: abcdf)")
    ap.add_argument("--first-frame-child", choices=["frame", "bare"], help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.first_frame_child:
        return _child(a.first_frame_child)
    model = cw.load_model()
    probe = cw.Probe(model, device=a.device)
    named = {"early": "_blocks.3._project_conv", "panel": panel_default_layer(probe), "middle": "_blocks.8._project_conv",
             "late": "_blocks.13._project_conv"}
    layers = [(named.get(k, k), k) for k in a.layers.split(",") if k]
    print(f"# dream benchmark · efficientnet_lite0 (49 conv layers) · channel {CHANNEL} · {SIZE}px + standard transforms · "
          f"device {probe.device} · torch threads {torch.get_num_threads()} (both sides) · {a.repeats} repeats · "
          f"{a.steps} steps (atlas {a.atlas_steps})", flush=True)
    why = lucent_available()
    lmodel = None
    if why is None:
        lmodel = copy.deepcopy(model).to(probe.device).eval()
        for p in lmodel.parameters():
            p.requires_grad_(False)
    rows = []
    if "f" in a.only:  # first: before the other measures warm this process (the fresh-process figures have their own)
        print("  first frame after Start", flush=True)
        bench_first_frame(probe, a, rows)
    for layer, key in layers:
        info = probe.layer(layer)
        k = probe.layers.names.index(info.name)
        tag = f"{key} #{k} {info.name}" if key in named else f"#{k} {info.name}"
        print(f"  layer {tag} ({info.label.split(' · ')[-1]})", flush=True)
        bench_layer(probe, lmodel, info.name, a, rows, tag)
        if "c" in a.only and a.seeds and (key == "panel" or len(layers) == 1):
            bench_quality(probe, lmodel, info.name, a, rows, tag)

    w = max(len(r[0]) for r in rows)
    print(f"\n| {'measure':<{w}} | {'cnnwidgets':>10} | {'Lucent/bare':>11} | {'ratio':>6} | target  | met |")
    print(f"|{'-' * (w + 2)}|{'-' * 12}|{'-' * 13}|{'-' * 8}|---------|-----|")
    for name, o, t, ratio, target in rows:
        if target == "info":
            met = "-"
        elif target.endswith(" s"):  # a limit in seconds on our figure itself
            met = "yes" if o < float(target.split()[1]) else "NO"
        else:
            goal = float(target.split()[-1])
            met = "yes" if ((ratio <= goal) if target.startswith("<=") else (ratio >= goal)) else "NO"
        print(f"| {name:<{w}} | {o:>10.4g} | {t:>11.4g} | {ratio:>6.3g} | {target:<7} | {met:<3} |")
    if why is not None:
        print(f"\nLucent's render_vis could not run here: {why}")
    print("\n(a) (b) ratio: ours / Lucent. (c) ratio: our final objective / Lucent's (same seeds, same steps). "
          "(d) ratio is the overhead: our median step time / median bare truncated forward+backward at the same "
          "transformed sizes - 1 (bare: on the same folded NHWC copy our step runs on); the floor row: the same work "
          "outside the network timed alone (warm) / bare; the info row: our step / a bare pass on the model as given - 1 "
          "(negative: our whole step is faster than that pass alone). (f): seconds from Start to the first image on the "
          "panel's canvas; beside it one bare truncated forward+backward of one image at the first step's size on the "
          "model as given (cold in a fresh process / warm), the least a first frame can cost; ratio: ours / that.")


if __name__ == "__main__":
    main()
