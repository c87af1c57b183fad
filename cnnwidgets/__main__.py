"""Command line: ``python -m cnnwidgets index --model resnet18 --images photos/ --out photos.index``.

Under ``torchrun --nproc_per_node N -m cnnwidgets index ...`` each process indexes its shards and rank 0 writes the
merged index (:mod:`cnnwidgets.distributed`). Open the result in a notebook with ``cw.index.open(out)``.
"""
from __future__ import annotations

import argparse
import sys
import time


def _layers(probe, given):
    if not given:
        return None
    return [int(g) if g.lstrip("-").isdigit() else g for g in given]


def _index(args) -> int:
    import torch

    import cnnwidgets as cw
    from cnnwidgets import distributed as D
    from cnnwidgets.models import DEFAULT_MODEL

    w = D.init(args.backend)
    say = (lambda *a: print(*a, flush=True)) if w.rank == 0 else (lambda *a: None)
    torch.manual_seed(args.seed)  # random weights (--random-weights) are the same in every process
    name = DEFAULT_MODEL if args.model == "default" else args.model
    model = cw.load_model(name, pretrained=not args.random_weights)
    if args.threads:
        torch.set_num_threads(args.threads)
    probe = cw.Probe(model, device=args.device or D.device(), input_size=args.input_size)
    layers = _layers(probe, args.layers)
    say(f"indexing {args.images} with {probe.name} on {w.size} process{'es' if w.size > 1 else ''} "
        f"({probe.device}), top {args.k} per channel -> {args.out}")
    last_print = 0.0
    last = None
    t0 = time.perf_counter()
    kw = {} if args.shard_images is None else {"shard_images": args.shard_images}
    for last in D.index_steps(probe, args.images, layers, k=args.k, batch_size=args.batch_size, out=args.out, **kw):
        now = time.perf_counter()
        if now - last_print >= args.every:
            last_print = now
            i = last.info or {}
            eta = f", about {i['eta_s']:.0f} s left" if i.get("eta_s") is not None else ""
            skipped = f", {i['skipped']} skipped" if i.get("skipped") else ""
            say(f"  rank 0: {i.get('images', 0)} images, {i.get('images_per_s', 0):.1f} images/s{eta}{skipped}")
    ix = last.value
    dt = time.perf_counter() - t0
    say(f"{ix}\n{ix.num_images} images in {dt:.1f} s ({ix.num_images / max(dt, 1e-9):.1f} images/s in all)")
    for note in ix.notes:
        say("note: " + note)
    if ix.skipped:
        names = ", ".join(s["name"] for s in ix.skipped[:5])
        say(f"skipped {len(ix.skipped)} image{'s' if len(ix.skipped) != 1 else ''} that failed to load: {names}"
            f"{', ...' if len(ix.skipped) > 5 else ''} ({ix.skipped[0]['error']})")
    say(f"open it with: cw.index.open({args.out!r})")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m cnnwidgets", description="cnnwidgets jobs that run outside a notebook.")
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("index", help="every channel's top images and statistics over a folder of images",
                       description="One pass over the images; each process (torchrun) takes its shards; the merged "
                                   "index is written to --out (JSON + npz), resumable from its shards.")
    q.add_argument("--model", default="default",
                   help="a torchvision name (resnet18), timm:<name>, or default (efficientnet_lite0, offline)")
    q.add_argument("--random-weights", action="store_true", help="the model's architecture with random weights")
    q.add_argument("--images", required=True, help="a folder of images (one sub-folder per class, or flat)")
    q.add_argument("--layers", nargs="*", help="layer names or indices into the conv layers (default: all conv layers)")
    q.add_argument("--k", type=int, default=16, help="top images kept per channel (default 16)")
    q.add_argument("--out", required=True, help="folder for the index and its shards")
    q.add_argument("--batch-size", type=int, default=32)
    q.add_argument("--shard-images", type=int, default=None, help="images per shard written as it goes (default 1024)")
    q.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: this process's GPU, else the CPU)")
    q.add_argument("--input-size", type=int, default=None, help="input size for a model cnnwidgets does not know")
    q.add_argument("--backend", default=None, help="torch.distributed backend (default: nccl with GPUs, else gloo)")
    q.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    q.add_argument("--seed", type=int, default=0, help="seed for --random-weights (the same in every process)")
    q.add_argument("--every", type=float, default=2.0, help="seconds between progress lines")
    args = p.parse_args(argv)
    try:
        return _index(args)
    except (ValueError, FileNotFoundError, KeyError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
