"""How long the Python side of a FeatureMaps slider move takes, against seed 000/003's matplotlib grid.

    python benchmarks/featuremaps.py [--runs 15] [--alt-runs 3]

"ours": ``fm.layer = name`` on a live panel (efficientnet_lite0, CPU, activations already cached
for the image): channel order, dead channels, normalise, colorize, mosaic, PNG bytes for the grid
and the large view, widget updates. "matplotlib": what the blog posts do with the same cached
activations: one subplot per channel (``plt.subplot`` + ``imshow``, axes off) and ``savefig`` to
PNG bytes at the default 100 dpi, for the same channels our page shows (at most 256).
"""
from __future__ import annotations

import argparse
import io
import math
import statistics
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import cnnwidgets as cw  # noqa: E402
from cnnwidgets.widgets.featuremaps import FeatureMaps  # noqa: E402


def matplotlib_grid(maps: torch.Tensor) -> bytes:
    """Seed 000/003: a grid of subplots, one imshow per channel, saved as PNG bytes."""
    n = maps.shape[0]
    cols = int(2 ** math.ceil(math.log2(math.sqrt(n)))) if n > 1 else 1
    rows = math.ceil(n / cols)
    fig = plt.figure(figsize=(cols * 0.8, rows * 0.8))
    for i in range(n):
        ax = plt.subplot(rows, cols, i + 1)
        ax.imshow(maps[i].numpy(), cmap="viridis")
        ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--alt-runs", type=int, default=3)
    args = ap.parse_args(argv)

    probe = cw.Probe(cw.load_model(), device="cpu")
    image = cw.sample_image("chelsea")
    t = time.perf_counter()
    fm = FeatureMaps(probe, image)  # one forward caches all 49 conv layers for the image
    build = (time.perf_counter() - t) * 1000
    layers = {"early": probe.layers[0], "mid": probe.layers[len(probe.layers) // 2], "late": probe.layers[-1]}
    names = [l.name for l in layers.values()]
    for n in names:  # warm up
        fm.layer = n

    print(f"efficientnet_lite0 on {probe.device}, torch threads {torch.get_num_threads()}, "
          f"python {sys.version.split()[0]}; panel built (incl. the forward) in {build:.0f} ms")
    header = f"{'layer':<8}{'name':<26}{'shape':<13}{'tiles':>6}{'ours ms':>10}{'matplotlib ms':>15}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for key, layer in layers.items():
        other = names[(names.index(layer.name) + 1) % len(names)]

        def move():
            fm.layer = other  # not timed: a move away, so each timed move is a real change
            t0 = time.perf_counter()
            fm.layer = layer.name
            return (time.perf_counter() - t0) * 1000

        ours = statistics.median(move() for _ in range(args.runs))
        acts = probe.activations(image, layer.name)[0]
        chans = fm.visible_channels[list(fm.plan.page(0))]
        maps = acts[torch.as_tensor(chans)]
        alt = median_ms(lambda: matplotlib_grid(maps), args.alt_runs)
        shape = "×".join(map(str, layer.shape))
        print(f"{key:<8}{layer.name:<26}{shape:<13}{len(chans):>6}{ours:>10.1f}{alt:>15.0f}{alt / ours:>7.0f}×")
    print(f"\nmedians of {args.runs} slider moves (ours) and {args.alt_runs} renders (matplotlib); "
          f"target: ours < 50 ms per move")


if __name__ == "__main__":
    main()
