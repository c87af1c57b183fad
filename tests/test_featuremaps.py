"""FeatureMaps: what the panel shows is the activations, pixel for pixel; controls, paging, models, bad input."""
import io

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import cnnwidgets as cw
from cnnwidgets import render
from cnnwidgets.analyses import stats
from cnnwidgets.hooks import hook_count
from cnnwidgets.widgets.featuremaps import BIG_PX, FeatureMaps


@pytest.fixture(scope="module")
def fm(probe, cat):
    return FeatureMaps(probe, cat)


def expected_tiles(probe, image, fm):
    """The page's tiles computed independently: the Probe's activations -> normalize -> colorize."""
    acts = probe.activations(image, fm.layer)[0]
    chans = fm.visible_channels[list(fm.plan.page(fm.page))]
    if fm.norm == "layer":
        f = acts[torch.isfinite(acts)]
        unit = render.normalize(acts[chans], lo=float(f.min()), hi=float(f.max()))
    else:
        unit = render.normalize(acts[chans], "channel")
    return chans, render.colorize(stats.downsample(unit, fm.plan.scale), fm.cmap)


def assert_grid_shows(probe, image, fm):
    shown = render.decode(fm.grid_image.value)
    chans, tiles = expected_tiles(probe, image, fm)
    th, tw = fm.plan.tile_hw
    cols = fm.plan.cols(fm.page)
    assert tiles.shape[1:3] == (th, tw)
    for i in range(len(chans)):
        y, x = render.tile_origin(i, cols, th, tw, fm.plan.pad)
        np.testing.assert_array_equal(shown[y : y + th, x : x + tw], tiles[i], err_msg=f"tile {i} (channel {chans[i]})")
    return shown


@pytest.mark.parametrize("index", [0, 8, 30, -1])
def test_grid_tiles_equal_the_activations(probe, cat, fm, index):
    fm.layer = probe.layers[index].name
    assert fm.message.value == ""
    shown = assert_grid_shows(probe, cat, fm)
    n = probe.layers[index].channels
    assert fm.plan.n == n
    assert shown.shape[0] > 0 and f"of {n}" in fm.header.value


def test_options_change_the_pixels_accordingly(probe, cat, fm):
    fm.layer = probe.layers[12].name
    before = fm.grid_image.value
    fm.cmap_picker.value = "gray"
    fm.norm_picker.value = "layer"
    fm.order_picker.value = "mean"
    try:
        assert (fm.cmap, fm.norm, fm.order) == ("gray", "layer", "mean")
        assert fm.grid_image.value != before
        acts = probe.activations(cat, fm.layer)[0]
        means = acts.double().mean(dim=(1, 2)).numpy()
        assert list(fm.visible_channels) == list(np.argsort(-means, kind="stable"))
        assert "mean activation" in fm.header.value and "layer's range" in fm.header.value
        assert_grid_shows(probe, cat, fm)
    finally:
        fm.cmap, fm.norm, fm.order = "viridis", "channel", "index"


def test_slider_changes_the_image_and_the_layer_trait(probe, fm):
    fm.layer = probe.layers[3].name
    before = fm.grid_image.value
    fm.slider.value = probe.layers[20].name
    assert fm.layer == probe.layers[20].name
    assert fm.grid_image.value != before
    l20 = probe.layers[20]
    assert all(part in fm.layer_label.value for part in (l20.name, l20.type, "×".join(map(str, l20.shape)), "21 of 49"))
    assert [o[0] for o in fm.slider.options][20] == probe.layers[20].label  # name · type · shape


def test_channel_pick_and_tile_click_change_the_large_view(probe, cat, fm):
    fm.layer = probe.layers[5].name
    fm.channel = 0
    before = fm.big_view.value
    fm.channel_picker.value = 7
    assert fm.channel == 7 and fm.big_view.value != before and "channel 7" in fm.big_title.value
    big = render.decode(fm.big_view.value)
    acts = probe.activations(cat, fm.layer)[0, 7]
    want = render.upscale(render.colorize(render.normalize(acts), fm.cmap), BIG_PX)
    np.testing.assert_array_equal(big, want)
    # a click on the grid, as bqplot sends it: pixel coordinates, y counted from the bottom
    th, tw = fm.plan.tile_hw
    cols = fm.plan.cols(0)
    H = render.decode(fm.grid_image.value).shape[0]
    y, x = render.tile_origin(cols + 2, cols, th, tw)  # second row, third tile
    fm.grid_mark._handle_custom_msgs(None, {"event": "element_click",
                                            "data": {"click_x": x + tw / 2, "click_y": H - (y + th / 2)}})
    assert fm.channel == int(fm.visible_channels[cols + 2])
    assert fm._sel.visible


def test_input_choices_change_the_maps(probe, fm):
    fm.layer = probe.layers[2].name
    before = fm.grid_image.value
    fm.input.dropdown.value = "uniform noise"
    try:
        assert fm.grid_image.value != before
        assert_grid_shows(probe, fm.input.image, fm)
        fm.set_image(cw.sample_image("coffee"), "coffee cup")
        assert fm.input.name == "coffee cup"
        assert_grid_shows(probe, cw.sample_image("coffee"), fm)
    finally:
        fm.input.dropdown.value = "your image"


def test_upload_of_an_image_and_of_a_non_image(probe, cat, fm):
    buf = io.BytesIO()
    cw.sample_image("rocket").save(buf, format="PNG")
    assert fm.input.load_upload("rocket.png", buf.getvalue())
    assert fm.input.name == "upload: rocket.png" and fm.message.value == ""
    assert_grid_shows(probe, cw.sample_image("rocket"), fm)
    before = fm.grid_image.value
    # through the FileUpload widget itself (ipywidgets 8 value format)
    import datetime

    fm.input.upload.value = ({"name": "notes.txt", "type": "text/plain", "size": 5, "content": memoryview(b"hello"),
                              "last_modified": datetime.datetime.now(datetime.timezone.utc)},)
    assert "not an image" in fm.message.value and "notes.txt" in fm.message.value
    assert fm.grid_image.value == before  # the maps stay as they were
    fm.input.dropdown.value = "your image"


def test_paging_shows_every_one_of_2048_channels():
    probe = cw.Probe(torchvision.models.resnet50(weights=None))
    layer = next(l for l in probe.layers if l.channels == 2048)
    img = cw.sample_image("astronaut")
    fm = FeatureMaps(probe, img, layer=layer.name)
    assert fm.plan.pages == 8 and fm.page == 0
    assert "channels 1–256 of 2048" in fm.header.value and "page 1 of 8" in fm.page_label.value
    seen = []
    for k in range(8):
        assert fm.page == k
        assert f"channels {256 * k + 1}–{256 * (k + 1)} of 2048" in fm.header.value
        assert_grid_shows(probe, img, fm)
        seen += list(fm.visible_channels[list(fm.plan.page(k))])
        fm.next_button.click()
    assert sorted(seen) == list(range(2048))
    assert fm.next_button.disabled
    fm.channel = 5  # picking a channel on another page turns to its page
    assert fm.page == 0
    assert hook_count(probe.model) == 0


class Tiny(nn.Module):
    """A user-defined CNN; ``in_ch=1`` makes it a grayscale model."""

    def __init__(self, in_ch=3, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc = nn.Linear(16 * 16, classes)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(self.pool(x).flatten(1))


def _models():
    yield "tiny", lambda: Tiny()
    yield "grayscale", lambda: Tiny(in_ch=1)
    yield "alexnet", lambda: torchvision.models.alexnet(weights=None)
    yield "resnet18", lambda: torchvision.models.resnet18(weights=None)
    yield "vgg16", lambda: torchvision.models.vgg16(weights=None)


@pytest.mark.parametrize("name,make", list(_models()), ids=[n for n, _ in _models()])
def test_other_models(name, make):
    torch.manual_seed(0)
    model = make()
    model.train()
    probe = cw.Probe(model, input_size=64 if name in ("tiny", "grayscale") else None)
    img = cw.sample_image("coffee")
    fm = FeatureMaps(probe, img)
    for layer in (probe.layers[0], probe.layers[-1]):
        fm.layer = layer.name
        assert fm.message.value == ""
        assert_grid_shows(probe, img, fm)
    assert fm.filters_view.value  # the first conv layer's filters
    if name == "grayscale":
        assert "gray" in fm.filters_caption.value and probe.transform.channels == 1
    assert model.training and hook_count(model) == 0


def test_dead_channels_are_counted_and_hidden():
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():
        model.conv2.weight[[2, 9, 11]] = 0
        model.conv2.bias[[2, 9, 11]] = 0
    probe = cw.Probe(model, input_size=32)
    img = cw.sample_image("chelsea")
    fm = FeatureMaps(probe, img, layer="conv2")
    assert "3 dead channels" in fm.notes.value and fm.plan.n == 16
    fm.dead_box.value = True
    assert fm.hide_dead and fm.plan.n == 13 and "3 dead channels hidden" in fm.notes.value
    assert not {2, 9, 11} & set(fm.visible_channels.tolist())
    assert_grid_shows(probe, img, fm)
    assert "channels 1–13 of 13" in fm.header.value


def test_nan_and_inf_are_drawn_distinctly():
    torch.manual_seed(0)
    model = Tiny()
    with torch.no_grad():
        model.conv1.bias[1] = float("nan")
        model.conv1.bias[2] = float("inf")
        model.conv1.bias[3] = -float("inf")
    probe = cw.Probe(model, input_size=32)
    img = cw.sample_image("chelsea")
    fm = FeatureMaps(probe, img, layer="conv1")
    assert "NaN (magenta)" in fm.notes.value
    shown = assert_grid_shows(probe, img, fm)
    th, tw = fm.plan.tile_hw
    cols = fm.plan.cols(0)
    for i, colour in ((1, render.NAN_RGB), (2, render.POSINF_RGB), (3, render.NEGINF_RGB)):
        y, x = render.tile_origin(i, cols, th, tw)
        assert (shown[y : y + th, x : x + tw] == colour).all()
    fm.channel = 1
    assert "NaN" in fm.big_title.value
    fm.layer = "conv2"  # everything after is NaN: still no crash
    assert fm.message.value == "" and fm.grid_image.value


def test_linear_layer_is_shown_as_bars(probe, cat, fm):
    fm.layer = "_fc"
    assert "Linear" in fm.header.value and "1000 units" in fm.header.value
    assert fm.units_figure.layout.display != "none" and fm.grid_figure.layout.display == "none"
    np.testing.assert_allclose(fm.units_mark.y, probe.activations(cat, "_fc")[0].numpy(), rtol=1e-6)
    fm.units_mark._handle_custom_msgs(None, {"event": "element_click", "data": {"index": 281}})
    assert fm.channel == 281
    fm.layer = probe.layers[4].name
    assert fm.grid_figure.layout.display != "none"


class FixedSize(nn.Module):
    """A CNN whose Linear head only fits 224x224 inputs (no global pooling)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 4, stride=4)
        self.conv2 = nn.Conv2d(8, 4, 4, stride=4)
        self.fc = nn.Linear(4 * 14 * 14, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).flatten(1))


def test_wrong_image_size_for_a_fixed_size_model():
    torch.manual_seed(0)
    probe = cw.Probe(FixedSize(), transform=cw.Preprocess(resize=None, crop=None))  # images are not resized
    fm = FeatureMaps(probe, torch.rand(3, 100, 120))
    assert "100×120" in fm.message.value and "224×224" in fm.message.value  # a warning up front
    assert_grid_shows(probe, torch.rand(3, 100, 120) * 0 + fm.input.image, fm)  # conv layers still work
    fm.layer = "fc"
    msg = fm.message.value
    assert "Error" in msg and "expects 224×224" in msg and "input_size" in msg
    assert hook_count(probe.model) == 0


def test_save_and_figure(probe, fm, tmp_path):
    fm.layer = probe.layers[10].name
    path = fm.save(tmp_path / "maps.png", dpi=40)
    im = Image.open(path)
    assert im.format == "PNG" and im.size[0] > 300
    fm.layer = "_fc"
    im = Image.open(fm.save(tmp_path / "units.png", dpi=40))
    assert im.format == "PNG"
    assert hook_count(probe.model) == 0


def test_bad_layer_and_option_names(fm):
    with pytest.raises(KeyError, match="No layer named"):
        fm.layer = "_blocks.99"
    with pytest.raises(Exception, match="'channel' or 'layer'"):
        fm.norm = "global"
    with pytest.raises(ValueError, match="Unknown colormap"):
        fm.cmap = "no-such-map"
    fm.cmap = "viridis"


def test_many_first_layer_filters_show_the_first_64_and_say_so():
    """A ViT-style patch embedding (here 96 filters 8×8) would make a column thousands of pixels tall."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 96, 8, stride=8), nn.ReLU(), nn.Conv2d(96, 8, 1), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 4))
    fm = FeatureMaps(cw.Probe(model, device="cpu", input_size=64, mean=0, std=1), cw.sample_image("coffee"))
    assert "the first 64 of 96 filters 8×8" in fm.filters_caption.value
    w, h = Image.open(io.BytesIO(fm.filters_view.value)).size
    assert h <= w, "8 columns of 64 filters: a square, not a tower"
    fm.close()
