"""What watching costs: a small CNN trained on the CPU with and without cw.Monitor at its default settings.

    python benchmarks/monitor.py [--steps 600] [--repeats 5] [--images 64] [--tiny]

The same training run (scikit-learn's digits upsampled to 28x28, the course's small CNN, batches of 64, SGD with
momentum, a fixed seed) is timed without a monitor and with ``cw.Monitor(probe, image, images=64 digits)`` at its
defaults (a snapshot every second, at most ~5% of the time; a redraw every 0.5 s), alternately, so both see the
same machine load; medians and their ratio. The runs with the monitor must give the same losses bit for bit.

In a script the panels have no front end, so a redraw sets traits but sends no message; the time of a redraw is
printed apart (the frames a notebook would send are those same traits, serialized), and the share of snapshots and
redraws in the monitored run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import cnnwidgets as cw


def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    return x, torch.tensor(d.target)


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.cnn = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        return self.fc(self.cnn(x).flatten(1))


def run(x, y, steps, images, watch: bool, **monitor_kwargs):
    """One training run from the same start: (seconds, losses, monitor or None)."""
    torch.manual_seed(0)
    model = SmallCNN()
    mon = None
    t0 = time.perf_counter()
    if watch:
        probe = cw.Probe(model, input_size=28, mean=0, std=1, device="cpu")
        mon = cw.Monitor(probe, image=x[0], images=x[:images], **monitor_kwargs)
    inside = time.perf_counter() - t0  # time spent in the monitor's calls (constructor, step, finish)
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    losses = []
    for _ in range(steps):
        i = torch.randint(0, len(x), (64,), generator=g)
        opt.zero_grad()
        loss = F.cross_entropy(model(x[i]), y[i])
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if mon is not None:
            t = time.perf_counter()
            mon.step(loss=loss)
            inside += time.perf_counter() - t
    if mon is not None:
        t = time.perf_counter()
        mon.finish()
        inside += time.perf_counter() - t
        mon.inside = inside
    return time.perf_counter() - t0, losses, mon


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--images", type=int, default=64, help="probe images (dead units, CKA)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--tiny", action="store_true", help="seconds, for the tests: 30 steps, one repeat, one thread")
    args = ap.parse_args()
    if args.tiny:
        args.steps, args.repeats, args.threads = 30, 1, args.threads or 1
    if args.threads:
        torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    x, y = digits()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; small CNN on 28x28 digits, batch 64, "
          f"{args.steps} steps; monitor defaults, {args.images} probe images; median of {args.repeats} alternated runs")
    warm = min(20, args.steps)
    run(x, y, warm, args.images, False), run(x, y, warm, args.images, True)  # warm up
    plain, watched, mons, same = [], [], [], True
    for _ in range(args.repeats):
        t, ref, _ = run(x, y, args.steps, args.images, False)
        plain.append(t)
        t, got, mon = run(x, y, args.steps, args.images, True)
        watched.append(t)
        mons.append(mon)
        same = same and got == ref
    mp, mw = statistics.median(plain), statistics.median(watched)
    mon = mons[len(mons) // 2]
    snaps = len(mon.history)
    # one snapshot and one redraw, timed apart
    snap_t, draw_t = [], []
    for _ in range(5):
        t = time.perf_counter()
        mon.recorder.snapshot(args.steps + 1)
        snap_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        mon.draw()
        draw_t.append(time.perf_counter() - t)
    print()
    print(f"{'':<34} {'without':>10} {'with Monitor':>13} {'with/without':>13}")
    print(f"{'training run, median':<34} {mp:>9.2f}s {mw:>12.2f}s {mw / mp:>12.3f}x")
    print(f"{'per step':<34} {1e3 * mp / args.steps:>8.2f}ms {1e3 * mw / args.steps:>11.2f}ms")
    inside = statistics.median(m.inside for m in mons)
    print(f"  overhead: {100 * (mw / mp - 1):+.1f}% (target: at most +10%); time inside the monitor's calls: "
          f"{inside:.3f}s, {100 * inside / mp:.1f}% of the run without it")
    print(f"  losses bit for bit the same with and without: {same}")
    print(f"  snapshots in a run: {snaps} (the first at the start); one snapshot {1e3 * statistics.median(snap_t):.1f} ms, "
          f"one redraw {1e3 * statistics.median(draw_t):.1f} ms; redraws in a run: {mon.draws}")
    print(f"  all times: without {[round(t, 2) for t in plain]}, with {[round(t, 2) for t in watched]}")
    print(f"\ntotal {time.perf_counter() - t_start:.0f}s")
    if not same:
        raise SystemExit("the monitor changed the training")


if __name__ == "__main__":
    main()
