"""CKA engine vs seed 000's numpy formula applied pair by pair; cost next to the forwards; memory vs n.

    python benchmarks/cka.py [--n 256] [--repeats 3] [--numpy-pairs 120] [--skip-memory] [--only a|b|c]

(a) All L x L pairs of efficientnet_lite0's 16 blocks (``_blocks.N``) over ``sample_batch(256)``.
    The activations are captured once (batch 32, truncated forward) and both sides get the same ones:
    * ours, in memory: ``cka.cka_matrix`` on those activations held as one tensor per layer, as the seed
      holds them (one Gram per layer, BLAS's symmetric product on the CPU, all pairs from one product);
    * ours, streamed: the engine's own streaming code (``cka.similarity_steps``) fed from those activations
      in batches of 32 — "biased" (exact full-batch Kornblith value, the seed's formula) and
      "unbiased" (minibatch CKA);
    * numpy: seed 000's ``linear_CKA`` (n x n centering matrix H, Grams recomputed for every pair).
      All 120 pairs are timed by default (~12 s); with ``--numpy-pairs k`` only k are, and the total is
      extrapolated with a least-squares fit ``t = a + b (p_i + p_j)`` (cost grows with the pair's feature
      sizes). The values of the timed pairs are compared with ours (max |diff|).
    * end-to-end ``layer_similarity`` runs (both estimators) with the probe's prepare/capture timed
      inside the same run: the arithmetic's share = (total - forwards) / forwards. (Timing the
      forwards in a separate run is useless on a shared CPU: runs minutes apart differ by +-40%.)
(b) Channel x channel CKA of resnet18 (random weights) ``layer4`` (512 x 7 x 7) over 64 images:
    arithmetic on captured activations (median) and end to end; the numpy formula on a sample of
    channel pairs, extrapolated to the 130,816 pairs.
(c) Peak memory of ``layer_similarity`` (unbiased, batch 32) for n = 64, 128, 256: each in a fresh
    process, peak RSS (ru_maxrss) minus the peak after the model, one warm-up forward of a batch,
    and the input images were in memory.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import torch

import cnnwidgets as cw
from cnnwidgets.analyses import cka as C
from cnnwidgets.runner import run
from _timing import timed  # benchmarks/_timing.py

BLOCKS = [f"_blocks.{i}" for i in range(16)]


# --- seed 000, verbatim -------------------------------------------------------------------------
def centering(K):
    n = K.shape[0]
    unit = np.ones([n, n])
    I = np.eye(n)
    H = I - unit / n
    return np.dot(np.dot(H, K), H)


def linear_HSIC(X, Y):
    L_X = np.dot(X, X.T)
    L_Y = np.dot(Y, Y.T)
    return np.sum(centering(L_X) * centering(L_Y))


def linear_CKA(X, Y):
    hsic = linear_HSIC(X, Y)
    var1 = np.sqrt(linear_HSIC(X, X))
    var2 = np.sqrt(linear_HSIC(Y, Y))
    return hsic / (var1 * var2)


# --- feeding the engine's own streaming code from activations in memory ---------------------------
class _Stored:
    """Duck-typed ``cka._Source``: gives stored activations per batch instead of running the model."""

    class _P:
        device = torch.device("cpu")

    def __init__(self, acts: dict[str, torch.Tensor], mode: str = "layers"):
        self.acts, self.mode, self.probe = acts, mode, self._P()
        first = next(iter(acts.values()))
        self.names = list(acts) if mode == "layers" else [f"c{c}" for c in range(first.shape[1])]

    def features(self, idx):
        a0, b0 = idx[0], idx[-1] + 1
        if self.mode == "channels":
            a = next(iter(self.acts.values()))[a0:b0]
            return [a.reshape(a.shape[0], a.shape[1], -1).transpose(0, 1)]
        return [t[a0:b0].reshape(1, b0 - a0, -1) for t in self.acts.values()]


def engine(acts, n, estimator, mode="layers", batch=32):
    return run(C.similarity_steps([_Stored(acts, mode)], list(range(n)), batch_size=batch, estimator=estimator)).value


def capture(probe, images, layers, batch=32):
    """Activations of ``layers`` for all images (CPU), and the time of each batch (preprocess + truncated forward)."""
    parts, times = {l: [] for l in layers}, []
    for i in range(0, images.shape[0], batch):
        t = time.perf_counter()
        x = probe.prepare(images[i:i + batch])  # preprocessing counts: the engine does it too
        got = probe.capture(x, layers)
        times.append(time.perf_counter() - t)
        for l in layers:
            parts[l].append(got[l].cpu())
    return {l: torch.cat(v) for l, v in parts.items()}, times


def numpy_pairs(acts, names, pairs):
    out = []
    for i, j in pairs:
        X = acts[names[i]].flatten(1).numpy()  # as seed 000: .cpu().numpy() of the float32 features
        Y = acts[names[j]].flatten(1).numpy()
        t = time.perf_counter()
        v = linear_CKA(X, Y)
        out.append((i, j, time.perf_counter() - t, float(v)))
    return out


def extrapolate(samples, sizes, all_pairs):
    """Least-squares ``t = a + b (p_i + p_j)`` over the timed pairs, summed over all pairs."""
    A = np.array([[1.0, sizes[i] + sizes[j]] for i, j, _, _ in samples])
    t = np.array([s[2] for s in samples])
    coef, *_ = np.linalg.lstsq(A, t, rcond=None)
    return float(sum(coef[0] + coef[1] * (sizes[i] + sizes[j]) for i, j in all_pairs))


def row(name, median, note=""):
    print(f"  {name:<58} {median:>10.3f} s  {note}")


def part_a(args):
    print(f"\n(a) efficientnet_lite0, {len(BLOCKS)} blocks x {len(BLOCKS)} blocks, {args.n} images (sample_batch), CPU, "
          f"{torch.get_num_threads()} threads")
    probe = cw.Probe(cw.load_model(), device="cpu")
    images = cw.sample_batch(args.n)
    acts, fwd_times = capture(probe, images, BLOCKS)
    fwd = sum(fwd_times)
    sizes = [acts[b][0].numel() for b in BLOCKS]
    print(f"    features per image: {sum(sizes):,} floats ({sum(sizes) * 4 / 2**20:.1f} MiB); all images "
          f"{sum(sizes) * 4 * args.n / 2**20:.0f} MiB (never held by the unbiased engine)")
    t_m, res_m, _ = timed(lambda: C.cka_matrix(acts, estimator="biased"), args.repeats)
    t_b, res_b, _ = timed(lambda: engine(acts, args.n, "biased"), args.repeats)
    t_u, res_u, _ = timed(lambda: engine(acts, args.n, "unbiased"), args.repeats)
    pairs = [(i, j) for i in range(len(BLOCKS)) for j in range(i + 1, len(BLOCKS))]
    rng = np.random.default_rng(0)
    pick = [pairs[k] for k in rng.choice(len(pairs), size=min(args.numpy_pairs, len(pairs)), replace=False)]
    pick = sorted(set(pick + [(0, 15), (11, 12)]))  # the largest and a small pair, so the fit spans sizes
    samples = numpy_pairs(acts, BLOCKS, pick)
    t_np = extrapolate(samples, sizes, pairs) if len(samples) < len(pairs) else sum(s[2] for s in samples)
    diff = max(abs(res_b.matrix[i, j] - v) for i, j, _, v in samples)
    diff_m = max(abs(res_m.matrix[i, j] - v) for i, j, _, v in samples)
    e2e = {}
    for est in ("unbiased", "biased"):
        spent, restore = instrument(probe)
        t0 = time.perf_counter()
        res = C.layer_similarity(probe, images, BLOCKS, batch_size=32, estimator=est)
        e2e[est] = (time.perf_counter() - t0, spent[0], res)
        restore()
    print(f"    numpy formula timed on {len(samples)} of {len(pairs)} pairs ({sum(s[2] for s in samples):.1f} s)"
          + (", extrapolated to all pairs by t = a + b (p_i + p_j)" if len(samples) < len(pairs) else ""))
    print(f"    max |ours - numpy| over the timed pairs: in memory {diff_m:.2e}, streamed (biased) {diff:.2e}")
    print(f"    max |end-to-end biased - biased on the same activations|: {np.abs(e2e['biased'][2].matrix - res_b.matrix).max():.2e}")
    print("  what                                                             median")
    row(f"forwards alone ({args.n // 32} x prepare + truncated forward of 32)", fwd, "(one run, sum of batches)")
    row(f"numpy seed 000, all {len(pairs)} pairs" + (" (extrapolated)" if len(samples) < len(pairs) else ""), t_np)
    row("ours, in memory (cka_matrix: one syrk Gram per layer)", t_m, f"-> {t_np / t_m:6.1f}x faster than numpy")
    row("ours, streamed biased (exact full batch), arithmetic", t_b, f"-> {t_np / t_b:6.1f}x faster than numpy")
    row("ours, unbiased (minibatch CKA), arithmetic", t_u, f"-> {t_np / t_u:6.1f}x faster than numpy")
    for est in ("unbiased", "biased"):
        total, spent, _ = e2e[est]
        row(f"ours, layer_similarity end to end ({est})", total,
            f"forwards inside it {spent:.1f} s; CKA arithmetic adds {100 * (total - spent) / spent:.1f}% (one run)")
    gram, cen = ceiling(acts, args.repeats)
    seed_model = 3 * (len(BLOCKS) - 1) * gram + 12 * len(pairs) * cen
    row("one numpy Gram (X @ X.T) per layer, all 16 layers", gram,
        f"seed 000 makes each 3 x 15 = 45 times, + {12 * len(pairs)} centring products of {cen * 1e3:.2f} ms: "
        f"{seed_model:.2f} s -> any exact method is at most {seed_model / gram:.1f}x faster")


def ceiling(acts, repeats):
    """Best-of time of one Gram ``X @ X.T`` per layer (numpy's syrk, as the seed) summed over the layers, and
    of one of the seed's centring products (``H K H``, 256 x 256): what bounds an exact method's gain."""
    xs = [a.flatten(1).numpy() for a in acts.values()]

    def best(f):
        return min(timed(f, max(repeats, 3))[2])

    gram = sum(best(lambda x=x: np.dot(x, x.T)) for x in xs)
    k = np.dot(xs[0], xs[0].T)
    return gram, best(lambda: centering(k))


def instrument(probe):
    """Time spent in the probe's prepare + capture during a run (the rest is the CKA arithmetic)."""
    spent = [0.0]
    orig = {"prepare": probe.prepare, "capture": probe.capture}

    def wrap(fn):
        def inner(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[0] += time.perf_counter() - t
        return inner

    probe.prepare, probe.capture = wrap(orig["prepare"]), wrap(orig["capture"])

    def restore():
        del probe.prepare, probe.capture  # back to the class methods

    return spent, restore


def part_b(args):
    n = 64
    print(f"\n(b) channel x channel: resnet18 (random weights) layer4, 512 x 7 x 7, {n} images")
    probe = cw.Probe(cw.load_model("resnet18", pretrained=False), device="cpu")
    images = cw.sample_batch(n)
    acts, fwd_times = capture(probe, images, ["layer4"])
    t_c, res, _ = timed(lambda: engine(acts, n, "biased", "channels"), args.repeats)
    a = acts["layer4"]
    C_ = a.shape[1]
    pairs = [(0, 1), (5, 300), (511, 17), (100, 101), (42, 420), (7, 77)]
    t0 = time.perf_counter()
    vals = [linear_CKA(a[:, i].flatten(1).numpy(), a[:, j].flatten(1).numpy()) for i, j in pairs]
    per_pair = (time.perf_counter() - t0) / len(pairs)
    diff = max(abs(res.matrix[i, j] - v) for (i, j), v in zip(pairs, vals))
    t0 = time.perf_counter()
    C.channel_similarity(probe, images, "layer4", batch_size=32)
    t_e2e = time.perf_counter() - t0
    total_pairs = C_ * (C_ - 1) // 2
    print(f"    max |ours - numpy| on {len(pairs)} channel pairs: {diff:.2e}; dead channels: {len(res.dead_rows)}")
    print("  what                                                             median")
    row(f"numpy seed 000, {total_pairs:,} pairs (extrapolated from {len(pairs)})", per_pair * total_pairs)
    row("ours, 512 x 512 arithmetic (C x n x n Grams, one matmul)", t_c, f"-> {per_pair * total_pairs / t_c:6.0f}x; target < 2 s")
    row("forwards alone (2 x 32 images)", sum(fwd_times))
    row("ours, channel_similarity end to end", t_e2e, "(one run)")


_MEM_CHILD = r"""
import json, resource, sys, torch
import cnnwidgets as cw
from cnnwidgets.analyses import cka as C
n, batch, est = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
blocks = [f"_blocks.{i}" for i in range(16)]
p = cw.Probe(cw.load_model(), device="cpu")
imgs = cw.sample_batch(n)
p.capture(p.prepare(imgs[:batch]), blocks)        # warm-up: the forward's own working memory
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
C.layer_similarity(p, imgs, blocks, batch_size=batch, estimator=est)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"delta_mib": (peak - base) / 1024, "base_mib": base / 1024, "peak_mib": peak / 1024}))
"""


def part_c(args):
    print("\n(c) peak memory of layer_similarity (16 blocks, batch 32), fresh process each; RSS peak minus the peak "
          "after model + images + one warm-up forward")
    print(f"  {'n':>5} {'estimator':>10} {'peak before':>12} {'peak after':>11} {'extra peak':>11} {'n x n Grams (16, f64)':>22} {'all activations':>16}")
    per_image = 580160 * 4
    for est in ("unbiased",) + (("biased",) if args.memory_biased else ()):
        for n in (64, 128, 256):
            out = subprocess.run([sys.executable, "-c", _MEM_CHILD, str(n), "32", est], capture_output=True, text=True)
            if out.returncode:
                print(out.stderr[-2000:])
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  {n:>5} {est:>10} {r['base_mib']:>8.0f} MiB {r['peak_mib']:>7.0f} MiB {r['delta_mib']:>7.0f} MiB "
                  f"{16 * n * n * 8 / 2**20:>18.1f} MiB {n * per_image / 2**20:>12.0f} MiB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--numpy-pairs", type=int, default=120, help="pairs timed with numpy (fewer: extrapolated)")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--memory-biased", action="store_true", help="also the biased estimator in (c) (holds activations)")
    ap.add_argument("--only", choices=["a", "b", "c"])
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.only in (None, "a"):
        part_a(args)
    if args.only in (None, "b"):
        part_b(args)
    if args.only in (None, "c") and not args.skip_memory:
        part_c(args)


if __name__ == "__main__":
    main()
