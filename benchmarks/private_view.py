"""What "your model stays yours" costs: the Probe's private view against calling the model directly.

    python benchmarks/private_view.py [--runs 15] [--size 224]

Every Probe call runs on a private view of the model (new module objects reading the user's weights, with
their own hooks, eval flag and frozen parameters) and panels compare the weights' fingerprint to know when
their results are stale. Side by side, alternating, medians:

(a) one image's logits: ``model(x)`` on the user's eval-mode model under ``no_grad`` (its parameters still
    require grad: a model being trained), the same forward on the view's modules alone (frozen parameters),
    and ``probe.forward(x, preprocess=False)``: the view's lookup and structure check on top of that forward;
(b) the cost a panel pays per interaction to notice changed weights: ``probe.weights_version()`` (reads every
    bit of every weight once), against the forward it saves when nothing changed;
(c) building a view from scratch (once per thread, again only when a module or a tensor's storage is replaced).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import cnnwidgets as cw
from cnnwidgets import view


def alternate(a, b, runs):
    """Medians of ``a`` and ``b`` run alternately (both see the same machine load)."""
    ta, tb = [], []
    for _ in range(runs):
        for fn, ts in ((a, ta), (b, tb)):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return statistics.median(ta), statistics.median(tb)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--models", default="efficientnet_lite0,resnet50")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; one image 3 x {args.size}^2; "
          f"median of {args.runs} alternating runs")
    rows = []
    for name in args.models.split(","):
        model = cw.load_model(name, pretrained=name == "efficientnet_lite0").eval()
        n = sum(p.numel() for p in model.parameters())
        probe = cw.Probe(model, device="cpu", input_size=args.size)
        x = probe.prepare(cw.sample_image("chelsea"))

        def direct():
            with torch.no_grad():
                return model(x)

        def ours():
            return probe.forward(x, preprocess=False)

        v = probe.view_module("")

        def bare():
            with torch.no_grad():
                return v(x)

        assert torch.allclose(direct(), ours(), atol=1e-4), "the view must give the model's own logits"
        for _ in range(3):  # warm up (oneDNN's first calls)
            direct(), ours(), bare()
        t_direct, t_ours = alternate(direct, ours, args.runs)
        t_bare, t_ours2 = alternate(bare, ours, args.runs)
        t_fp, _ = alternate(probe.weights_version, lambda: None, args.runs)
        mirror = view.Mirror(torch.device("cpu"))
        t_build, _ = alternate(lambda: view.build(model, mirror), lambda: None, max(3, args.runs // 3))
        rows.append((f"{name} ({n / 1e6:.1f} M params)", t_direct, t_bare, t_ours2 / t_bare - 1, t_ours,
                     t_fp, t_build))
    print()
    print(f"{'model':<32} {'model(x)':>10} {'view(x)':>10} {'probe':>10} {'probe/view':>10} {'probe/model':>11} "
          f"{'fingerprint':>12} {'fp/probe':>9} {'view build':>11}")
    for name, td, tv, over, to, tf, tb in rows:
        print(f"{name:<32} {td * 1e3:>8.1f}ms {tv * 1e3:>8.1f}ms {to * 1e3:>8.1f}ms {over:>+9.1%} {to / td:>10.2f}x "
              f"{tf * 1e3:>10.2f}ms {tf / to:>8.1%} {tb * 1e3:>9.1f}ms")
    print("\nprobe/view: what the Probe adds to the same forward (view lookup, structure check, output). "
          "probe/model: against the user's own call.\nfp/probe: what noticing changed weights costs a panel, as a "
          "share of the forward it saves. view build: once per thread, again after a module or storage is replaced.")


if __name__ == "__main__":
    main()
