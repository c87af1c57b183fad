"""The Probe: layers, lookup, truncated forwards, activations, cache, and a model left as it was."""
import pytest
import torch
from torch import nn

import cnnwidgets as cw
from cnnwidgets.cache import ActivationCache, digest
from cnnwidgets.hooks import hook_count


def model_state(model):
    """What a call must not change: every module's train flag and every parameter's requires_grad."""
    return [m.training for m in model.modules()], [p.requires_grad for p in model.parameters()]


# --- layers ---------------------------------------------------------------------------------------

def test_layers_are_the_conv_layers_in_forward_order_with_names_types_and_shapes(probe, eff):
    layers = probe.layers
    assert len(layers) == 49
    assert layers[0].name == "_conv_stem" and layers[0].shape == (32, 112, 112)
    assert layers[0].type == "Conv2dStaticSamePadding"
    assert [l.order for l in layers] == sorted(l.order for l in layers)
    modules = dict(eff.named_modules())
    for l in layers:
        assert l.module is modules[l.name] and l.spatial and l.channels == l.shape[0]
    # deeper means fewer pixels: the last conv is 7x7
    assert layers[-1].shape[1:] == (7, 7)
    assert layers["_blocks.3._project_conv"].label == "_blocks.3._project_conv · Conv2dStaticSamePadding · 40×28×28"
    # every module on request, also in forward order; the conv layers are among them
    assert len(probe.all_layers) > len(layers)
    assert set(layers.names) <= set(probe.all_layers.names)
    assert [l.order for l in probe.all_layers] == list(range(len(probe.all_layers)))


def test_layer_lookup_by_name_index_and_layer(probe):
    assert probe.layer(0) is probe.layers[0]
    assert probe.layer(-1) is probe.layers[-1]
    assert probe.layer("_blocks.3._project_conv").shape == (40, 28, 28)
    assert probe.layer(probe.layers[5]) is probe.layers[5]
    assert probe.layer("_fc").shape == (1000,)  # any module by name, not only convs
    with pytest.raises(IndexError, match="49 conv layers"):
        probe.layer(49)
    with pytest.raises(TypeError):
        probe.layer(1.5)


def test_unknown_layer_name_is_a_key_error_listing_close_names(probe):
    with pytest.raises(KeyError) as e:
        probe.layer("_blocks.3._project_cnv")
    msg = str(e.value)
    assert "_blocks.3._project_cnv" in msg and "'_blocks.3._project_conv'" in msg and "probe.layers" in msg
    with pytest.raises(KeyError, match="No layer named"):
        probe.activations(cw.sample_image("coffee"), "layer4")


# --- truncated forward ----------------------------------------------------------------------------

@pytest.mark.parametrize("which", [[0], [10, 25], [48]])
def test_truncated_forward_gives_the_same_activations_as_the_full_forward(probe, cat, which):
    x = probe.prepare(cat)
    names = [probe.layers[i].name for i in which]
    short = probe.capture(x, names, truncate=True)
    full = probe.capture(x, names, truncate=False)
    for n in names:
        assert torch.equal(short[n], full[n]), n


def test_truncated_forward_on_a_torchvision_model_with_random_weights(cat):
    torch.manual_seed(0)
    p = cw.Probe(cw.load_model("resnet18", pretrained=False))
    x = p.prepare(cat)
    names = ["conv1", "layer1.0.conv2", "layer3.1.conv1", "layer4.1.conv2", "layer2.0.downsample.0"]
    short = p.capture(x, names)
    full = p.capture(x, names, truncate=False)
    for n in names:
        assert torch.equal(short[n], full[n]), n
    # a ReLU module called twice per block: its last call is captured, in both modes
    relu = "layer1.0.relu"
    assert p.layer(relu).calls == 2
    assert torch.equal(p.capture(x, relu)[relu], p.capture(x, relu, truncate=False)[relu])


class Counter(nn.Module):
    """Identity that counts its calls: proves which part of the network ran. The count lives in a list, which the
    Probe's private view shares with the module (a plain ``self.calls += 1`` would count on the view's copy)."""

    def __init__(self):
        super().__init__()
        self.log = [0]

    @property
    def calls(self):
        return self.log[0]

    def forward(self, x):
        self.log[0] += 1
        return x


class Tiny(nn.Module):
    """A CIFAR-size CNN, with a counter after the last conv and an optional failure inside forward."""

    def __init__(self, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, stride=2)
        self.late = Counter()
        self.head = nn.Linear(16, 10)
        self.fail = None  # None, or an exception to raise after conv2

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.conv2(x)
        if self.fail is not None:
            raise self.fail
        x = self.late(x)
        return self.head(x.mean((2, 3)))


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    return Tiny()


def test_truncated_forward_really_stops_after_the_deepest_requested_layer(tiny, cat):
    p = cw.Probe(tiny, input_size=32)
    before = tiny.late.calls
    p.activations(cat, ["conv1", "conv2"])
    assert tiny.late.calls == before  # the rest of the network did not run
    p.activations(cw.sample_image("coffee"), "conv2", truncate=False)
    assert tiny.late.calls == before + 1


# --- activations ----------------------------------------------------------------------------------

def test_activations_of_one_image_and_of_a_batch(probe, cat):
    name = "_blocks.3._project_conv"
    one = probe.activations(cat, name)
    assert one.shape == (1, 40, 28, 28) and one.device.type == "cpu" and not one.requires_grad
    imgs = [cat, cw.sample_image("coffee"), cw.sample_image("rocket")]
    batch = probe.activations(imgs, [name, "_conv_stem"])
    assert set(batch) == {name, "_conv_stem"}
    assert batch[name].shape == (3, 40, 28, 28) and batch["_conv_stem"].shape == (3, 32, 112, 112)
    torch.testing.assert_close(batch[name][0:1], one, atol=1e-5, rtol=1e-4)
    # an already prepared batch NxCxHxW gives the same, also when run in chunks
    chunked = probe.activations(probe.prepare(imgs), name, preprocess=False, batch_size=2)
    torch.testing.assert_close(chunked, batch[name], atol=1e-5, rtol=1e-4)


def test_capture_with_grad_gives_input_gradients_and_leaves_parameters_alone(probe, cat, eff):
    before = model_state(eff)
    x = probe.prepare(cat).requires_grad_(True)
    out = probe.capture(x, "_blocks.5._project_conv", grad=True)["_blocks.5._project_conv"]
    assert out.requires_grad
    out.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in eff.parameters())
    assert model_state(eff) == before and hook_count(eff) == 0


# --- cache ----------------------------------------------------------------------------------------

def test_second_call_is_a_cache_hit(eff, cat):
    p = cw.Probe(eff)
    name = "_blocks.6._project_conv"
    first = p.activations(cat, name)
    hits = p.cache.hits
    second = p.activations(cat, name)
    assert second is first and p.cache.hits == hits + 1
    # one image: the conv layers on the way were kept too, so a slider over them recomputes nothing
    before = p.cache.hits
    p.activations(cat, "_blocks.2._expand_conv")
    assert p.cache.hits == before + 1
    # another image is another key
    other = p.activations(cw.sample_image("coffee"), name)
    assert not torch.equal(other, first)


def test_cache_is_dropped_when_the_weights_change(tiny, cat):
    p = cw.Probe(tiny, input_size=32)
    before = p.activations(cat, "conv2")
    opt = torch.optim.SGD(tiny.parameters(), lr=0.5)
    tiny.train()
    tiny(p.prepare(cat)).sum().backward()  # one training step on the user's side
    opt.step()
    after = p.activations(cat, "conv2")
    assert not torch.equal(before, after)
    torch.testing.assert_close(after, p.activations(cat, "conv2", truncate=False))
    tiny.load_state_dict({k: v * 0 for k, v in tiny.state_dict().items()})
    assert p.activations(cat, "conv2").abs().sum() == 0


def test_cache_evicts_least_recently_used_within_its_budget():
    c = ActivationCache(budget=3 * 400)  # room for three 100-float tensors
    t = {k: torch.zeros(100) for k in "abcd"}
    for k in "abc":
        c.put(k, t[k])
    assert c.get("a") is t["a"]  # a is now the most recently used
    c.put("d", t["d"])
    assert "b" not in c and all(k in c for k in "acd")
    assert c.nbytes == 1200 <= c.budget
    c.put("huge", torch.zeros(1000))  # larger than the whole budget: not kept, nothing evicted for it
    assert "huge" not in c and len(c) == 3


def test_probe_cache_respects_a_small_budget(eff, cat):
    p = cw.Probe(eff, cache_bytes=3 * 2**20)
    imgs = [cat, cw.sample_image("coffee")]  # a batch: only the requested layers are stored
    names = ["_conv_stem", "_blocks.1._project_conv", "_blocks.4._project_conv", "_blocks.8._project_conv"]
    for n in names:
        p.activations(imgs, n)
        assert p.cache.nbytes <= 3 * 2**20
    key = digest(p.prepare(imgs))
    assert (key, "_conv_stem") not in p.cache  # 2x32x112x112 floats = 3.1 MiB: over budget alone
    assert (key, names[-1]) in p.cache


# --- the model is left as it was ------------------------------------------------------------------

def _odd_state(model):
    model.train()
    model.bn1.eval()
    model.conv1.weight.requires_grad_(False)


def test_hooks_and_state_unchanged_after_normal_calls(tiny, cat):
    _odd_state(tiny)
    p = cw.Probe(tiny, input_size=32)
    before = model_state(tiny)
    p.activations(cat, ["conv1", "conv2"])
    p.forward(cat)
    p.predict(cat, k=3)
    x = p.prepare(cat).requires_grad_(True)
    p.capture(x, "conv2", grad=True)["conv2"].sum().backward()
    assert hook_count(tiny) == 0 and model_state(tiny) == before
    assert tiny.training and not tiny.bn1.training and not tiny.conv1.weight.requires_grad


@pytest.mark.parametrize("exc, expected", [(ValueError("bad input"), RuntimeError),
                                           (KeyboardInterrupt(), KeyboardInterrupt)])
def test_hooks_and_state_unchanged_after_a_forward_that_raises(tiny, cat, exc, expected):
    _odd_state(tiny)
    p = cw.Probe(tiny, input_size=32)
    before = model_state(tiny)
    tiny.fail = exc
    with pytest.raises(expected) as e:
        p.activations(cat, "late")
    if expected is RuntimeError:
        assert "forward raised" in str(e.value) and "bad input" in str(e.value)
    with pytest.raises(expected):
        p.capture(p.prepare(cat).requires_grad_(True), "conv1", grad=True, truncate=False)
    with pytest.raises(expected):
        p.forward(cat, grad=True)
    assert hook_count(tiny) == 0 and model_state(tiny) == before
    tiny.fail = None
    assert p.activations(cat, "late").shape == (1, 16, 16, 16)  # and it works again


def test_a_model_whose_forward_always_raises_gives_a_clear_error(tiny):
    tiny.fail = RuntimeError("boom")
    with pytest.raises(RuntimeError, match="(?s)forward raised.*boom.*input_size"):
        cw.Probe(tiny, input_size=32)
    assert hook_count(tiny) == 0


def test_probe_needs_a_module():
    for bad in (42, [nn.Conv2d(3, 3, 3)], None):
        with pytest.raises(TypeError, match="torch.nn.Module"):
            cw.Probe(bad)


# --- other models ---------------------------------------------------------------------------------

def test_grayscale_model(cat):
    torch.manual_seed(0)
    gray = Tiny(in_channels=1)
    p = cw.Probe(gray, input_size=32)
    assert p.transform.channels == 1 and len(p.transform.mean) == 1
    x = p.prepare(cat)  # an RGB photo is converted to gray
    assert x.shape == (1, 1, 32, 32)
    a = p.activations([cat, cw.sample_image("camera")], "conv1")
    assert a.shape == (2, 8, 32, 32)
    assert p.display(cat).shape == (1, 1, 32, 32)


def test_cifar_size_model_with_input_size_32(tiny, cat):
    p = cw.Probe(tiny, input_size=32)
    assert p.transform.input_size == (32, 32)
    assert p.layers.names == ["conv1", "conv2"]
    assert [l.shape for l in p.layers] == [(8, 32, 32), (16, 16, 16)]
    assert p.num_classes == 10 and p.class_name(3) == "class 3"
    top = p.predict(cat, k=3)[0]
    assert len(top) == 3 and abs(sum(s for *_, s in p.predict(cat, k=10)[0]) - 1) < 1e-4


def test_device_is_used_for_everything(probe, cat):
    assert probe.device == next(probe.model.parameters()).device
    assert probe.prepare(cat).device == probe.device
    assert probe.capture(probe.prepare(cat), 0)["_conv_stem"].device == probe.device


def test_folded_copy_gives_the_same_outputs_and_leaves_the_model_alone(probe):
    """BatchNorms folded into their convs (for dream loops): a private copy, same names and outputs."""
    import copy as _copy

    before = _copy.deepcopy(probe.model.state_dict())
    keep = "_blocks.8._expand_conv"  # its BatchNorm (_blocks.8._bn0) must stay: the raw conv output is read
    f = probe.folded([keep])
    assert f is not probe and f.model is not probe.model
    assert probe.folded([keep]) is f  # cached while the weights stay the same
    assert type(f.all_layers["_blocks.8._bn0"].module).__name__ == "BatchNorm2d"
    assert type(f.all_layers["_blocks.8._bn1"].module).__name__ == "Identity"
    x = probe.prepare(cw.sample_batch(2, seed=1))
    names = [keep, "_blocks.8._bn1", "_blocks.3._project_conv", "_blocks.15"]
    a = probe.capture(x, names[:1] + names[1:], truncate=False)
    b = f.capture(x, names, truncate=False)
    for n in names[:2] + names[3:]:  # a kept conv, a folded BatchNorm's output, a block output
        torch.testing.assert_close(b[n], a[n], rtol=1e-4, atol=1e-4 * float(a[n].abs().max()))
    # a conv whose BatchNorm was folded now gives the BatchNorm's output (so objectives keep their convs unfolded)
    assert not torch.allclose(b["_blocks.3._project_conv"], a["_blocks.3._project_conv"], atol=1e-2)
    torch.testing.assert_close(f.forward(x, preprocess=False), probe.forward(x, preprocess=False), rtol=1e-4, atol=1e-4)
    for k, v in probe.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.requires_grad for p in probe.model.parameters()) and hook_count(probe.model) == 0
    w = probe.model._conv_stem.weight
    saved = w.detach().clone()
    try:
        with torch.no_grad():  # an in-place write that leaves the values as they were: the copy stays
            w.mul_(1.0)
        assert probe.folded([keep]) is f
        w.data.mul_(1.5)  # a real change, even through .data (no autograd version): a new copy
        f2 = probe.folded([keep])
        assert f2 is not f
        torch.testing.assert_close(f2.forward(x, preprocess=False), probe.forward(x, preprocess=False), rtol=1e-4, atol=1e-4)
    finally:
        w.data.copy_(saved)


def test_folded_falls_back_to_the_model_when_nothing_folds():
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3))
    p = cw.Probe(m, device="cpu", input_size=16)
    assert p.folded() is p


class ConvUsedTwice(torch.nn.Module):
    """A conv whose output feeds a BatchNorm and is also used again: folding would change that second use."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)
            self.bn.weight.uniform_(0.5, 2)

    def forward(self, x):
        y = self.conv(x)
        return (self.bn(y) + y).mean((2, 3))


def test_folded_is_checked_and_falls_back_when_folding_changes_the_outputs():
    m = ConvUsedTwice()
    p = cw.Probe(m, device="cpu", input_size=16)
    assert p.folded() is p  # the pair is found, folded, and the check against the model rejects the copy
    assert type(m.bn).__name__ == "BatchNorm2d" and hook_count(m) == 0
