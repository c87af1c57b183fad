"""The one-liners of notebooks/seeds.ipynb: each blog figure from one call, checked against the model run directly."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnwidgets as cw
from cnnwidgets import render


class SmallCNN(nn.Module):
    """64 and 128 channels (seed 000's 8x8 and 8x16 mosaics), a BatchNorm (num_batches_tracked), a classifier."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = nn.Conv2d(64, 128, 3, stride=2, padding=1)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    model = SmallCNN().eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        model.bn1.running_mean.uniform_(-0.5, 0.5)
        model.bn1.running_var.uniform_(0.5, 2.0)
    return model


@pytest.fixture(scope="module")
def sprobe(small):
    return cw.Probe(small, input_size=32, mean=0, std=1)


@pytest.fixture(scope="module")
def image():
    return cw.sample_image("astronaut")


def direct_maps(model, probe, image, name):
    """The layer's output computed without cnnwidgets' capture: the model's own modules called in order."""
    x = probe.prepare(image)
    with torch.no_grad():
        a = model.conv1(x)
        if name == "conv2":
            a = model.conv2(torch.relu(model.bn1(a)))
    return a[0].numpy()


def split_tiles(rgb, rows, cols, h, w, k):
    """The tiles of a mosaic enlarged ``k`` times (1 px white between tiles before enlarging), each ``h x w`` again."""
    out = []
    for r in range(rows):
        for c in range(cols):
            y0, x0 = r * (h + 1) * k, c * (w + 1) * k
            out.append(rgb[y0 : y0 + h * k : k, x0 : x0 + w * k : k])
    return out


@pytest.mark.parametrize("dpi", [200])
def test_save_layers_writes_every_channel_of_every_layer(small, sprobe, image, tmp_path, dpi):
    fm = cw.FeatureMaps(sprobe, image, cmap="gray")
    paths = fm.save_layers(tmp_path, dpi=dpi)
    assert [p.split("/")[-1] for p in paths] == ["00_conv1.png", "01_conv2.png"]
    for path, name, (rows, cols) in zip(paths, ["conv1", "conv2"], [(8, 8), (8, 16)]):
        im = Image.open(path)
        assert tuple(round(v) for v in im.info["dpi"]) == (dpi, dpi)
        assert abs(im.size[0] - 6.4 * dpi) < 0.15 * 6.4 * dpi  # 6.4 inches at this dpi, up to whole-pixel enlarging
        maps = direct_maps(small, sprobe, image, name)
        c, h, w = maps.shape
        k = im.size[0] // (cols * (w + 1) - 1)
        body = np.asarray(im.convert("RGB"))[im.size[1] - (rows * (h + 1) - 1) * k :]
        assert body.shape[1] == (cols * (w + 1) - 1) * k
        assert (body[:, w * k : (w + 1) * k] == 255).all()  # the white line after the first column of tiles
        tiles = split_tiles(body, rows, cols, h, w, k)
        assert len(tiles) == c
        for i in (0, 1, c // 2, c - 1):  # tile i is channel i, scaled to its own min..max, in gray
            m = maps[i]
            want = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else np.zeros_like(m)
            assert np.abs(tiles[i][..., 0] / 255.0 - want).max() <= 1.5 / 255


def test_mosaic_of_the_first_16_channels_in_4_columns_with_twilight(small, sprobe, image):
    fm = cw.FeatureMaps(sprobe, image)
    fig = fm.mosaic("conv2", channels=16, cols=4, cmap="twilight")
    assert fig.texts[0].get_text().endswith("channels 0–15 of 128 (4×4)")
    shown = fig.axes[0].images[0].get_array()
    maps = direct_maps(small, sprobe, image, "conv2")
    h, w = maps.shape[1:]
    assert shown.shape[:2] == (4 * h + 3, 4 * w + 3)
    tile = np.asarray(shown[(h + 1) * 1 : (h + 1) * 1 + h, (w + 1) * 2 : (w + 1) * 2 + w])  # row 1, column 2: channel 6
    m = maps[6]
    want = render.lut("twilight")[np.round((m - m.min()) / (m.max() - m.min()) * 255).astype(int)]
    assert np.abs(tile.astype(int) - want.astype(int)).max() <= 3
    assert fm.cmap == "viridis"  # the panel's own colormap is left as it was


def test_mosaic_refuses_what_it_cannot_draw(sprobe, image):
    fm = cw.FeatureMaps(sprobe, image)
    with pytest.raises(ValueError, match="between 1 and 64"):
        fm.mosaic("conv1", channels=65)
    with pytest.raises(ValueError, match="cols must be"):
        fm.mosaic("conv1", cols=0)
    with pytest.raises(ValueError, match="no feature maps"):
        fm.mosaic("fc")
    with pytest.raises(ValueError, match="fmt must be"):
        fm.save_layers("unused", fmt="bmp")


def test_dream_takes_its_objective_and_recipe_at_once(sprobe):
    d = cw.Dream(sprobe, "conv2", 3, preset="naive", objective="layer", steps=4, size=32, run_mode="thread")
    assert (d.preset, d.objective, d.mode) == ("naive", "layer", "single")
    d.start()
    assert d.join(60)
    assert "whole layer" in d.gallery.items[-1].caption and "naive" in d.gallery.items[-1].caption
    with pytest.raises(ValueError, match="objective must be one of"):
        cw.Dream(sprobe, "conv2", objective="pixel")
    with pytest.raises(ValueError, match="preset must be one of"):
        cw.Dream(sprobe, "conv2", preset="smooth")


def test_saliency_colours_and_the_compare_tab_at_once(small, sprobe, image):
    torch.manual_seed(1)
    other = cw.Probe(SmallCNN().eval(), input_size=32, mean=0, std=1)
    s = cw.Saliency(sprobe, image, compare=[other], cmap="gray", tab="compare", mode="thread")
    assert s.join(60)
    assert s.tabs.selected_index == 2 and len(s.compare_results) == 2
    assert s.display.colormap() == "gray" and s.display.cmap.value == "gray"
    gray = s.display.render(s.compare_results[0])[0]
    s.display.cmap.value = "jet"
    jet = s.display.render(s.compare_results[0])[0]
    spread = lambda rgb: np.abs(rgb.astype(int) - rgb.mean(2, keepdims=True)).mean()  # noqa: E731 colourfulness
    assert spread(jet) > spread(gray) + 5
    with pytest.raises(ValueError, match="Unknown colormap"):
        cw.Saliency(sprobe, image, cmap="nope")
    with pytest.raises(ValueError, match="tab must be one of"):
        cw.Saliency(sprobe, image, tab="other")


def test_parameters_figure_has_a_50_bin_histogram_of_every_state_dict_entry(small, sprobe):
    h = cw.Histogram(sprobe)
    fig = h.parameters_figure()
    sd = {k: v for k, v in small.state_dict().items() if not k.endswith("num_batches_tracked")}
    titled = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title().split(" ")[0] for ax in titled] == list(sd)
    for ax, (name, t) in zip(titled, sd.items()):
        counts, _ = np.histogram(t.numpy().ravel(), bins=50)
        assert [p.get_height() for p in ax.patches] == counts.tolist()
        assert f"std {t.double().std().item():.3g}" in ax.get_title()  # ddof=1, as seed 003's torch.std
        assert f"min {t.min().item():.3g}" in ax.get_title()
    with pytest.raises(ValueError, match="bins and cols"):
        h.parameters_figure(bins=0)
