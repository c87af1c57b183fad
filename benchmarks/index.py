"""cw.index throughput against the truncated forward alone and a plain hook loop; memory vs n; 1 vs 2 processes.

    flock /tmp/heavy.lock python benchmarks/index.py [--n 2000] [--size 224] [--batch 32] [--models efficientnet_lite0 resnet18]
        [--sets deep early] [--mem-n 500 4000] [--mem-size 128] [--procs-n 256] [--device cpu|cuda] [--only a|b|c] [--tiny]

Images: a Dataset that cuts ``--size`` px crops (random position, flip) out of the scikit-image photographs, one item at
a time (nothing is held), as uint8 tensors; every pipeline reads it through ``cw.image_set(...).batches`` and
``probe.prepare``. Models with random weights (seed 0).

(a) Images/s over ``--n`` images, per model and layer set (``deep``: four layers spread up to the last block;
    ``early``: two early layers), three pipelines interleaved batch by batch (so that the load of a shared machine
    falls on all three alike; each batch's order rotates):
    * ours: ``cw.index.build_steps`` (top 16 by max and by mean with the peak's position, statistics);
    * the limit: the same batches read and prepared, and ``probe.capture(x, layers)`` (the truncated forward) alone;
    * the plain loop: forward hooks on the full model keeping every activation (``output.detach().cpu()``), then per
      layer ``torch.cat``, max/mean over space and ``topk`` over the images (timed, added). Both give the same top-k
      scores for every channel (checked; the order of tied images differs: ours puts the smaller position first).
    * with ``--folded``: ours on ``probe.folded()`` (each BatchNorm folded into its convolution: the same maps up to
      rounding, a faster forward on some models), interleaved with the others.
    Targets: ours within 15% of the limit; at least 2x the plain loop.
(b) Peak memory of ``cw.index.build`` for each ``--mem-n`` (fresh processes, ``--mem-size`` px, the deep layers of the
    first model): peak RSS minus the peak after the model and a warm-up index of three batches. Next to it the
    activations the plain loop would keep.
(c) 1 process (torch's threads on every core) against ``torchrun --nproc_per_node 2`` (one thread each) over
    ``--procs-n`` images: wall time from the first image to the merged index, images/s.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

import cnnwidgets as cw

K = 16
SETS = {
    "efficientnet_lite0": {"deep": ["_blocks.2", "_blocks.5", "_blocks.10", "_blocks.15"], "early": ["_blocks.1", "_blocks.3"]},
    "resnet18": {"deep": ["layer1", "layer2", "layer3", "layer4"], "early": ["layer1.0", "layer1"]},
}


class Crops(torch.utils.data.Dataset):
    """``n`` crops of ``size`` px of the bundled photographs (uint8 ``3 x size x size``), made when read."""

    def __init__(self, n: int, size: int):
        from cnnwidgets.images import to_tensor

        self.n, self.size = n, size
        self.photos = [(to_tensor(p) * 255).to(torch.uint8) for p in cw.sample_images().values()]

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        p = self.photos[i % len(self.photos)]
        h, w = p.shape[-2:]
        s = min(self.size, h, w)
        y = int(torch.randint(0, h - s + 1, (1,), generator=g))
        x = int(torch.randint(0, w - s + 1, (1,), generator=g))
        c = p[:, y:y + s, x:x + s]
        if torch.rand(1, generator=g) < 0.5:
            c = c.flip(-1)
        if s != self.size:
            c = torch.nn.functional.interpolate(c[None].float(), size=(self.size, self.size), mode="bilinear")[0].to(torch.uint8)
        return c


def make_probe(name: str, size: int, device: str):
    torch.manual_seed(0)
    return cw.Probe(cw.load_model(name, pretrained=False), device=device, input_size=size)


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


class Plain:
    """The obvious loop: hooks on the full model, every activation kept, then a top-k over the images."""

    def __init__(self, model, layers):
        self.model, self.layers = model, layers
        self.acts = {l: [] for l in layers}
        mods = dict(model.named_modules())
        self.handles = [mods[l].register_forward_hook(self._hook(l)) for l in layers]

    def _hook(self, name):
        def fn(module, inputs, output):
            self.acts[name].append(output.detach().cpu())
        return fn

    def step(self, x):
        with torch.no_grad():
            self.model(x)

    def topk(self):
        out = {}
        for l in self.layers:
            a = torch.cat(self.acts[l])
            self.acts[l] = []
            f = a.flatten(2)
            mx, arg = f.max(-1)
            mean = f.mean(-1)
            k = min(K, a.shape[0])
            s1, i1 = mx.topk(k, dim=0)
            s2, i2 = mean.topk(k, dim=0)
            out[l] = (s1, i1, torch.gather(arg, 0, i1), s2, i2)
            del a, f
        return out

    def close(self):
        for h in self.handles:
            h.remove()


def part_a(args):
    print(f"(a) images/s over {args.n} images of {args.size} px, batch {args.batch}, top {K}, {args.device} "
          f"({torch.get_num_threads()} threads); pipelines interleaved batch by batch")
    print(f"  {'model':<19} {'layers':<6} {'ours':>8} {'limit':>8} {'plain':>8}   {'ours/limit':>10} {'ours/plain':>10}")
    rows = []
    for name in args.models:
        probe = make_probe(name, args.size, args.device)
        fprobe = probe.folded() if args.folded else None
        model = probe.model.to(args.device).eval()
        for which in args.sets:
            layers = SETS[name][which]
            ds = Crops(args.n, args.size)
            gen = cw.index.build_steps(probe, ds, layers, k=K, batch_size=args.batch)
            fgen = cw.index.build_steps(fprobe, ds, layers, k=K, batch_size=args.batch) if args.folded else None
            reader = cw.image_set(ds).batches(args.batch)
            plain = Plain(model, layers)
            t = {"ours": 0.0, "limit": 0.0, "plain": 0.0, **({"folded": 0.0} if args.folded else {})}
            last = flast = None
            try:
                for i, batch in enumerate(reader):
                    def ours():
                        nonlocal last
                        last = next(gen)

                    def limit():
                        probe.capture(probe.prepare(batch.images), layers)

                    def loop():
                        plain.step(probe.prepare(batch.images))

                    def folded():
                        nonlocal flast
                        flast = next(fgen)

                    jobs = [("ours", ours), ("limit", limit), ("plain", loop)] + ([("folded", folded)] if fgen else [])
                    for key, fn in jobs[i % len(jobs):] + jobs[:i % len(jobs)]:
                        sync(args.device)
                        t0 = time.perf_counter()
                        fn()
                        sync(args.device)
                        t[key] += time.perf_counter() - t0
                t0 = time.perf_counter()
                for last in gen:  # the final step (the index as a whole)
                    pass
                t["ours"] += time.perf_counter() - t0
                if fgen is not None:
                    t0 = time.perf_counter()
                    for flast in fgen:
                        pass
                    t["folded"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                res = plain.topk()
                t["plain"] += time.perf_counter() - t0
            finally:
                plain.close()
            ix = last.value
            assert ix.num_images == args.n, ix
            same = all(torch.equal(torch.from_numpy(ix.top_arrays(l, "max")["score"]), res[l][0].T) and
                       torch.equal(torch.from_numpy(ix.top_arrays(l, "mean")["score"]), res[l][3].T) for l in layers)
            ips = {k2: args.n / v for k2, v in t.items()}
            rows.append((name, which, ips))
            print(f"  {name:<19} {which:<6} {ips['ours']:8.1f} {ips['limit']:8.1f} {ips['plain']:8.1f}   "
                  f"{ips['ours'] / ips['limit']:10.3f} {ips['ours'] / ips['plain']:10.2f}"
                  f"   (every channel's top-{K} scores, by max and by mean, same as the plain loop's: {same})")
            if fgen is not None:
                print(f"  {'':<19} {'':<6} on probe.folded() (BatchNorms folded into the convolutions): "
                      f"{ips['folded']:.1f} images/s, {ips['folded'] / ips['limit']:.2f}x the limit, "
                      f"{ips['folded'] / ips['plain']:.2f}x the plain loop")
    print("  ours/limit: target >= 0.87 (within 15% of the truncated forward alone); ours/plain: target >= 2")
    return rows


_MEM_CHILD = r"""
import json, resource, sys, torch
sys.path.insert(0, sys.argv[6])
import cnnwidgets as cw
from index import Crops, make_probe, SETS
n, size, batch, name, device = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
probe = make_probe(name, size, device)
layers = SETS[name]["deep"]
ds = Crops(n, size)
cw.index.build(probe, Crops(3 * batch, size), layers, k=16, batch_size=batch)   # warm-up: forwards and an index
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
ix = cw.index.build(probe, ds, layers, k=16, batch_size=batch)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
acts = sum(int(torch.tensor(probe.layer(l).shape).prod()) * 4 for l in layers) * n
print(json.dumps({"n": ix.num_images, "base_mib": base / 1024, "extra_mib": (peak - base) / 1024, "acts_mib": acts / 2**20}))
"""


def part_b(args):
    name = args.models[0]
    print(f"\n(b) peak memory of cw.index.build, {name} deep layers, {args.mem_size} px, batch {args.batch} "
          "(fresh process each)")
    print(f"  {'images':>7} {'extra peak MiB':>15} {'(after model + warm-up MiB)':>28} {'plain loop keeps MiB':>21}")
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    for n in args.mem_n:
        r = subprocess.run([sys.executable, "-c", _MEM_CHILD, str(n), str(args.mem_size), str(args.batch), name,
                            args.device, here], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(r.stderr[-2000:])
        d = json.loads(r.stdout.strip().splitlines()[-1])
        out.append(d)
        print(f"  {d['n']:>7} {d['extra_mib']:>15.1f} {d['base_mib']:>28.0f} {d['acts_mib']:>21.0f}")
    print(f"  flat: {out[-1]['extra_mib'] - out[0]['extra_mib']:+.1f} MiB from {out[0]['n']} to {out[-1]['n']} images")
    return out


def worker(args):
    """One process of part (c), in one process or under torchrun."""
    from cnnwidgets import distributed as D

    w = D.init()
    dev = args.device if w.size == 1 else str(D.device())
    probe = make_probe(args.models[0], args.size, dev)
    layers = SETS[args.models[0]]["deep"]
    ds = Crops(args.procs_n, args.size)
    cw.index.build(probe, Crops(args.batch, args.size), layers, k=K, batch_size=args.batch)  # warm-up
    D.barrier()
    t0 = time.perf_counter()
    ix = D.build_index(probe, ds, layers, k=K, batch_size=args.batch)
    dt = time.perf_counter() - t0
    if w.rank == 0:
        print(json.dumps({"world": w.size, "threads": torch.get_num_threads(), "n": ix.num_images, "s": dt}))
    if w.size > 1:
        torch.distributed.destroy_process_group()


def part_c(args):
    print(f"\n(c) {args.models[0]} deep layers over {args.procs_n} images of {args.size} px, batch {args.batch}, "
          f"{args.device}: one process against two (torchrun, gloo{'/nccl' if args.device.startswith('cuda') else ''})")
    base = [__file__, "--worker", "--models", args.models[0], "--size", str(args.size), "--batch", str(args.batch),
            "--procs-n", str(args.procs_n), "--device", args.device]
    res = []
    for cmd, env in (([sys.executable] + base, {}),
                     ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] + base,
                      {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // 2))})):
        r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, **env))
        if r.returncode:
            raise RuntimeError(r.stderr[-3000:])
        res.append(json.loads([l for l in r.stdout.splitlines() if l.startswith("{")][-1]))
    print(f"  {'processes':>9} {'threads each':>12} {'seconds':>8} {'images/s':>9}")
    for d in res:
        print(f"  {d['world']:>9} {d['threads']:>12} {d['s']:>8.2f} {d['n'] / d['s']:>9.1f}")
    print(f"  two processes / one: {res[0]['s'] / res[1]['s']:.2f}x the throughput "
          f"({os.cpu_count()} cores here: the processes share them)")
    return res


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--models", nargs="+", default=["efficientnet_lite0", "resnet18"])
    p.add_argument("--sets", nargs="+", default=["deep", "early"], choices=["deep", "early"])
    p.add_argument("--mem-n", nargs="+", type=int, default=[500, 4000])
    p.add_argument("--mem-size", type=int, default=128)
    p.add_argument("--procs-n", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", choices=["a", "b", "c"])
    p.add_argument("--folded", action="store_true", help="(a) also the index on probe.folded(), interleaved")
    p.add_argument("--tiny", action="store_true", help="a few images of 64 px: checks that the script runs")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.tiny:
        args.n, args.size, args.batch, args.mem_n, args.mem_size, args.procs_n = 16, 64, 8, [8, 16], 64, 16
        args.sets, args.models = ["deep"], args.models[:1]
    if args.worker:
        return worker(args)
    import warnings

    warnings.simplefilter("ignore")
    if args.only in (None, "a"):
        part_a(args)
    if args.only in (None, "b"):
        part_b(args)
    if args.only in (None, "c"):
        part_c(args)


if __name__ == "__main__":
    main()
