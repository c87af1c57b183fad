"""cw.TopImages: a channel's top images of a whole dataset (from cw.index) with the crop its strongest unit sees;
browsing channels, the FeatureMaps link, the Explorer's tab with the channel's dream, reload-safe state, close()."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import traitlets as T
from PIL import Image

import cnnwidgets as cw
from cnnwidgets import render
from cnnwidgets.analyses import receptive_field as RF
from cnnwidgets.widgets import topimages as TI
from cnnwidgets.widgets._base import reachable_widgets
from digits import CLASSES, SmallCNN, digits, train
from test_close import registry
from test_widget_state import json_state, update

warnings.filterwarnings("ignore", category=UserWarning)


@pytest.fixture(scope="module")
def setup():
    x, y = digits(240)
    torch.manual_seed(0)
    model = SmallCNN()
    train(model, x, y, steps=30)
    probe = cw.Probe(model, input_size=28, mean=0, std=1, classes=CLASSES)
    images = cw.image_set(x, labels=y, classes=CLASSES)
    ix = cw.index.build(probe, images, ["cnn.0", "cnn.4", "fc"], k=6)
    return probe, images, ix, y


def shown(panel) -> list:
    """The (image ref, score) the cards show, read from the panel's captions and pictures."""
    out = []
    for box, img, cap in panel.cards:
        if box.layout.display != "none":
            assert img.layout.display != "none" and len(img.value) > 100
            out.append(cap.value)
    return out


def test_top_images_equal_the_index_with_labels_and_browsing(setup):
    probe, images, ix, y = setup
    top = cw.TopImages(ix, "cnn.4", images=images, channel=3, probe=probe)
    hits = ix.top("cnn.4", 3)
    assert top.hits == hits and len(hits) == 6
    caps = shown(top)
    assert len(caps) == 6
    for i, (cap, h) in enumerate(zip(caps, hits)):
        assert f"#{i + 1}" in cap and f"{h.score:.3g}" in cap
        assert f"<b>{CLASSES[int(y[h.ref])]}</b>" in cap  # the image's class, by name
    assert "channel <b>3</b> of 16" in top.channel_caption.value
    assert "yellow frame" in top.legend.value and "8×8 pixels" in top.legend.value
    # browsing: next / previous / the slider / rank by mean; each shows the index's answer
    top.step(+1)
    assert top.channel == 4 and top.slider.value == 4 and top.hits == ix.top("cnn.4", 4)
    top.step(-1)
    top.step(-1)
    assert top.channel == 2 and top.hits == ix.top("cnn.4", 2)
    update(top.slider, value=9)  # the slider moved in the page
    assert top.channel == 9 and top.hits == ix.top("cnn.4", 9)
    update(top.by_picker, index=1)
    assert top.by == "mean" and top.hits == ix.top("cnn.4", 9, by="mean") != ix.top("cnn.4", 9)
    top.channel = 99  # out of range: the last channel
    assert top.channel == 15
    top.layer = "cnn.0"
    assert top.slider.max == 7 and top.channel == 7 and top.layer_picker.value == "cnn.0"
    json_state(top, "TopImages after browsing")
    top.close()


def test_the_frame_is_the_receptive_field_of_the_peak(setup, tmp_path):
    probe, images, ix, _ = setup
    top = cw.TopImages(ix, "cnn.4", images=images, channel=1, probe=probe)
    hit = top.hits[0]
    rf = RF.receptive_field(probe, "cnn.4")
    t, l, b, r = rf.box(hit.y, hit.x)
    card = render.decode(top.cards[0][1].value)
    f = TI.SIDE / 28
    whole = card[:, :TI.SIDE]
    yellow = np.all(whole == TI.BOX, axis=-1)
    rows, cols = np.nonzero(yellow)
    assert abs(rows.min() - t * f) <= 1 and abs(rows.max() + 1 - b * f) <= 1
    assert abs(cols.min() - l * f) <= 1 and abs(cols.max() + 1 - r * f) <= 1
    # the crop beside it is that part of the image, enlarged
    crop = render.image_rgb(RF.patch(probe.display(images.image(hit.ref))[0], rf, hit.y, hit.x))
    right = card[:, TI.SIDE + 6:]
    g = TI.SIDE // max(crop.shape[:2])
    assert np.array_equal(right[: crop.shape[0] * g: g, : crop.shape[1] * g: g], crop)
    saved = np.asarray(Image.open(top.save(tmp_path / "top.png", dpi=50)))  # for exported notebooks and papers
    assert saved.shape[0] > 100 and saved.shape[1] > 300
    top.close()


def test_featuremaps_link_and_an_unindexed_layer(setup):
    probe, images, ix, _ = setup
    fm = cw.FeatureMaps(probe, images.image(0))
    top = cw.TopImages(ix, "cnn.0", images=images, probe=probe)
    links = [T.link((fm, "layer"), (top, "layer")), T.link((fm, "channel"), (top, "channel"))]
    fm.layer = "cnn.4"
    fm.channel = 11
    assert (top.layer, top.channel) == ("cnn.4", 11) and top.hits == ix.top("cnn.4", 11)
    fm.layer = "cnn.2"  # a layer that was not indexed: said, the cards dimmed
    assert "not in this index" in top.message.value
    assert top.layer == "cnn.2" and "cnnw-stale" in top.cards[0][0]._dom_classes
    top.channel = 5  # and the other way round
    assert fm.channel == 5
    for link in links:
        link.unlink()
    fm.close()
    top.close()


def test_units_folder_paths_and_no_probe(setup, tmp_path):
    probe, images, ix, y = setup
    top = cw.TopImages(ix, "fc", images=images, channel=7, probe=probe)  # a vector layer: whole images
    assert top.hits == ix.top("fc", 7) and all(h.y is None for h in top.hits)
    assert "no map" in top.legend.value
    assert sum(CLASSES[7] in c for c in shown(top)) >= 4  # the unit of digit 7: mostly sevens
    top.close()
    # a folder: the index keeps paths, so the images show without images=; with it, their class names
    for i in range(40):
        d = tmp_path / CLASSES[int(y[i])]
        d.mkdir(exist_ok=True)
        Image.fromarray((images.image(i)[0].numpy() * 255).astype(np.uint8)).save(d / f"{i:03d}.png")
    fx = cw.index.build(probe, str(tmp_path), ["cnn.4"], k=4)
    alone = cw.TopImages(fx, channel=2)  # no images=, no probe: the peak's map cell is framed
    assert alone.hits == fx.top("cnn.4", 2) and len(shown(alone)) == 4
    assert "give probe=" in alone.legend.value
    assert all(isinstance(h.ref, str) for h in alone.hits)
    alone.close()
    named = cw.TopImages(fx, channel=2, images=str(tmp_path), probe=probe)
    assert all(any(f"<b>{c}</b>" in cap for c in CLASSES) for cap in shown(named))
    named.close()


def test_explorer_tab_with_the_dream_beside_the_examples(setup):
    probe, images, ix, _ = setup
    ex = cw.Explorer(probe, images.image(0), images=images, index=ix)
    assert ex.names[:2] == ["Images", "Top images"]
    assert ex.layer in ix.layers
    ex.tabs.selected_index = 1
    top = ex.panel("Top images")
    assert isinstance(top, cw.TopImages) and top.dream_box is not None
    ex.channel = 4
    assert top.channel == 4 and top.layer == ex.layer and top.hits == ix.top(ex.layer, 4)
    top.dream_steps = 3
    top.dream()
    assert len(top.dream_image.value) > 100 and f"dream of channel 4 of layer {ex.layer}" in top.dream_caption.value
    assert top.dream_controls.progress_label.value.startswith("done · 3 / 3 steps") and not top.dream_message.value
    ex.channel = 5  # the dream of channel 4 is now dimmed and says so
    assert "cnnw-stale" in top.dream_image._dom_classes and "press Dream for channel 5" in top.dream_caption.value
    json_state(ex, "Explorer with the Top images tab")
    ids = {w.model_id for w in reachable_widgets(ex)}
    ex.close()
    assert not ids & set(registry())


def test_close_frees_every_widget_and_bad_input(setup):
    probe, images, ix, _ = setup
    top = cw.TopImages(ix, "cnn.4", images=images, probe=probe)
    top.step(1)
    ids = {w.model_id for w in reachable_widgets(top)}
    assert len(ids) > 20 and ids <= set(registry())
    top.close()
    assert not ids & set(registry())
    with pytest.raises(TypeError, match="cw.index.build"):
        cw.TopImages(probe, "cnn.4")
    with pytest.raises(ValueError, match="'max' or 'mean'"):
        cw.TopImages(ix, "cnn.4", images=images, by="best")
    no_images = cw.TopImages(ix, "cnn.4")  # positions without the set: said
    assert "give images=" in no_images.children[0].value
    no_images.close()
