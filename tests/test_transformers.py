"""Vision transformers as feature maps: token layers (ViT) and channels-last maps (Swin) read as C x H x W inside the
Probe, and every analysis on them (Grad-CAM, Guided Grad-CAM, dream objectives, CKA). Real torchvision models with
random weights."""
import re

import numpy as np
import pytest
import torch
from torch import nn

import cnnwidgets as cw
from cnnwidgets import tokens
from cnnwidgets.analyses import attribution as A
from cnnwidgets.analyses import cka
from cnnwidgets.analyses import dream as D
from cnnwidgets.analyses.dream import jobs
from cnnwidgets.hooks import hook_count


def vit_model(name="vit_b_16"):
    m = cw.load_model(name, pretrained=False)
    torch.manual_seed(0)
    nn.init.normal_(m.heads.head.weight, std=0.02)  # torchvision starts the head at zero: every gradient would be 0
    return m


@pytest.fixture(scope="module")
def vit():
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return cw.Probe(vit_model(), device="cpu")


@pytest.fixture(scope="module")
def swin():
    return cw.Probe(cw.load_model("swin_t", pretrained=False), device="cpu")


@pytest.fixture(scope="module")
def image():
    return cw.sample_image("chelsea")


def test_vit_lists_its_encoder_blocks_as_spatial_layers(vit):
    names = vit.layers.names
    assert names == ["conv_proj"] + [f"encoder.layers.encoder_layer_{i}" for i in range(12)]
    l = vit.layer("encoder.layers.encoder_layer_3")
    assert l.spatial and l.shape == (768, 14, 14) and l.type == "EncoderBlock"
    assert l.reshape.kind == "tokens" and l.reshape.extra == 1 and l.reshape.grid == (14, 14)
    assert l.label == "encoder.layers.encoder_layer_3 · EncoderBlock · 768×14×14 (197 tokens: 1 class token + 14×14 grid)"


def test_vit_maps_are_the_grid_tokens_in_row_major_order(vit, image):
    """The maps are the 196 grid tokens (the class token set aside), token k at row k // 14, column k % 14."""
    name = "encoder.layers.encoder_layer_2"
    maps = vit.activations(image, name)
    assert maps.shape == (1, 768, 14, 14)
    x = vit.prepare(image)
    with torch.no_grad():  # the raw token sequence, from the encoder's own modules (the model is in eval mode)
        m = vit.model
        h = m._process_input(x)
        h = torch.cat([m.class_token.expand(1, -1, -1), h], dim=1)
        h = m.encoder.dropout(h + m.encoder.pos_embedding)
        for i in range(3):
            h = m.encoder.layers[i](h)
        raw = h
    assert raw.shape == (1, 197, 768)
    torch.testing.assert_close(maps[0, :, 3, 5], raw[0, 1 + 3 * 14 + 5], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(maps, raw[:, 1:].reshape(1, 14, 14, 768).permute(0, 3, 1, 2), rtol=1e-4, atol=1e-4)


def test_the_class_token_is_set_aside_and_can_be_read_apart(vit, image):
    name = "encoder.layers.encoder_layer_11"
    cls = vit.extra_tokens(image, name)
    assert cls.shape == (1, 1, 768)
    with torch.no_grad():  # the class token after the last block is what the head reads (after the final norm)
        logits = vit.model.heads(vit.model.encoder.ln(cls[:, 0]))
    torch.testing.assert_close(logits, vit.forward(image).cpu(), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="'conv_proj' is not a token layer"):
        vit.extra_tokens(image, "conv_proj")


def test_feature_maps_show_the_class_token_apart(vit, image):
    """The channel's large view says the class token's value, which the 14×14 map leaves out; CNN layers say none."""
    name = "encoder.layers.encoder_layer_3"
    fm = cw.FeatureMaps(vit, image, layer=name)
    fm.channel = 5
    cls = vit.extra_tokens(image, name)[0, 0, 5].item()
    text = fm.big_title.value
    assert "class token (not in the map):" in text
    shown = float(re.search(r"class token \(not in the map\): ([-0-9.e]+)", text).group(1))
    assert shown == pytest.approx(cls, rel=1e-3, abs=1e-3)
    fm.layer = "conv_proj"
    assert "class token" not in fm.big_title.value
    fm.close()


def test_swin_lists_its_blocks_as_channels_last_maps(swin, image):
    blocks = [l for l in swin.layers if l.reshape is not None]
    assert [l.name for l in blocks][:3] == ["features.1.0", "features.1.1", "features.2"]
    assert all(l.reshape.kind == "channels_last" for l in blocks)
    assert swin.layer("features.7.1").shape == (768, 7, 7)
    assert swin.layers[0].name == "features.0.0" and swin.layers[0].reshape is None  # the patch embedding conv
    a = swin.activations(image, "features.3.1")
    assert a.shape == (1, 192, 28, 28) and a.is_contiguous()


def test_cnn_layer_lists_are_unchanged():
    p = cw.Probe(cw.load_model("resnet18", pretrained=False), device="cpu")
    assert all(l.reshape is None for l in p.all_layers)
    assert len(p.layers) == 20 and all(l.type == "Conv2d" for l in p.layers)


@pytest.mark.parametrize("method", ["gradcam", "guided_gradcam"])
def test_gradcam_on_token_layers(vit, image, method):
    before = hook_count(vit.model)
    a = A.attribute(vit, image, method, target=281)
    assert a.layer == "encoder.layers.encoder_layer_10"  # the last block's input: its grid tokens reach the class token
    assert a.map.shape == (224, 224) and np.isfinite(a.raw).all() and np.abs(a.raw).max() > 0
    b = A.attribute(vit, image, method, target=281, layer="encoder.layers.encoder_layer_4")
    assert np.abs(b.raw).max() > 0
    assert hook_count(vit.model) == before == 0


def test_gradcam_on_a_token_layer_is_gradcam_of_its_maps(vit, image):
    """The coarse map is ReLU(sum_c mean(dS/dA_c) A_c) over the 14x14 maps, the gradient taken through the forward."""
    name = "encoder.layers.encoder_layer_6"
    a = A.attribute(vit, image, "gradcam", target=5, layer=name)
    x = A.pixels(vit, image)
    fn = vit.pixel_model()
    maps, grads = vit.layer_gradient((x - fn.mean) / fn.std, name, lambda out: out[:, 5].sum())
    assert maps.shape == grads.shape == (1, 768, 14, 14) and grads.abs().max() > 0
    want = torch.relu((grads.mean((2, 3), keepdim=True) * maps).sum(1))[0]
    np.testing.assert_allclose(a.coarse, want.numpy(), rtol=1e-4, atol=1e-7)


def test_guided_gradcam_on_swin_v2_and_swin(swin, image):
    """Swin V2's position-bias MLP runs its ReLU on constants: guided backprop leaves that ReLU alone."""
    p = cw.Probe(cw.load_model("swin_v2_t", pretrained=False), device="cpu", input_size=128)
    for probe in (p, swin):
        a = A.attribute(probe, image, "guided_gradcam", target=3)
        assert a.map.shape == tuple(probe.transform.input_size) and np.isfinite(a.raw).all()  # zero where the ReLU-ed CAM is
        c = A.attribute(probe, image, "gradcam", target=3, layer=probe.layers[-1].name)
        assert c.coarse.shape == probe.layers[-1].shape[1:] and np.isfinite(c.raw).all()
        assert hook_count(probe.model) == 0


def test_dream_on_token_layers(vit, swin):
    assert jobs.default_size(vit) == 224  # a patch grid takes only its own size
    for p, layer in ((vit, "encoder.layers.encoder_layer_5"), (swin, "features.5.1")):
        last = D.run(p, D.channel(layer, 5), steps=3)
        assert last.image.shape[-2:] == (224, 224) and np.isfinite(last.objective)
    last = D.run(vit, D.neuron("encoder.layers.encoder_layer_3", 7, x=3, y=4) + D.layer("encoder.layers.encoder_layer_1"),
                 steps=2, preset="naive")
    assert np.isfinite(last.objective)
    assert hook_count(vit.model) == 0


def test_cka_between_a_cnn_and_a_vit(vit):
    cnn = cw.Probe(cw.load_model("resnet18", pretrained=False), device="cpu")
    imgs = [cw.sample_image(n) for n in ("chelsea", "coffee", "astronaut", "rocket")]
    blocks = [f"encoder.layers.encoder_layer_{i}" for i in (0, 5, 11)]
    r = cka.model_similarity(cnn, vit, imgs, ["layer1.0.conv1", "layer4.1.conv2"], blocks, estimator="biased")
    assert r.matrix.shape == (2, 3) and r.cols == blocks and np.isfinite(r.matrix).all()
    same = cka.model_similarity(vit, vit, imgs, blocks, blocks, estimator="biased")
    np.testing.assert_allclose(np.diag(same.matrix), 1.0, atol=1e-4)
    # the panel, model x model: the ViT's columns are its blocks, named by block
    from cnnwidgets.widgets.cka_heatmap import CKAHeatmap

    hm = CKAHeatmap(cnn, imgs, mode="models", other=vit, layers=["layer1.0.conv1", "layer4.1.conv2"], batch_size=4,
                    run_mode="foreground")
    hm.join()
    assert hm.result.matrix.shape == (2, 13) and hm.result.cols[1:] == [f"encoder.layers.encoder_layer_{i}" for i in range(12)]
    hm.select_cell(1, 5)
    assert hm.layer_a == "layer4.1.conv2" and hm.layer_b == "encoder.layers.encoder_layer_4"
    assert hook_count(vit.model) == 0 and hook_count(cnn.model) == 0


# --- bad input ---------------------------------------------------------------------------------

class NonSquareTokens(nn.Module):
    """A toy transformer: 16 x 16 patches every ``stride`` pixels, then a class token and two blocks."""

    def __init__(self, stride=16):
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 16, stride=stride)
        self.cls = nn.Parameter(torch.zeros(1, 1, 8))
        self.blocks = nn.Sequential(*[Block() for _ in range(2)])
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(len(t), -1, -1), t], 1)
        return self.head(self.blocks(t)[:, 0])


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 8)

    def forward(self, t):
        return t + self.fc(self.norm(t))


def test_token_grid_found_for_a_non_square_input_and_given_when_it_is_not():
    p = cw.Probe(NonSquareTokens(), device="cpu", input_size=(192, 256), mean=0.5, std=0.5)
    assert p.layers.names == ["embed", "blocks.0", "blocks.1"] and p.layer("blocks.1").shape == (8, 12, 16)
    # overlapping patches (16 px every 12 px) of a 96 x 512 input: 7 x 42 tokens, which the input's size does not say
    with pytest.warns(UserWarning, match=r"blocks.0 outputs 295 tokens of 8 channels.*token_grid=\(H, W\)"):
        q = cw.Probe(NonSquareTokens(12), device="cpu", input_size=(96, 512), mean=0.5, std=0.5)
    assert q.layers.names == ["embed"]
    r = cw.Probe(NonSquareTokens(12), device="cpu", input_size=(96, 512), mean=0.5, std=0.5, token_grid=(7, 42))
    assert r.layers.names == ["embed", "blocks.0", "blocks.1"] and r.layer("blocks.0").shape == (8, 7, 42)
    assert r.layer("blocks.0").reshape.extra == 1
    assert r.activations(torch.rand(3, 96, 512), "blocks.0").shape == (1, 8, 7, 42)
    with pytest.raises(TypeError, match="token_grid is the"):
        cw.Probe(NonSquareTokens(), device="cpu", input_size=(96, 512), token_grid="6x32")


def test_a_fixed_size_model_given_another_size_resizes_and_says_so(vit):
    x = torch.rand(1, 3, 160, 160)
    with pytest.warns(UserWarning, match=r"vit_b_16 takes only 224x224 inputs: the 160x160 batch was resized to 224x224"):
        a = vit.activations(x, "encoder.layers.encoder_layer_0", preprocess=False)
    assert a.shape == (1, 768, 14, 14)
    sw = cw.Probe(cw.load_model("resnet18", pretrained=False), device="cpu", input_size=64)
    assert not sw.fixed_input_size()
    assert sw.prepare(torch.rand(1, 3, 96, 96), preprocess=False).shape[-2:] == (96, 96)  # any size runs: as it is


def test_detect():
    assert tokens.detect((197, 768), (224, 224)).grid == (14, 14)
    assert tokens.detect((198, 192), (224, 224)).extra == 2  # class + distillation
    assert tokens.detect((1374, 384), (518, 518), extra_hint=5).extra == 5
    assert tokens.detect((56, 56, 96), (224, 224)).kind == "channels_last"
    assert tokens.detect((64, 56, 56), (224, 224)) is None  # C x H x W stays as it is
    assert tokens.detect((7, 7, 7), (224, 224)) is None  # both read as grids: taken as C x H x W
    assert tokens.detect((1000,), (224, 224)) is None


# --- timm --------------------------------------------------------------------------------------

def test_timm_pretrained_without_cache_or_network_is_a_clear_error(tmp_path):
    """No copy in the (empty) Hugging Face cache and no download (offline): the error torchvision's models give, never
    a silently random model. A subprocess: huggingface_hub reads HF_HUB_OFFLINE when it is imported."""
    pytest.importorskip("timm", reason="timm is an optional dependency (the dev extra installs it)")
    import os
    import subprocess
    import sys

    code = ("import cnnwidgets as cw\n"
            "try:\n    cw.load_model('timm:vit_tiny_patch16_224')\n"
            "except RuntimeError as e:\n    print('ERROR', e)\nelse:\n    print('LOADED')\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "TORCH_HOME": str(tmp_path / "torch")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120).stdout
    assert out.startswith("ERROR Could not get the pretrained weights of timm:vit_tiny_patch16_224 "
                          "(timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k)"), out
    assert "load_model('timm:vit_tiny_patch16_224', pretrained=False) for random weights" in out
    assert "load_model('efficientnet_lite0')" in out and "LOADED" not in out


@pytest.mark.parametrize("name, layer, index", [("vit_tiny_patch16_224", "blocks.5", 5),
                                                ("swin_tiny_patch4_window7_224", "layers.1.blocks.1", 1)])
def test_token_layers_are_what_timms_forward_intermediates_gives(name, layer, index, image):
    """timm's own reading of its blocks as maps (prefix tokens split off, NCHW): the Probe's maps are the same numbers."""
    pytest.importorskip("timm", reason="timm is an optional dependency (the dev extra installs it)")
    m = cw.load_model(f"timm:{name}", pretrained=False)
    p = cw.Probe(m, device="cpu")
    ours = p.activations(image, layer)
    with torch.no_grad():
        theirs = m.forward_intermediates(p.prepare(image).cpu(), indices=[index], norm=False, output_fmt="NCHW",
                                         intermediates_only=True)[0]
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_timm_models_bring_their_preprocessing_and_classes():
    pytest.importorskip("timm", reason="timm is an optional dependency (the dev extra installs it)")
    m = cw.load_model("timm:vit_tiny_patch16_224", pretrained=False)
    info = m.cnnwidgets_info
    assert info.name == "timm:vit_tiny_patch16_224" and not info.pretrained and len(info.classes) == 1000
    pre = info.preprocess
    assert pre.mean == (0.5, 0.5, 0.5) and pre.crop == (224, 224) and pre.resize == 248 and pre.interpolation == "bicubic"
    p = cw.Probe(m, device="cpu")
    assert p.layers.names[1:] == [f"blocks.{i}" for i in range(12)] and p.layer("blocks.0").shape == (192, 14, 14)
    with pytest.raises(ValueError, match=r"Unknown timm model 'vit_tiny_patch16_22'\. Did you mean timm:vit_tiny_patch16_224"):
        cw.load_model("timm:vit_tiny_patch16_22", pretrained=False)


# --- attention ---------------------------------------------------------------------------------

def test_attention_of_a_vit_per_head_averaged_and_rolled_out(vit, image):
    from cnnwidgets.analyses.attribution.methods.attention import attention_weights, rollout

    assert "attention" in [m.name for m in A.registered(vit)] and "attention" not in A.METHODS  # ViTs only
    # the weights are nn.MultiheadAttention's own, per head
    blk = vit.model.encoder.layers[2]
    t = torch.randn(1, 197, 768)
    with torch.no_grad():
        _, want = blk.self_attention(t, t, t, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(attention_weights(blk.self_attention, t), want, rtol=1e-4, atol=1e-6)
    # one block, one head: the class token's row over the 14 x 14 grid tokens, read from the block's own input
    name = "encoder.layers.encoder_layer_2"
    a = A.attribute(vit, image, "attention", target=1, attention="block", head=3, layer=name)
    x = A.pixels(vit, image)
    fn = vit.pixel_model()
    tokens_in = vit.module_inputs((x - fn.mean) / fn.std, [f"{name}.self_attention"])[f"{name}.self_attention"]
    assert tokens_in.shape == (1, 197, 768)
    want = attention_weights(blk.self_attention, tokens_in)[0, 3, 0, 1:].reshape(14, 14)
    assert a.layer == name and a.map.shape == (224, 224)
    np.testing.assert_allclose(a.coarse, want.detach().numpy(), rtol=1e-5, atol=1e-8)
    w = A.attribute(vit, image, "attention", target=1, attention="block", head=-1, layer=name)
    assert not np.allclose(w.coarse, a.coarse)
    assert abs(a.coarse.sum() - 1.0) < 0.2  # most of the class token's attention goes to the grid
    # rollout: the product of (A + I) / 2 through the blocks, row-normalised
    r = A.attribute(vit, image, "attention", target=1)
    assert r.layer == "encoder.layers.encoder_layer_11" and np.isfinite(r.raw).all() and r.raw.min() >= 0
    eye = torch.eye(3)
    m = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.2, 0.3, 0.5]])[None]
    torch.testing.assert_close(rollout([m, m]), ((m + eye) / 2) @ ((m + eye) / 2))
    with pytest.raises(ValueError, match=r"head 12 is out of range: this model has 12 heads"):
        A.attribute(vit, image, "attention", target=1, attention="block", head=12)
    assert hook_count(vit.model) == 0


def test_attention_in_the_saliency_panel_of_a_vit_only(vit, image):
    s = cw.Saliency(vit, image, method="attention")
    s.join()
    assert ("Attention (ViT)", "attention") in s.method_select.options and s.result.method == "attention"
    assert s.result.coarse.shape == (14, 14)
    cnn = cw.Probe(cw.load_model("resnet18", pretrained=False), device="cpu", input_size=64)
    with pytest.raises(ValueError, match="Attention maps need a vision transformer's blocks"):
        A.attribute(cnn, image, "attention", target=1)
    assert "attention" not in [v for _, v in cw.Saliency(cnn, image).method_select.options]
