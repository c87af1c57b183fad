"""Truncated vs full forward+backward, and the Probe's activation cache.

    python benchmarks/truncated_forward.py [--runs 5] [--batch 8] [--size 224]

Gradient work (saliency at a layer, dreams, channel visualisation) needs d(layer output)/d(input).
A truncated forward stops right after that layer, so the rest of the network is never run. Each
row times ``probe.capture(x, layer, grad=True, truncate=...)`` + ``.mean().backward()`` with
truncation on and off, alternating, and reports medians and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import cnnwidgets as cw


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def forward_backward(probe, x, layer, truncate):
    def run():
        xi = x.detach().clone().requires_grad_(True)
        out = probe.capture(xi, layer, grad=True, truncate=truncate)[layer]
        out.mean().backward()
        assert xi.grad is not None
    return run


def bench_truncation(name, probe, x, runs):
    n = len(probe.layers)
    rows = []
    for where, i in (("early", n // 8), ("middle", n // 2), ("late", n - 1)):
        layer = probe.layers[i].name
        short, full = forward_backward(probe, x, layer, True), forward_backward(probe, x, layer, False)
        short(), full()  # warm up
        ts, tf = [], []
        for _ in range(runs):  # alternate, so both see the same machine load
            ts.append(timed(short))
            tf.append(timed(full))
        ms, mf = statistics.median(ts), statistics.median(tf)
        rows.append((name, f"{where} [{i}] {layer}", ms, mf, mf / ms))
    return rows


def bench_cache(probe, runs):
    layer = probe.layers[len(probe.layers) // 2].name
    imgs = list(cw.sample_images().values())
    cold, warm = [], []
    for r in range(runs):
        img = imgs[r % len(imgs)]
        probe.cache.clear()
        cold.append(timed(lambda: probe.activations(img, layer)))
        warm.append(timed(lambda: probe.activations(img, layer)))
    return layer, statistics.median(cold), statistics.median(warm)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    t_start = time.perf_counter()
    torch.manual_seed(0)
    models = {
        "efficientnet_lite0": cw.load_model("efficientnet_lite0"),
        "vgg16 (random)": cw.load_model("vgg16", pretrained=False),
    }
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {args.batch} x 3 x {args.size}^2; "
          f"median of {args.runs} runs")
    rows = []
    for name, model in models.items():
        probe = cw.Probe(model, input_size=args.size)
        x = probe.prepare(cw.sample_batch(args.batch, args.size))
        print(f"  device {probe.device}")
        rows += bench_truncation(name, probe, x, args.runs)
        if name.startswith("efficientnet"):
            cache_row = bench_cache(probe, args.runs)
    print()
    print("Forward+backward to the input, gradient of the layer's mean")
    print(f"{'model':<20} {'layer':<40} {'truncated':>10} {'full':>10} {'full/trunc':>10}")
    for name, layer, ms, mf, ratio in rows:
        print(f"{name:<20} {layer[:40]:<40} {ms * 1e3:>8.1f}ms {mf * 1e3:>8.1f}ms {ratio:>9.2f}x")
    layer, cold, warm = cache_row
    print()
    print("Probe.activations(one image, one layer): cold (computed) vs cached")
    print(f"{'model':<20} {'layer':<40} {'cold':>10} {'cached':>10} {'cold/cached':>11}")
    print(f"{'efficientnet_lite0':<20} {layer[:40]:<40} {cold * 1e3:>8.1f}ms {warm * 1e3:>8.3f}ms {cold / warm:>10.0f}x")
    print(f"\ntotal {time.perf_counter() - t_start:.0f}s")


if __name__ == "__main__":
    main()
