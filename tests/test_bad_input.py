"""Bad input gets one short, clear error naming what was expected (or is handled as documented), and nothing is
changed on the model: no hook, the same train flag, the same weights."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

import cnnwidgets as cw
from cnnwidgets import dream as D
from cnnwidgets.hooks import hook_count
from digits import CLASSES, SmallCNN


def short(e: BaseException) -> None:
    """One message of ours, not a chained traceback of internal frames."""
    assert e.__cause__ is None and (e.__suppress_context__ or e.__context__ is None), repr(e.__cause__ or e.__context__)
    assert len(str(e)) < 600


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return SmallCNN().train()


def state(model):
    return ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()], hook_count(model),
            {k: v.clone() for k, v in model.state_dict().items()})


def same(a, b):
    assert a[:3] == b[:3]
    assert all(torch.equal(a[3][k], b[3][k]) for k in a[3])


def test_probe_arguments(model):
    before = state(model)
    for bad, err, text in [
        (dict(input_size=-3), ValueError, "input_size must be positive"),
        (dict(input_size="224"), TypeError, "input_size is a number of pixels"),
        (dict(input_size=28, device="cuda" if not torch.cuda.is_available() else "cuda:99"), ValueError, "device="),
        (dict(input_size=28, device="gpu0"), ValueError, "is not a device"),
        (dict(input_size=28, mean=(0.5, 0.5, 0.5)), ValueError, "mean has 3 values but the model takes 1-channel"),
        (dict(input_size=28, std=0.0), ValueError, "std must be finite and positive"),
        (dict(input_size=28, channels=2), ValueError, "channels is 1"),
        (dict(input_size=28, classes=["a", "b"]), ValueError, "2 class names but the model outputs 10"),
        (dict(input_size=28, classes=42), TypeError, "classes is a list"),
        (dict(input_size=28, transform="ImageNet"), TypeError, "transform is a cnnwidgets.Preprocess"),
    ]:
        with pytest.raises(err, match=text) as e:
            cw.Probe(model, **bad)
        short(e.value)
    same(state(model), before)


def test_classes_from_a_list_a_dict_or_a_dataset(model):
    p = cw.Probe(model, input_size=28, mean=0, std=1, classes=CLASSES)
    assert p.class_name(3) == "3" and "10 named classes" in repr(p)
    p = cw.Probe(model, input_size=28, mean=0, std=1, classes={0: "zero", 9: "nine"})
    assert p.class_name(0) == "zero" and p.class_name(9) == "nine" and p.class_name(4) == "class 4"

    class Data(torch.utils.data.Dataset):
        classes = [f"digit {i}" for i in range(10)]

    assert cw.Probe(model, input_size=28, mean=0, std=1, classes=Data()).class_name(7) == "digit 7"


def test_a_guessed_normalisation_is_said_once_with_how_to_set_it(model):
    with pytest.warns(cw.probe.PreprocessingGuessed, match="(?s)guessed.*mean.*Probe\\(model, input_size=28, mean="):
        p = cw.Probe(model, input_size=28)
    assert "guessed" in repr(p) and "grayscale 28×28" in repr(p)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = cw.Probe(model, input_size=28, mean=0.1307, std=0.3081)  # told: no warning
    assert "guessed" not in repr(q) and "0.131" in repr(q)
    rgb = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 10))
    with pytest.warns(cw.probe.PreprocessingGuessed, match="ImageNet's mean and std.*e.g. CIFAR-10's: Probe\\(model, "
                      "input_size=32, mean=\\(0.491"):
        cw.Probe(rgb, device="cpu")  # an RGB model's example has three numbers per statistic


def test_a_small_model_without_an_input_size_gets_the_first_size_it_accepts(model):
    with pytest.warns(cw.probe.PreprocessingGuessed, match="28x28 inputs \\(the first size it accepted\\)"):
        p = cw.Probe(model, mean=0, std=1)
    assert p.transform.input_size == (28, 28) and p.transform.channels == 1


def test_layers_given_as_floats_numpy_ints_and_tensors(model):
    p = cw.Probe(model, input_size=28, mean=0, std=1)
    assert p.layer(np.int64(1)) is p.layers[1] and p.layer(torch.tensor(0)) is p.layers[0]
    for bad in (2.0, torch.tensor(1.0), torch.tensor([0, 1])):
        with pytest.raises(TypeError, match="whole number") as e:
            p.layer(bad)
        short(e.value)
    with pytest.raises(KeyError, match="No layer named 'cnn.9'") as e:
        p.layer("cnn.9")
    assert str(e.value).startswith("No layer")  # no quotes around the message


def test_predict_k(model):
    p = cw.Probe(model, input_size=28, mean=0, std=1, classes=CLASSES)
    img = torch.rand(1, 28, 28)
    for k in (0, -1, 2.5):
        with pytest.raises((ValueError, TypeError), match="k") as e:
            p.predict(img, k=k)
        short(e.value)
    assert len(p.predict(img, k=10**9)[0]) == 10  # all of them


def test_images(model, tmp_path):
    p = cw.Probe(model, input_size=28, mean=0, std=1)
    before = state(model)
    for bad, err, text in [
        (torch.full((1, 28, 28), float("nan")), ValueError, "NaN"),
        (torch.full((1, 28, 28), float("inf")), ValueError, "inf"),
        (torch.zeros(1, 28, 28, dtype=torch.complex64), TypeError, "complex"),
        (torch.zeros(2, 3, 1, 28, 28), ValueError, "5-D"),
    ]:
        with pytest.raises(err, match=text) as e:
            p.activations(bad, p.layers[0].name)
        short(e.value)
    assert p.activations(np.random.rand(28, 28), p.layers[0].name).shape[:2] == (1, 8)  # a 2-D array is a gray image
    from PIL import Image

    a16 = (np.linspace(0, 1, 28 * 28).reshape(28, 28) * 65535).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path / "sixteen.png")
    t = cw.images.to_tensor(tmp_path / "sixteen.png", 1)
    assert float(t.max()) == pytest.approx(1.0, abs=1e-4) and float(t.mean()) == pytest.approx(0.5, abs=0.01)
    Image.fromarray(np.linspace(0, 0.8, 28 * 28, dtype=np.float32).reshape(28, 28), mode="F").save(tmp_path / "f.tif")
    t = cw.images.to_tensor(tmp_path / "f.tif", 1)
    assert float(t.max()) == pytest.approx(0.8, abs=1e-4)  # its real range, not saturated
    same(state(model), before)


class DictOut(nn.Module):
    def __init__(self, key="logits"):
        super().__init__()
        self.net, self.key = SmallCNN(), key

    def forward(self, x):
        return {self.key: self.net(x), "features": x.mean((1, 2, 3))}


def test_a_model_that_returns_a_dict():
    with pytest.warns(cw.probe.OutputChosen, match="DictOut returns a dict \\('logits', 'features'\\): its 'logits' "
                      "is read as the class scores") as said:
        p = cw.Probe(DictOut(), input_size=28, mean=0, std=1)  # "logits" is found, and said once
        assert p.num_classes == 10 and len(p.predict(torch.rand(1, 28, 28), 3)[0]) == 3
    assert len([w for w in said if w.category is cw.probe.OutputChosen]) == 1
    assert "its 'logits' is read" in repr(p)


class TupleOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = SmallCNN()

    def forward(self, x):
        return self.net(x), x.mean()


def test_a_model_that_returns_a_tuple_says_which_element_is_read():
    with pytest.warns(cw.probe.OutputChosen, match="TupleOut returns a tuple of 2: its first element"):
        p = cw.Probe(TupleOut(), input_size=28, mean=0, std=1)
    assert p.num_classes == 10
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cw.Probe(DictOut("scores"), input_size=28, mean=0, std=1, output_key="scores")  # told: nothing to say
    with pytest.raises(ValueError, match="output_key='scores'") as e:
        cw.Probe(DictOut("scores"), input_size=28, mean=0, std=1)
    short(e.value)
    p = cw.Probe(DictOut("scores"), input_size=28, mean=0, std=1, output_key="scores")
    a = cw.attribution.attribute(p, torch.rand(1, 28, 28), "saliency", target=2)
    assert a.map.shape == (28, 28)


def test_torchscript_compiled_wrapped_and_bfloat16_models(model):
    with pytest.raises(TypeError, match="TorchScript") as e:
        cw.Probe(torch.jit.trace(model.eval(), torch.rand(1, 1, 28, 28)), input_size=28)
    short(e.value)
    t0 = time.perf_counter()
    p = cw.Probe(torch.compile(model), input_size=28, mean=0, std=1)  # unwrapped at once, never compiled
    assert time.perf_counter() - t0 < 10 and p.model is model
    assert cw.Probe(nn.DataParallel(model), input_size=28, mean=0, std=1).model is model
    half = SmallCNN().to(torch.bfloat16).eval()
    p = cw.Probe(half, input_size=28, mean=0, std=1)  # runs on float32 copies; the model stays bfloat16
    x = torch.rand(1, 1, 28, 28)
    a = p.activations(x, p.layers[0].name)
    assert a.dtype == torch.float32 and next(half.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        ref = half.cnn[0](x.to(torch.bfloat16)).float()
    torch.testing.assert_close(a, ref, rtol=0.05, atol=0.05)
    with torch.no_grad():
        half.cnn[0].weight.mul_(2)  # the float32 copies follow the model's changes
    torch.testing.assert_close(p.activations(x, p.layers[0].name) - half.cnn[0].bias.float()[None, :, None, None],
                               2 * (a - half.cnn[0].bias.float()[None, :, None, None]), rtol=0.02, atol=0.02)


def test_channels_out_of_range_or_not_whole(model):
    p = cw.Probe(model, input_size=28, mean=0, std=1)
    fm = cw.FeatureMaps(p, torch.rand(1, 28, 28))
    for c in (-1, 8):
        with pytest.raises(Exception, match="out of range: layer 'cnn.0' has 8 channels") as e:
            fm.channel = c
    assert fm.channel == 0
    with pytest.raises(TypeError, match="whole number"):
        D.channel("cnn.0", 2.7)
    with pytest.raises(ValueError, match="channel number"):
        D.as_objective("cnn.0:abc")
    for bad, err in (({"k": -1}, ValueError), ({"k": 0}, ValueError), ({"channel": 2.5}, TypeError), ({"channel": 99}, IndexError)):
        kw = {"channel": 1, "k": 3, **bad}
        with pytest.raises(err) as e:
            cw.embedding.top_images(p, torch.rand(6, 1, 28, 28), "cnn.0", **kw)
        short(e.value)
    fm.close()


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(28 * 28, 32), nn.Linear(32, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def test_a_model_without_convolutions():
    p = cw.Probe(MLP(), input_size=28, channels=1, mean=0, std=1)
    assert len(p.layers) == 0 and p.num_classes == 10
    for make in (lambda: cw.FeatureMaps(p), lambda: cw.Embedding(p, torch.rand(8, 1, 28, 28)), lambda: cw.Explorer(p)):
        with pytest.raises(ValueError, match="has none with spatial output") as e:
            make()
        short(e.value)
    h = cw.Histogram(p)  # the weights of any model
    assert h.layer == "fc1"
    h.close()
