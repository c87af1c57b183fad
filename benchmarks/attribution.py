"""SmoothGrad (50 samples) and Integrated Gradients (50 steps): batched vs a per-sample Python loop.

    python benchmarks/attribution.py [--repeats 2] [--vgg-repeats 1] [--vgg-size 112]

Time per map on the CPU (median of the runs) for efficientnet_lite0 (ImageNet weights, 224 px) and
vgg16 (random weights; 112 px by default and one run, because one vgg16 backward at 224 px takes
about a second on a small CPU). Both variants go through ``cnnwidgets.attribution.attribute``: the
batched one with ``batch_size=25`` (SmoothGrad: 25 noisy copies per backward; IG: Captum's
``internal_batch_size``), the loop with ``batch_size=1`` (one forward/backward per sample/step).
The maps of both are compared (relative L2 difference), so the speed-up is for the same result.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import cnnwidgets as cw
from cnnwidgets.analyses import attribution as A
from _timing import timed  # benchmarks/_timing.py


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--vgg-repeats", type=int, default=1)
    ap.add_argument("--vgg-size", type=int, default=112)
    ap.add_argument("--batch", type=int, default=25)
    args = ap.parse_args()
    image = cw.sample_image("chelsea")
    cases = [
        ("efficientnet_lite0", cw.Probe(cw.load_model(), device="cpu"), args.repeats),
        ("vgg16 (random)", cw.Probe(cw.load_model("vgg16", pretrained=False), device="cpu", input_size=args.vgg_size),
         args.vgg_repeats),
    ]
    methods = [("SmoothGrad, 50 samples", "smoothgrad", {"samples": 50}),
               ("Integrated Gradients, 50 steps", "integrated_gradients", {"steps": 50})]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; batch {args.batch} vs loop (batch 1)")
    head = f"{'model':<20} {'input':>7} {'method':<31} {'runs':>4} {'batched s/map':>14} {'loop s/map':>11} {'speed-up':>9} {'rel. diff':>10}"
    print(head)
    print("-" * len(head))
    for name, probe, reps in cases:
        A.attribute(probe, image, "saliency")  # warm-up
        size = "×".join(map(str, probe.transform.input_size))
        for label, method, opts in methods:
            tb, a, _ = timed(lambda: A.attribute(probe, image, method, batch_size=args.batch, **opts), reps)
            tl, b, _ = timed(lambda: A.attribute(probe, image, method, batch_size=1, **opts), reps)
            diff = np.linalg.norm(a.raw - b.raw) / max(np.linalg.norm(b.raw), 1e-12)
            print(f"{name:<20} {size:>7} {label:<31} {reps:>4} {tb:>14.2f} {tl:>11.2f} {tl / tb:>8.2f}x {diff:>10.1e}",
                  flush=True)


if __name__ == "__main__":
    main()
