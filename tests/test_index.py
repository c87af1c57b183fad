"""cw.index on the real efficientnet_lite0 (ImageNet weights) and real photographs: every channel's top-k and statistics
against a brute-force computation over all activations, exact merges of shards, stop and resume, files, bad input."""
import threading
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import cnnwidgets as cw
from cnnwidgets.index import FewerImagesThanK, UnitsNotMaps

SIZE = 96
LAYERS = ["_blocks.2", "_blocks.9", "_fc"]  # early and late maps, and the classifier's units


@pytest.fixture(scope="module")
def model():
    return cw.load_model()


@pytest.fixture(scope="module")
def probe(model):
    return cw.Probe(model, input_size=SIZE)


@pytest.fixture(scope="module")
def images():
    """28 crops of the scikit-image photographs, 4 generated images (noise, flat grey, black), and an exact copy of
    image 3 at position 31 (ties: the same scores, the smaller position first)."""
    photos = cw.sample_batch(28, size=SIZE, seed=7)
    made = torch.stack([cw.noise_image(SIZE, seed=1), cw.noise_image(SIZE, seed=2),
                        torch.full((3, SIZE, SIZE), 0.5), torch.zeros(3, SIZE, SIZE)])
    x = torch.cat([photos[:27], made, photos[3:4]])
    assert x.shape[0] == 32 and torch.equal(x[3], x[31])
    return x


@pytest.fixture(scope="module")
def full(probe, images):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnitsNotMaps)
        return cw.index.build(probe, images, LAYERS, k=5, batch_size=8)


def _same(a, b, stats_rtol=1e-10):
    assert a.layers == b.layers and a.num_images == b.num_images
    for l in a.layers:
        for by in ("max", "mean"):
            ta, tb = a.top_arrays(l, by), b.top_arrays(l, by)
            for f in ta:
                np.testing.assert_array_equal(ta[f], tb[f], err_msg=f"{l} {by} {f}")
        sa, sb = a.stats(l), b.stats(l)
        for f in sa:
            np.testing.assert_allclose(sa[f], sb[f], rtol=stats_rtol, atol=1e-12, err_msg=f"{l} {f}")


def test_top_k_and_stats_equal_brute_force_over_all_activations(probe, images, full):
    acts = {l: [] for l in LAYERS}
    for i in range(0, len(images), 8):  # the same batches, so every float is the same
        got = probe.capture(probe.prepare(images[i:i + 8]), LAYERS, truncate=False)
        for l in LAYERS:
            acts[l].append(got[l])
    refs = np.arange(len(images))
    for l in LAYERS:
        a = torch.cat(acts[l]).numpy()  # N x C (x H x W)
        n, c = a.shape[:2]
        flat = a.reshape(n, c, -1)
        assert full.shape(l) == a.shape[1:] and full.channels(l) == c
        for by, score in (("max", flat.max(-1)), ("mean", flat.mean(-1, dtype=np.float32))):
            for ch in range(0, c, max(1, c // 24)):
                order = np.lexsort((refs, -score[:, ch].astype(np.float64)))[:5]
                hits = full.top(l, ch, by)
                assert [h.ref for h in hits] == order.tolist(), (l, by, ch)
                np.testing.assert_allclose([h.score for h in hits], score[order, ch], rtol=1e-5, atol=1e-6)
                if a.ndim == 4:  # the peak of the map of each hit
                    w = a.shape[-1]
                    assert [(h.y, h.x) for h in hits] == [divmod(int(flat[r, ch].argmax()), w) for r in order]
                else:
                    assert all(h.y is None and h.x is None for h in hits)
        st = full.stats(l)
        vals = flat.transpose(1, 0, 2).reshape(c, -1).astype(np.float64)
        np.testing.assert_allclose(st["mean"], vals.mean(1), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(st["std"], vals.std(1), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(st["dead"], ~(vals > 0).any(1))
        np.testing.assert_allclose(st["dead_fraction"], (flat.max(-1) <= 0).mean(0))
    # the copy of image 3 ties with it everywhere: both are hits together, the smaller position first
    pairs = [(h.ref, nxt.ref) for l in LAYERS[:2] for ch in range(full.channels(l))
             for h, nxt in zip(full.top(l, ch), full.top(l, ch)[1:]) if h.ref == 3]
    assert pairs and all(b == 31 for a, b in pairs)
    assert full.input_size == (SIZE, SIZE) and full.k == 5 and full.complete


def test_merge_of_shards_equals_one_pass_in_any_order(probe, images, full):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnitsNotMaps)
        parts = [cw.index.build(probe, images, LAYERS, k=5, batch_size=8, shard_images=8, part=(r, 3)) for r in range(3)]
    assert sorted(p.num_images for p in parts) == [8, 8, 16] and not any(p.complete for p in parts)
    _same(cw.index.merge(*parts), full)
    _same(cw.index.merge(parts[2], parts[0], parts[1]), full)
    with pytest.raises(ValueError, match="again"):
        cw.index.merge(parts[0], parts[0])


def test_stop_then_resume_from_shards_equals_uninterrupted(probe, images, full, tmp_path):
    out = tmp_path / "ix"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnitsNotMaps)
        part = cw.index.build(probe, images, LAYERS, k=5, batch_size=8, out=out, shard_images=12, stop=16)
        # batches end at shard ends: 0-8, 8-12, 12-20, and the run stops after the batch that reaches 16 images
        assert part.num_images == 20 and not part.complete and not (out / "index.json").exists()
        again = cw.index.open(out)  # the shards of a stopped run open as a partial index
        assert again.num_images == 20 and "partial" in repr(again)
        # a Stop through the runner: the shard under way is written when the job is closed
        ev = threading.Event()
        steps = cw.index.build_steps(probe, images, LAYERS, k=5, batch_size=4, out=out, shard_images=12, stop=ev)
        for step in steps:
            assert {"images_per_s", "eta_s", "skipped", "skipped_names"} <= set(step.info)
            if step.step >= 4:
                break
        steps.close()
        assert cw.index.open(out).num_images == 24
        done = cw.index.build(probe, images, LAYERS, k=5, batch_size=8, out=out, shard_images=12)
    assert done.complete and (out / "index.json").exists()
    _same(done, full)
    _same(cw.index.open(out), full)


def test_save_open_round_trip_folder_with_an_image_that_fails_mid_run(probe, images, tmp_path):
    folder = tmp_path / "photos"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
    for i in range(10):
        arr = (images[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / ("a" if i < 5 else "b") / f"{i}.png")
    bad = folder / "a" / "3.png"
    bad.write_bytes(bad.read_bytes()[:200])  # a valid header, then cut: PIL opens it, loading it fails
    ix = cw.index.build(probe, folder, ["_blocks.9"], k=3, batch_size=4)
    assert ix.num_images == 9 and len(ix.skipped) == 1 and ix.skipped[0]["name"].endswith("3.png")
    assert ix.complete
    hit = ix.top("_blocks.9", 0)[0]
    assert isinstance(hit.ref, str) and hit.ref.startswith(str(folder)) and Image.open(hit.ref)
    assert all(h.ref != str(bad) for c in range(ix.channels("_blocks.9")) for h in ix.top("_blocks.9", c))
    ix.save(tmp_path / "saved")
    back = cw.index.open(tmp_path / "saved")
    _same(back, ix, stats_rtol=0)
    assert back.top("_blocks.9", 5) == ix.top("_blocks.9", 5) and back.skipped == ix.skipped
    assert back.model_key == ix.model_key and back.shape("_blocks.9") == ix.shape("_blocks.9")
    with np.load(tmp_path / "saved" / "index.npz", allow_pickle=False) as z:  # plain arrays, no pickled objects
        assert all(z[k].dtype != object for k in z.files)


class _Flaky(torch.utils.data.Dataset):
    """A Dataset whose item 5 cannot be read (a corrupt record)."""

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        if i == 5:
            raise OSError("record 5 is corrupt")
        return self.x[i], 0


def test_bad_input_each_gives_one_clear_message(probe, model, images, full):
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="no images"):
        cw.index.build(probe, images[:0], ["_blocks.2"])
    with pytest.warns(FewerImagesThanK, match="3 images, fewer than k=5"):
        few = cw.index.build(probe, images[:3], ["_blocks.2"], k=5)
    assert len(few.top("_blocks.2", 0)) == 3 and "fewer than k" in few.notes[0]
    with pytest.warns(UnitsNotMaps, match="_fc has no spatial maps"):
        units = cw.index.build(probe, images[:6], ["_fc"], k=2)
    assert not units.spatial("_fc") and units.shape("_fc") == (1000,) and "top images of each unit" in units.notes[0]
    # shards of another model / weights, another layer set, a set whose length changed
    other = cw.Probe(cw.load_model("resnet18", pretrained=False), input_size=SIZE)
    with pytest.raises(ValueError, match="another model or other weights"):
        cw.index.merge(full, cw.index.build(other, images[:6], ["layer1"], k=5))
    with pytest.raises(ValueError, match="other layers"):
        cw.index.merge(full, cw.index.build(probe, images[:6], ["_blocks.2"], k=5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnitsNotMaps)
        a = cw.index.build(probe, images[:30], LAYERS, k=5, shard_images=16, part=(0, 2))
        b = cw.index.build(probe, images, LAYERS, k=5, shard_images=16, part=(1, 2))
    with pytest.raises(ValueError, match="length changed between shards: 30 images in the first, 32"):
        cw.index.merge(a, b)
    # a Dataset item that raises mid-run: skipped, counted, named
    ds = _Flaky(images[:12])
    ix = cw.index.build(probe, ds, ["_blocks.2"], k=3, batch_size=4)
    assert ix.num_images == 11 and [s["name"] for s in ix.skipped] == ["item 5 of _Flaky"]
    assert "record 5 is corrupt" in ix.skipped[0]["error"]
    assert all(h.ref != 5 for c in range(ix.channels("_blocks.2")) for h in ix.top("_blocks.2", c))
    # the same through a DataLoader (its batches of 4): the failing batch is read item by item, then it goes on
    ld = cw.index.build(probe, torch.utils.data.DataLoader(ds, batch_size=4), ["_blocks.2"], k=3, batch_size=4)
    assert ld.num_images == 11 and [s["ref"] for s in ld.skipped] == [5]
    for by in ("max", "mean"):
        np.testing.assert_array_equal(ld.top_arrays("_blocks.2", by)["ref"], ix.top_arrays("_blocks.2", by)["ref"])
    with pytest.raises(ValueError, match="k is how many"):
        cw.index.build(probe, images[:4], ["_blocks.2"], k=0)
    with pytest.raises(KeyError, match="No layer named"):
        cw.index.build(probe, images[:4], ["_blocks.99"])
    # no hook left on the model, its state unchanged, after errors too
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items()) and not model.training


def test_resume_into_a_folder_of_another_run_is_refused(probe, images, tmp_path):
    cw.index.build(probe, images[:8], ["_blocks.2"], k=2, out=tmp_path / "ix", shard_images=4, stop=4)
    with pytest.raises(ValueError, match="do not belong to this run.*other layers"):
        cw.index.build(probe, images[:8], ["_blocks.9"], k=2, out=tmp_path / "ix")
