"""Loading models: the offline default with real weights, torchvision's, checkpoints, and their errors."""
import os
import socket

import pytest
import torch
from torch import nn

import cnnwidgets as cw
from cnnwidgets.hooks import hook_count
from cnnwidgets.images import IMAGENET_MEAN, IMAGENET_STD, Preprocess

CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = (967, 968)  # espresso, cup


def test_default_model_classifies_the_cat_as_a_cat(probe):
    assert probe.name == "efficientnet_lite0" and probe.num_classes == 1000
    top = probe.predict(cw.sample_image("chelsea"), k=5)[0]
    index, name, p = top[0]
    assert index in CATS, (index, name)
    assert sum(s for i, _, s in top if i in CATS) > 0.8
    (index, name, p), = probe.predict(cw.sample_image("coffee"), k=1)[0]
    assert index in COFFEE, name


def test_efficientnet_preprocessing_is_the_one_its_weights_expect(eff, probe):
    """TF-style (x*255 - 127) / 128 gives the right classes more probability than ImageNet's mean/std."""
    assert probe.transform.mean == (127 / 255,) * 3 and probe.transform.std == (128 / 255,) * 3
    imagenet = cw.Probe(eff, transform=Preprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD))
    for name, right in (("chelsea", CATS), ("coffee", COFFEE)):
        img = cw.sample_image(name)
        ours = probe.forward(img).softmax(-1)[0, list(right)].sum()
        theirs = imagenet.forward(img).softmax(-1)[0, list(right)].sum()
        assert ours > theirs, (name, float(ours), float(theirs))


def test_imagenet_class_names():
    names = cw.imagenet_classes()
    assert len(names) == 1000 and names[281] == "tabby" and names[967] == "espresso"


@pytest.mark.parametrize("name", ["resnet18", "vgg11", "alexnet", "mobilenet_v3_small", "densenet121"])
def test_torchvision_models_with_random_weights(name):
    model = cw.load_model(name, pretrained=False)
    assert not model.training
    p = cw.Probe(model)
    assert len(p.layers) > 4 and p.num_classes == 1000 and p.class_name(281) == "tabby"
    assert p.transform.mean == IMAGENET_MEAN and p.transform.input_size == (224, 224)
    a = p.activations(cw.sample_image("chelsea"), p.layers[2].name)
    assert a.shape == (1, *p.layers[2].shape)
    assert hook_count(model) == 0


def test_unknown_model_name():
    with pytest.raises(ValueError, match="Unknown model 'resnet-81'.*'resnet18'.*nn.Module"):
        cw.load_model("resnet-81")
    with pytest.raises(TypeError, match="model name or an nn.Module"):
        cw.load_model(3)


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled by this test")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_pretrained_without_weights_and_without_network_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _no_network(monkeypatch)
    with pytest.raises(RuntimeError) as e:
        cw.load_model("resnet18")  # pretrained=True by default: never silently random
    msg = str(e.value)
    assert "pretrained weights of 'resnet18'" in msg and "pretrained=False" in msg
    assert str(tmp_path) in msg  # where to put the file
    assert not list(tmp_path.rglob("*.pth"))


def test_pretrained_weights_from_the_local_torch_cache(tmp_path, monkeypatch):
    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _no_network(monkeypatch)
    weights = tvm.ResNet18_Weights.DEFAULT
    torch.manual_seed(1)
    state = tvm.resnet18().state_dict()
    ckpt = tmp_path / "hub" / "checkpoints" / os.path.basename(weights.url)
    ckpt.parent.mkdir(parents=True)
    torch.save(state, ckpt)
    model = cw.load_model("resnet18")
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    p = cw.Probe(model)
    assert p.classes == list(weights.meta["categories"]) and p.transform.input_size == (224, 224)
    assert p.transform.resize == 256 and p.transform.mean == IMAGENET_MEAN


# --- user models and checkpoints ------------------------------------------------------------------

class Small(nn.Module):
    def __init__(self, width=4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3)
        self.fc = nn.Linear(width, 2)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


def test_user_module_and_a_state_dict_checkpoint(tmp_path):
    torch.manual_seed(0)
    src = Small()
    path = tmp_path / "small.pt"
    torch.save(src.state_dict(), path)
    model = Small().train()
    assert cw.load_model(model, checkpoint=path) is model and model.training  # your module, left in its mode
    for k, v in model.state_dict().items():
        assert torch.equal(v, src.state_dict()[k])
    # a training script's {"state_dict": ...} and DataParallel's "module." prefixes are understood
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}, "epoch": 3}, path)
    cw.load_checkpoint(Small(), path)


def test_checkpoint_that_is_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(3)], path)
    with pytest.raises(ValueError, match="not a state dict"):
        cw.load_checkpoint(Small(), path)
    with pytest.raises(FileNotFoundError, match="Checkpoint not found"):
        cw.load_checkpoint(Small(), tmp_path / "missing.pt")


def test_checkpoint_that_does_not_match_the_model(tmp_path):
    path = tmp_path / "wide.pt"
    torch.save(Small(width=8).state_dict(), path)
    with pytest.raises(ValueError, match="does not match the model Small"):
        cw.load_checkpoint(Small(width=4), path)


class Evil:
    """Unpickling this would run code (create a directory)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_with_code_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"weight": Evil(str(marker))}, path)
    with pytest.raises(ValueError, match="weights-only"):
        cw.load_checkpoint(Small(), path)
    assert not marker.exists()
    with pytest.raises(ValueError, match="weights-only"):
        cw.load_model(Small(), checkpoint=path)
    assert not marker.exists()
