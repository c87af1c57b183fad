"""Train and watch: cw.Monitor follows a small CNN while a plain loop trains it on the digits, and shows saved runs and
checkpoints afterwards. The training is the same with and without it, bit for bit."""
from __future__ import annotations

import gc
import pickle
import time
import tracemalloc
import weakref
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnwidgets as cw
from cnnwidgets.analyses.monitor import History, ParametersChanged
from digits import SmallCNN, digits

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def data():
    return digits(600)


def model_and_probe(seed=0):
    torch.manual_seed(seed)
    m = SmallCNN()
    return m, cw.Probe(m, input_size=28, mean=0, std=1, classes=[str(d) for d in range(10)], device="cpu")


def train(model, x, y, steps, monitor=None, seed=1, lr=0.05, batch=32, nan_at=()):
    """The user's loop: global RNG for the batches (a monitor that drew from it would change them), train mode, SGD."""
    torch.manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    losses = []
    for s in range(steps):
        i = torch.randint(0, len(x), (batch,))
        opt.zero_grad()
        loss = F.cross_entropy(model(x[i]), y[i])
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if monitor is not None:
            monitor.step(loss=torch.tensor(float("nan")) if s in nan_at else loss)
    return losses


def test_training_is_the_same_bit_for_bit_with_and_without_the_monitor(data):
    x, y = data
    a, _ = model_and_probe()
    plain = train(a, x, y, 40)
    rng_plain = torch.get_rng_state()
    b, probe = model_and_probe()
    mon = cw.Monitor(probe, images=x[:16], every=1, refresh=0)  # the most it can do: a snapshot and a redraw each step
    watched = train(b, x, y, 40, mon)
    assert torch.equal(torch.get_rng_state(), rng_plain)  # no random number drawn
    assert watched == plain  # the same losses, bit for bit
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # the same weights and BatchNorm statistics
    assert b.training and not any(h for mod in b.modules() for h in (mod._forward_hooks, mod._forward_pre_hooks))
    assert len(mon.history) == 41 and mon.history.steps[-1] == 40
    s, v = mon.history.losses()
    assert s.tolist() == list(range(1, 41)) and np.allclose(v, plain)


def test_the_monitor_keeps_no_graph_alive(data):
    x, y = data
    m, probe = model_and_probe()
    mon = cw.Monitor(probe, x[0], every=1)
    loss = F.cross_entropy(m(x[:8]), y[:8])

    class Marker:  # held by the loss's graph (a hook on its last node) as long as the graph lives
        pass

    marker = Marker()
    alive = weakref.ref(marker)
    loss.grad_fn.register_hook(lambda *grads, marker=marker: None)
    del marker
    mon.step(loss=loss)
    mon.step(loss=loss * 2)
    del loss
    gc.collect()
    assert alive() is None


def test_what_a_snapshot_holds(data):
    x, y = data
    m, probe = model_and_probe()
    mon = cw.Monitor(probe, images=x[:32], every=25)
    train(m, x, y, 50, mon)
    h = mon.history
    assert h.steps == [0, 25, 50]
    assert h.layers == ["cnn.0", "cnn.4"]
    gn = h.series("grad norm")
    assert np.isnan(gn[0]).all() and np.isfinite(gn[1:]).all() and (gn[1:] > 0).all()  # no gradient before training
    wn = h.series("weight norm")[:, h.param_names.index("cnn.0.weight")]
    assert wn[0] == pytest.approx(float(model_and_probe()[0].cnn[0].weight.detach().norm()), rel=1e-6)  # the initial weights
    assert wn[-1] == pytest.approx(float(m.cnn[0].weight.detach().norm()), rel=1e-5)
    cka = h.cka_matrix()
    assert cka.shape == (2, 3) and np.allclose(cka[:, 0], 1) and (cka[:, -1] < 1).all() and (cka > 0).all()
    assert cka[1, -1] < cka[0, -1]  # the deeper layer has moved more from its start
    dead = h.dead_matrix()
    assert ((0 <= dead) & (dead <= 1)).all()
    i, f = h.frame(2, "cnn.4")
    maps = probe.activations(x[0], "cnn.4")[0].numpy()
    assert i == 2 and f.maps.shape == (16, 14, 14)
    assert np.allclose(f.maps.astype(np.float32), maps, atol=2e-3 * np.abs(maps).max())  # float16 of the live maps
    assert f.act_counts.sum() == maps.size and f.w_counts.sum() == m.cnn[4].weight.numel()


def test_dead_units_are_read_after_the_relu(data):
    x, _ = data
    m, probe = model_and_probe()
    with torch.no_grad():
        m.cnn[1].bias[:4] = -100.0  # BatchNorm's shift kills 4 of the 8 channels of the first block
    mon = cw.Monitor(probe, images=x[:16], every=1)
    relus = probe.activations(x[:16], ["cnn.2", "cnn.6"])  # the ReLUs after the two convolutions
    expected = [float((r.amax(dim=(0, 2, 3)) <= 0).float().mean()) for r in relus.values()]
    assert mon.history.dead[0].tolist() == expected and expected[0] == 0.5
    assert "50% dead units" in mon.maps_caption.value


def test_nan_and_inf_losses_are_recorded_flagged_and_the_run_goes_on(data):
    x, y = data
    m, probe = model_and_probe()
    mon = cw.Monitor(probe, x[0], every=10)
    train(m, x, y, 30, mon, nan_at=(5, 6))
    mon.step(loss=float("inf"))
    mon.step(loss=0.5)
    mon.finish()
    s, v = mon.history.losses()
    assert len(s) == 32 and np.isnan(v[5]) and np.isnan(v[6]) and np.isinf(v[30]) and v[31] == 0.5
    bs, bv = mon.history.bad_losses()
    assert bs.tolist() == [6, 7, 31] and mon.history.bad_count == 3
    assert "NaN or infinite at 3 steps (first at step 6)" in mon.message.value
    assert sorted(mon.bad_marks.x.tolist()) == [6, 7, 31]
    assert np.isfinite(mon._ly.max) and np.isfinite(mon._ly.min)  # the curve's scale ignores them


@pytest.mark.parametrize("bad, message", [
    (0, "every=0"), (-3, "every=-3"), (2.5, "whole number"), ("10", "whole number"),
])
def test_every_must_be_a_positive_whole_number(data, bad, message):
    x, _ = data
    _, probe = model_and_probe()
    with pytest.raises((ValueError, TypeError), match=message):
        cw.Monitor(probe, x[0], every=bad)
    with pytest.raises(ValueError, match="positive number of seconds"):
        cw.Monitor(probe, x[0], seconds=0)


def test_other_user_mistakes_get_one_clear_line(data):
    x, y = data
    m, probe = model_and_probe()
    with pytest.raises(ValueError, match="Give the monitor an image"):
        cw.Monitor(probe)
    mon = cw.Monitor(probe, x[0])
    with pytest.raises(ValueError, match=r"one number; got a tensor of shape \(8,\)"):
        mon.step(loss=F.cross_entropy(m(x[:8]), y[:8], reduction="none"))
    with pytest.raises(TypeError, match="whole number"):
        mon.step(loss=1.0, step=2.5)


def test_parameters_that_change_shape_or_name_get_an_error_naming_them(data):
    x, y = data
    m, probe = model_and_probe()
    mon = cw.Monitor(probe, x[0], every=1)
    train(m, x, y, 2, mon)
    m.fc = nn.Linear(16 * 7 * 7, 5)  # a new head for 5 classes
    with pytest.raises(ParametersChanged, match=r"parameter 'fc.weight' is \(10, 784\) at the start and \(5, 784\) now"):
        mon.step(loss=1.0)
    m2, probe2 = model_and_probe()
    mon2 = cw.Monitor(probe2, x[0], every=1)
    m2.extra = nn.Linear(2, 2)
    with pytest.raises(ParametersChanged, match="parameter 'extra.weight' is new"):
        mon2.step(loss=1.0)


def test_saved_snapshots_come_back_the_same(data, tmp_path):
    x, y = data
    m, probe = model_and_probe()
    mon = cw.Monitor(probe, images=x[:16], every=10)
    train(m, x, y, 30, mon, nan_at=(3,))
    mon.finish()
    path = mon.save_snapshots(tmp_path / "run")
    assert path.endswith("run.npz")
    back = cw.Monitor.load(path, probe)
    a, b = mon.history, back.history
    assert a.steps == b.steps and a.params == b.params and a.layers == b.layers
    for k in ("losses", "bad_losses"):
        for u, v in zip(getattr(a, k)(), getattr(b, k)()):
            np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(a.cka_matrix(), b.cka_matrix())
    np.testing.assert_array_equal(np.stack(a.stats), np.stack(b.stats))
    for i in range(len(a)):
        for layer in a.frame_layers:
            fa, fb = a.frame(i, layer)[1], b.frame(i, layer)[1]
            np.testing.assert_array_equal(fa.maps, fb.maps)
            np.testing.assert_array_equal(fa.w_edges, fb.w_edges)
    assert back.maps.value == mon.maps.value  # the same picture in the same panels
    assert "NaN or infinite at 1 step" in back.message.value
    with pytest.raises(RuntimeError, match="shows saved snapshots"):
        back.step(loss=1.0)
    assert len(cw.Monitor.load(path).history) == 4  # without the model too


def test_bad_snapshot_files_get_clear_errors_and_nothing_runs(data, tmp_path):
    x, y = data
    m, probe = model_and_probe()
    mon = cw.Monitor(probe, x[0], every=5)
    train(m, x, y, 10, mon)
    good = mon.save_snapshots(tmp_path / "run.npz")
    # a pickle that would run code when unpickled
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.npz"
    evil.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ValueError, match="pickled data.*nothing was run"):
        cw.Monitor.load(evil)
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([Evil()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="pickled data"):
        cw.Monitor.load(obj)
    assert not marker.exists()
    # truncated
    cut = tmp_path / "cut.npz"
    raw = open(good, "rb").read()
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="truncated or damaged"):
        cw.Monitor.load(cut)
    # a numpy file of something else
    other = tmp_path / "other.npz"
    np.savez(other, a=np.arange(3))
    with pytest.raises(ValueError, match="not one of cnnwidgets' snapshot files"):
        cw.Monitor.load(other)
    # another model's file
    class Wide(SmallCNN):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16 * 7 * 7, 3)

    wide = cw.Probe(Wide(), input_size=28, mean=0, std=1, device="cpu")
    with pytest.raises(ValueError, match=r"recorded on another model.*'fc.weight' is \(10, 784\) there and \(3, 784\) here"):
        cw.Monitor.load(good, wide)
    with pytest.raises(FileNotFoundError, match="not found"):
        cw.Monitor.load(tmp_path / "nope.npz")


def test_memory_stays_flat_over_a_long_run(data):
    x, y = data
    m, probe = model_and_probe()
    mon = cw.Monitor(probe, images=x[:8], every=2, max_snapshots=16, max_points=400, memory=200_000, refresh=0.05)
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    sizes, traced = [], []
    tracemalloc.start()
    try:
        for s in range(1, 2401):
            i = torch.arange(s % 500, s % 500 + 8)
            opt.zero_grad()
            loss = F.cross_entropy(m(x[i]), y[i])
            loss.backward()
            opt.step()
            mon.step(loss=loss)
            if s % 600 == 0:
                mon._flush()
                gc.collect()
                sizes.append(mon.history.nbytes())
                traced.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    h = mon.history
    assert len(h) <= 17 and len(h.loss_steps) <= 401 and h.frame_bytes() <= 200_000
    assert h.thinned >= 3 and mon._every >= 16  # the interval doubled as the snapshots were thinned
    assert max(sizes[1:]) < 1.2 * sizes[0] + 50_000, sizes  # the history does not grow with the run
    assert traced[-1] - traced[1] < 300_000, traced  # nor does anything else the monitor allocates
    s, _ = h.losses()
    assert s[0] == 1 and s[-1] == 2400 and np.all(np.diff(s) > 0)  # thinned evenly, first and last kept
    mon.finish()
    assert h.steps[0] == 0 and h.steps[-1] == 2400 and len(h) <= 17


def test_time_based_snapshots_by_default(data):
    x, y = data
    m, probe = model_and_probe()
    mon = cw.Monitor(probe, x[0], seconds=0.05)
    t = time.perf_counter()
    while time.perf_counter() - t < 0.6:
        train(m, x, y, 1, mon)
    assert 4 <= len(mon.history) <= 14, mon.history.steps


def test_scrubbing_and_choosing_a_layer(data, tmp_path):
    x, y = data
    m, probe = model_and_probe()
    mon = cw.Monitor(probe, x[0], every=20, layer="cnn.4")
    train(m, x, y, 60, mon, lr=0.2)
    mon.finish()
    assert mon.layer == "cnn.4" and mon.slider.max == 3 and mon.slider.value == 3
    latest = mon.maps.value
    mon.slider.value = 0
    assert "step <b>0</b>" in mon.slider_label.value and mon.maps.value != latest
    assert "step 0" in mon.act_hist.figure.title
    mon.step(loss=1.0, step=100)
    mon.snapshot()
    mon.draw()
    assert mon.slider.value == 0  # scrubbed back: new snapshots do not pull the slider along
    mon.slider.value = mon.slider.max
    mon.layer = "cnn.0"
    assert mon.layer_select.value == "cnn.0" and "8 channels" in mon.maps_caption.value
    mon.norm_kind.value = "grad norm"
    mon.norm_select.value = ("fc.weight",)
    assert list(mon.norm_lines.labels) == ["fc.weight"] and "gradients" in mon.norm_figure.title
    png = mon.save(tmp_path / "monitor.png")
    assert open(png, "rb").read(4) == b"\x89PNG"
    mon.close()


def test_context_manager_ends_with_a_snapshot_of_the_last_step(data):
    x, y = data
    m, probe = model_and_probe()
    with cw.Monitor(probe, x[0], every=100) as mon:
        train(m, x, y, 7, mon)
    assert mon.history.steps == [0, 7]


def test_checkpoints_side_by_side(data, tmp_path):
    x, y = data
    m, probe = model_and_probe()
    paths = []
    for epoch in range(3):
        train(m, x, y, 15, seed=epoch)
        paths.append(tmp_path / f"epoch{epoch + 1}.pt")
        torch.save(m.state_dict(), paths[-1])
    before = {k: v.clone() for k, v in m.state_dict().items()}
    mon = cw.Monitor.from_checkpoints(m, paths, images=x[:16], input_size=28, mean=0, std=1)
    h = mon.history
    assert h.names == ["epoch1.pt", "epoch2.pt", "epoch3.pt"] and len(h) == 3
    assert np.allclose(h.cka_matrix()[:, 0], 1) and (h.cka_matrix()[:, 1:] < 1).all()
    assert h.series("weight norm")[-1, h.param_names.index("fc.weight")] == pytest.approx(float(m.fc.weight.detach().norm()),
                                                                                          rel=1e-5)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # the user's model is untouched
    assert "epoch3.pt" in mon.slider_label.value
    again = cw.Monitor.from_checkpoints(probe, paths[:2], image=x[0])  # a Probe brings its preprocessing
    assert len(again.history) == 2
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps(SimpleNamespace(a=1)))
    with pytest.raises(ValueError, match="weights-only"):
        cw.Monitor.from_checkpoints(m, [paths[0], evil], image=x[0], input_size=28, mean=0, std=1)


def test_lightning_callback_call_sequence(data):
    """The callback's hooks, called by name as Lightning's Trainer calls them (also where Lightning is not installed)."""
    x, y = data
    m, probe = model_and_probe()
    mon = cw.Monitor(probe, x[0], every=2)
    cb = mon.lightning_callback()
    trainer = SimpleNamespace(global_step=0)
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    for batch_idx in range(5):
        i = torch.arange(8) + 8 * batch_idx
        loss = F.cross_entropy(m(x[i]), y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
        trainer.global_step += 1
        cb.on_train_batch_end(trainer, m, {"loss": loss}, (x[i], y[i]), batch_idx)
    cb.on_train_end(trainer, m)
    assert mon.history.steps == [0, 2, 4, 5]
    assert mon.history.losses()[0].tolist() == [1, 2, 3, 4, 5]


def test_widget_state_is_json_after_use_and_close_frees_every_widget(data):
    from test_close import registry
    from test_widget_state import json_state, update

    x, y = data
    m, probe = model_and_probe()
    before = len(registry())
    mon = cw.Monitor(probe, images=x[:16], every=5)
    train(m, x, y, 12, mon, nan_at=(2,))
    mon.finish()
    update(mon.slider, value=1)  # moves from the front end, through ipywidgets' own handler
    update(mon.layer_select, index=1)
    update(mon.norm_kind, index=1)
    assert mon.layer == "cnn.4" and mon.slider.value == 1 and mon.norm_kind.value == "grad norm"
    json_state(mon, "after training, a scrub, a layer and the gradients chosen")
    mon.close()
    assert len(registry()) == before


def test_a_run_that_diverges_is_recorded_to_the_end(data):
    """An infinite weight half way: the loss, the gradients and then every weight become NaN; the monitor records it,
    keeps going and keeps drawing."""
    x, y = data
    m, probe = model_and_probe()
    mon = cw.Monitor(probe, images=x[:16], every=5, refresh=0)
    train(m, x, y, 10, mon)
    with torch.no_grad():
        m.cnn[0].weight[0, 0, 0, 0] = float("inf")
    losses = train(m, x, y, 20, mon)
    mon.finish()
    h = mon.history
    assert h.bad_count == 20 and all(np.isnan(losses)) and len(h) == 7 and h.steps[-1] == 30
    assert np.isnan(h.series("weight norm")[-1]).all() and np.isnan(h.series("grad norm")[-1]).all()
    assert np.isfinite(h.cka_matrix()).all()  # CKA of NaN features: 0, never NaN
    assert (h.cka_matrix()[:, -1] == 0).all()
    assert "NaN or infinite at 20 steps (first at step 11)" in mon.message.value
    assert mon.maps.value and "step 30" in mon.maps_caption.value  # the maps are drawn (NaN in magenta)
    assert "loss nan" in mon.header.value


def test_no_gradients_when_step_is_called_before_backward(data):
    x, y = data
    m, probe = model_and_probe()
    mon = cw.Monitor(probe, x[0], every=2)
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    for s in range(4):
        opt.zero_grad()  # set_to_none: .grad is None until backward
        loss = F.cross_entropy(m(x[:8]), y[:8])
        mon.step(loss=loss)  # too early: no gradient to read yet
        loss.backward()
        opt.step()
    mon.finish()
    mon.norm_kind.value = "grad norm"
    assert np.isnan(mon.history.series("grad norm")).all()
    assert "none yet (call monitor.step after loss.backward())" in mon.norm_figure.title


def test_cka_needs_four_probe_images_and_can_be_turned_off(data):
    x, y = data
    m, probe = model_and_probe()
    one = cw.Monitor(probe, x[0], every=1)  # one image: maps, but no CKA (it compares several images)
    off = cw.Monitor(probe, images=x[:16], every=1, cka=False)
    train(m, x, y, 2, one)
    for mon in (one, off):
        assert np.isnan(mon.history.cka_matrix()).all() and mon.cka_figure.layout.display == "none"
    assert "4 probe images or more" in one.cka_note.value and "cka=False" in off.cka_note.value
    assert one.maps.value and off.maps.value


class _Digits(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def _lightning_run(data, with_monitor: bool):
    """A user's LightningModule trained for 6 steps by a real Trainer, with or without the Monitor's callback."""
    L = pytest.importorskip("lightning.pytorch", reason="Lightning is a test extra (make test installs it)")
    x, y = data
    m, probe = model_and_probe()

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net, self.seen = m, []

        def training_step(self, batch, batch_idx):
            loss = F.cross_entropy(self.net(batch[0]), batch[1])
            self.seen.append(loss.item())
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    mon = cw.Monitor(probe, x[0], images=x[:8], every=2) if with_monitor else None
    L.seed_everything(3, verbose=False)
    loader = torch.utils.data.DataLoader(_Digits(x[:192], y[:192]), batch_size=32, shuffle=True)
    trainer = L.Trainer(max_steps=6, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[mon.lightning_callback()] if mon else [])
    module = Module()
    trainer.fit(module, loader)
    return m, module.seen, mon, trainer


def test_a_real_lightning_trainer_with_the_callback_trains_the_same_and_is_watched(data):
    L = pytest.importorskip("lightning.pytorch", reason="Lightning is a test extra (make test installs it)")
    plain, plain_losses, _, _ = _lightning_run(data, with_monitor=False)
    watched, losses, mon, trainer = _lightning_run(data, with_monitor=True)
    assert any(type(c).__name__ == "MonitorCallback" and isinstance(c, L.Callback) for c in trainer.callbacks)
    assert len(losses) == 6 and losses == plain_losses, "the same losses, bit for bit"
    for (k, a), b in zip(plain.state_dict().items(), watched.state_dict().values()):
        assert torch.equal(a, b), k
    h = mon.history
    assert h.losses()[1].tolist() == pytest.approx(losses, rel=1e-6), "the monitor saw every step's loss"
    assert h.steps[0] == 0 and h.steps[-1] == 6 and len(h) >= 3, h.steps
