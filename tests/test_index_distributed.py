"""Two gloo processes under torchrun give exactly the one-process result: the index (top-k sets, scores, positions),
minibatch CKA (to float64 rounding of the all-reduced sums) and embedding features; a run stopped in one process
resumes from its shards in two; the command line's torchrun launch writes the same index."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import cnnwidgets as cw

ROOT = Path(__file__).resolve().parents[1]
JOB = str(ROOT / "tests" / "distributed_job.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")  # one thread per process, as torchrun sets


def _run(cmd, timeout=180):
    r = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return r.stdout


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """35 images: crops of the scikit-image photographs and generated noise, in two class folders."""
    root = tmp_path_factory.mktemp("photos")
    x = torch.cat([cw.sample_batch(31, size=96, seed=11), torch.stack([cw.noise_image(96, seed=s) for s in range(4)])])
    for i, t in enumerate(x):
        d = root / ("photo" if i < 31 else "noise")
        d.mkdir(exist_ok=True)
        Image.fromarray((t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(d / f"{i:02d}.png")
    return root


def _same(a, b):
    assert a.layers == b.layers and a.num_images == b.num_images == 35 and a.complete and b.complete
    for l in a.layers:
        for by in ("max", "mean"):
            ta, tb = a.top_arrays(l, by), b.top_arrays(l, by)
            for f in ta:
                np.testing.assert_array_equal(ta[f], tb[f], err_msg=f"{l} {by} {f}")
        for f, v in a.stats(l).items():
            np.testing.assert_allclose(v, b.stats(l)[f], rtol=1e-10, atol=1e-12)
        assert [h.ref for h in a.top(l, 0)] == [h.ref for h in b.top(l, 0)]


def test_two_gloo_processes_give_the_one_process_result(folder, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, JOB, "--images", str(folder), "--out", str(one), "--result", str(tmp_path / "one.npz")])
    # stopped after 12 images in one process, resumed from its shards by two processes
    _run([sys.executable, JOB, "--images", str(folder), "--out", str(two), "--stop", "12"])
    partial = cw.index.open(two)
    assert 12 <= partial.num_images < 35 and not partial.complete
    _run(TORCHRUN + [JOB, "--images", str(folder), "--out", str(two), "--result", str(tmp_path / "two.npz")])
    a, b = cw.index.open(one), cw.index.open(two)
    _same(a, b)
    assert isinstance(a.top("_blocks.9", 3)[0].ref, str)
    r1, r2 = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert int(r1["world"]) == 1 and int(r2["world"]) == 2
    np.testing.assert_allclose(r2["cka"], r1["cka"], rtol=0, atol=1e-12)
    assert r1["cka"].shape == (4, 4) and np.all(np.diag(r1["cka"]) == 1) and r1["cka"][0, 3] < 0.99
    np.testing.assert_array_equal(r2["features"], r1["features"])
    assert r1["features"].shape == (35, a.channels("_blocks.9"))
    # the command line under torchrun: each rank its shards, rank 0 writes the merged index
    cli = tmp_path / "cli"
    out = _run(TORCHRUN + ["-m", "cnnwidgets", "index", "--images", str(folder), "--layers", "_blocks.2", "_blocks.9",
                           "_fc", "--k", "4", "--batch-size", "8", "--input-size", "96", "--out", str(cli),
                           "--shard-images", "8", "--threads", "1"])
    assert "on 2 processes" in out and "35 of 35 images" in out and "no spatial maps" in out
    _same(cw.index.open(cli), a)
