"""Progressive attribution vs one-shot: what does streaming partial maps cost the final map, and how soon does Stop act?

    python benchmarks/attribution.py [--size 224] [--repeats 3] [--stops 3] [--methods smoothgrad,lime]
    python benchmarks/attribution.py --tiny        # seconds: tiny settings, only to check that it runs

For SmoothGrad, Integrated Gradients, occlusion and LIME at the Saliency panel's defaults (``DEFAULTS``) on
efficientnet_lite0 (ImageNet weights) on the CPU, each repeat times, in turn (so drift hits them alike):

* progressive: ``attribute_steps`` to its end, as the panel runs it (a partial map after each chunk of about a
  second, a stop event checked at every layer; the time to the final map);
* one-shot: Captum's own call on the same settings and the same draws: ``Saliency`` on the same noisy copies
  in batches of 25 (what ``NoiseTunnel`` does), ``IntegratedGradients(internal_batch_size=25)``,
  ``Occlusion(perturbations_per_eval=32)``, ``Lime(perturbations_per_eval=32)``; with the same setup (the
  prediction forward, the baseline, the superpixels);
* bare: the model's forwards (with backwards for the gradient methods) on the same number of images in batches
  of 25 / 32 and nothing else: the physical limit.

Each repeat runs the three in turn, the order reversed every other repeat. On a machine shared with other work
the wall clock of one run can double from one second to the next, so each time is given as the best (the cost
without interference) and the median of the repeats; ``prog/one`` is the ratio progressive / one-shot of the
best times and, in brackets, the median of the repeats' ratios (target <= 1.10); ``prog/bare`` the same against
the bare forwards. ``rel. diff``: the relative L2 difference of the two final maps. ``max gap``: the longest time
between two partial maps (what a loop over ``attribute_steps`` that breaks waits at most). Stop: with
``--stops N``, N Stops of the job in a Runner thread ``--stop-at`` of the way through it, as the panel stops
it (the job's ``stop`` event, which interrupts it inside its chunk): median and max of the time from Stop to the
job's end.
"""
from __future__ import annotations

import argparse
import statistics
import threading
import time

import numpy as np
import torch

import cnnwidgets as cw
from cnnwidgets.analyses import attribution as A
from cnnwidgets.runner import Runner

GRADIENT = ("smoothgrad", "integrated_gradients")


def setup(probe, image):
    x = A.pixels(probe, image)
    fn = probe.pixel_model()
    with torch.no_grad():
        target = int(fn(x)[0].argmax())
    return x, fn, target


def one_shot(probe, image, method, o):
    """The map as Captum computes it in one call (same settings and draws), after the same setup."""
    from captum.attr import IntegratedGradients, Lime, Occlusion, Saliency

    x, fn, t = setup(probe, image)
    with A.guarded(fn):
        if method == "smoothgrad":
            noisy = A.smoothgrad_noise(x, o["samples"], o["noise"], o["seed"])
            g = torch.cat([Saliency(fn).attribute(noisy[i:i + 25].clone().requires_grad_(), target=t, abs=False)
                           for i in range(0, o["samples"], 25)])
            return g.mean(0)
        if method == "integrated_gradients":
            base = A.make_baseline(probe, x, o["baseline"], o["seed"])
            return IntegratedGradients(fn).attribute(x, baselines=base, target=t, n_steps=o["steps"], method=o["approximation"],
                                                     internal_batch_size=25, return_convergence_delta=True)[0][0]
        if method == "occlusion":
            c, w, s = x.shape[1], o["window"], o["stride"]
            return Occlusion(fn).attribute(x, sliding_window_shapes=(c, w, w), strides=(c, s, s), target=t,
                                           baselines=A.make_baseline(probe, x, o["baseline"]), perturbations_per_eval=32)[0]
        from captum._utils.models.linear_model import SkLearnRidge
        from captum.attr._core.lime import get_exp_kernel_similarity_function

        seg = A.superpixels(x[0].cpu().numpy(), o["segments"], o["segmentation"])
        z = iter(A.lime_choices(o["samples"], int(seg.max()) + 1, torch.Generator().manual_seed(o["seed"])))
        lime = Lime(fn, interpretable_model=SkLearnRidge(alpha=1.0),
                    similarity_func=get_exp_kernel_similarity_function("cosine", kernel_width=0.25),
                    perturb_func=lambda inp, **kw: next(z)[None].long())
        mask = torch.as_tensor(seg)[None, None].expand(1, x.shape[1], *seg.shape).contiguous()
        return lime.attribute(x, target=t, feature_mask=mask, baselines=A.make_baseline(probe, x, o["baseline"]),
                              n_samples=o["samples"], perturbations_per_eval=32)[0]


def bare(probe, image, method, n):
    """``n`` forwards (and backwards for gradient methods) of the image, batched, nothing else."""
    x, fn, t = setup(probe, image)
    bs = 25 if method in GRADIENT else 32
    for i in range(0, n, bs):
        xb = x.expand(min(bs, n - i), -1, -1, -1).clone()
        if method in GRADIENT:
            xb.requires_grad_()
            with torch.enable_grad():
                torch.autograd.grad(fn(xb)[:, t].sum(), xb)
        else:
            with torch.no_grad():
                fn(xb)


def progressive(probe, image, method, o):
    """``attribute_steps`` to its end, with a stop event as the panel gives it (each layer checks it): (final raw
    map, longest gap between two Steps, number of Steps)."""
    t = time.perf_counter()
    gaps, last = [], None
    for last in A.attribute_steps(probe, image, method, stop=threading.Event(), **o):
        now = time.perf_counter()
        gaps.append(now - t)
        t = now
    return last.value.raw, max(gaps), len(gaps)


def stop_latency(probe, image, method, o, after: float) -> float:
    """Seconds from Stop to the end of the job, in a Runner thread stopped ``after`` seconds into it as the Saliency
    panel stops it (the job's ``stop`` event, then the Runner); NaN when the job had ended before."""
    stop = threading.Event()
    r = Runner(A.attribute_steps(probe, image, method, stop=stop, **o), lambda item, final: None, mode="thread")
    r.start()
    time.sleep(after)
    if not r.running:
        return float("nan")
    t = time.perf_counter()
    stop.set()
    r.stop()
    r.join()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stops", type=int, default=3, help="real Stops per method (0: none)")
    ap.add_argument("--stop-at", type=float, default=0.5, help="when Stop is pressed, as a fraction of the job's best time")
    ap.add_argument("--methods", default="smoothgrad,integrated_gradients,occlusion,lime")
    ap.add_argument("--tiny", action="store_true", help="64 px, a few samples, one repeat: checks that it runs")
    args = ap.parse_args()
    methods = args.methods.split(",")
    opts = {m: dict(A.DEFAULTS[m]) for m in methods}
    tiny = {"smoothgrad": {"samples": 4}, "integrated_gradients": {"steps": 4}, "occlusion": {"window": 32, "stride": 32},
            "lime": {"samples": 12, "segments": 8}}
    if args.tiny:
        args.size, args.repeats, args.stops = 64, 1, 1
        for m in methods:
            opts[m].update(tiny.get(m, {}))
    probe = cw.Probe(cw.load_model(), device="cpu", input_size=args.size)
    image = cw.sample_image("chelsea")
    for m in methods:  # warm-up: imports (scikit-learn, scikit-image) and first calls, untimed
        small = {**opts[m], **tiny.get(m, {})}
        progressive(probe, image, m, small)
        one_shot(probe, image, m, small)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; efficientnet_lite0 at {args.size} px; "
          f"best and median of {args.repeats} repeats; chunks of ~{A.base.CHUNK_SECONDS}-{A.base.CHUNK_SECONDS_MAX} s")
    head = (f"{'method':<22} {'settings':<34} {'progressive s':>14} {'one-shot s':>12} {'bare s':>12} "
            f"{'prog/one':>14} {'prog/bare':>14} {'rel. diff':>9} {'partial maps':>12} {'max gap s':>9} {'Stop s':>12}")
    print(head)
    print(f"{'':<57} {'best (median)':>14} {'best (med.)':>12} {'best (med.)':>12} {'best (median)':>14} "
          f"{'best (median)':>14} {'':>9} {'':>12} {'':>9} {'median (max)':>12}")
    print("-" * len(head))
    for m in methods:
        o = opts[m]
        n = A.get(m).total(o, A.pixels(probe, image))
        settings = ", ".join(f"{k} {v}" for k, v in o.items() if k not in ("batch_size", "seed", "approximation"))
        runs = {"progressive": lambda: progressive(probe, image, m, o), "one-shot": lambda: one_shot(probe, image, m, o),
                "bare": lambda: bare(probe, image, m, n)}
        wall = {k: [] for k in runs}
        out = {}
        for r in range(args.repeats):
            for k in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
                t = time.perf_counter()
                out[k] = runs[k]()
                wall[k].append(time.perf_counter() - t)
        raw, gap, count = out["progressive"]
        ref = out["one-shot"].detach().cpu().numpy()
        diff = np.linalg.norm(raw - ref) / max(np.linalg.norm(ref), 1e-12)
        best = {k: min(v) for k, v in wall.items()}
        stops = [stop_latency(probe, image, m, o, args.stop_at * best["progressive"]) for _ in range(args.stops)]
        stops = [x for x in stops if x == x]  # the runs that were still going
        med = {k: statistics.median(v) for k, v in wall.items()}
        paired = lambda a, b: statistics.median(x / y for x, y in zip(wall[a], wall[b]))  # noqa: E731
        stop = f"{statistics.median(stops):.2f} ({max(stops):.2f})" if stops else "-"
        cell = lambda k: f"{best[k]:.2f} ({med[k]:.2f})"  # noqa: E731
        ratio = lambda a, b: f"{best[a] / best[b]:.2f}x ({paired(a, b):.2f}x)"  # noqa: E731
        print(f"{A.LABELS[m]:<22} {settings[:34]:<34} {cell('progressive'):>14} {cell('one-shot'):>12} {cell('bare'):>12} "
              f"{ratio('progressive', 'one-shot'):>14} {ratio('progressive', 'bare'):>14} {diff:>9.1e} {count:>12} "
              f"{gap:>9.2f} {stop:>12}", flush=True)
    print("prog/one: progressive / one-shot time to the final map (target <= 1.10); max gap: of the last repeat; "
          "Stop latency: seconds from Stop to the job's end")


if __name__ == "__main__":
    main()
