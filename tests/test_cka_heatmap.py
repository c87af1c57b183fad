"""CKAHeatmap panel (no browser): modes, marks, selection traits, partial frames, static figure, errors."""
import numpy as np
import pytest
import traitlets as T

import cnnwidgets as cw
from cnnwidgets.analyses import cka as C
from cnnwidgets.hooks import hook_count
from cnnwidgets.render import decode
from cnnwidgets.widgets.cka_heatmap import CKAHeatmap, short_name

BLOCKS = ["_blocks.0", "_blocks.3", "_blocks.8", "_blocks.15"]


@pytest.fixture(scope="module")
def images():
    return cw.sample_batch(8, seed=1)


@pytest.fixture(scope="module")
def layers_panel(probe, images):
    hm = CKAHeatmap(probe, images, layers=BLOCKS, batch_size=4, run_mode="foreground")
    assert hm.result is None  # foreground: it computes once it is displayed (or joined), not in its constructor
    hm.join()
    return hm


def test_short_names():
    assert short_name("_blocks.3._project_conv") == "block3.project"
    assert short_name("_blocks.15") == "block15"
    assert short_name("layer4.1.conv2") == "layer4.1.conv2"
    assert short_name("features.28") == "features.28"


def test_layers_mode_draws_grid_heatmap_and_click_selects(layers_panel, probe):
    hm = layers_panel
    import bqplot as bq

    assert isinstance(hm._mark, bq.GridHeatMap)
    assert hm._cs.scheme == "Blues" and any(isinstance(a, bq.ColorAxis) for a in hm.figure_widget.axes)
    assert list(hm._mark.row) == ["block0", "block3", "block8", "block15"]
    m = np.asarray(hm._mark.color)
    assert m.shape == (4, 4) and np.allclose(np.diag(m), 1) and np.allclose(m, m.T)
    assert hm.result.final and hm.result.images == 8
    seen = []
    hm.observe(lambda ch: seen.append(ch["new"]), "selected")
    before = hm.map_a.value
    # what bqplot sends on a click on a GridHeatMap cell
    hm._on_cell_click(hm._mark, {"event": "element_click", "data": {"row_num": 1, "column_num": 2, "row": "block3",
                                                                      "column": "block8", "color": 0.5}})
    assert hm.selected == ("_blocks.3", "_blocks.8") and seen == [("_blocks.3", "_blocks.8")]
    assert hm.layer_a == "_blocks.3" and hm.layer_b == "_blocks.8"
    assert hm.map_a.value != before and decode(hm.map_a.value).shape[0] >= 150
    assert "CKA" in hm.pair_title.value and f"{hm.result.value('_blocks.3', '_blocks.8'):.3f}" in hm.pair_title.value
    old = hm.map_a.value
    hm.image_index = 5
    assert hm.map_a.value != old and "image 5" in hm.cap_in.value
    assert hook_count(probe.model) == 0


def test_traits_link_like_the_explorer(layers_panel):
    class Owner(T.HasTraits):
        layer = T.Unicode()

    o = Owner()
    link = T.dlink((layers_panel, "layer_a"), (o, "layer"))
    layers_panel.select_cell(3, 0)
    assert o.layer == "_blocks.15"
    link.unlink()


def test_figure_and_save(layers_panel, tmp_path):
    layers_panel.select_cell(0, 1)
    path = layers_panel.save(tmp_path / "cka.png", dpi=60)
    img = decode(open(path, "rb").read())
    assert img.shape[0] > 200 and img.shape[1] > 300


def test_partial_frames_are_drawn(probe, images):
    hm = CKAHeatmap(probe, images, layers=BLOCKS[:2], batch_size=4, autostart=False, run_mode="foreground")
    job = hm._make_job()
    first = next(job)
    hm._on_frame(first, False)
    assert hm.result.images == 4 and not hm.result.final and "4 of 8" in hm.figure_widget.title
    job.close()
    assert hook_count(probe.model) == 0


def test_channels_mode_uses_canvas_heatmap_clustered(probe, images):
    import bqplot as bq

    hm = CKAHeatmap(probe, images, mode="channels", layer="_blocks.15", batch_size=8, run_mode="foreground")
    hm.join()
    assert isinstance(hm._mark, bq.HeatMap) and np.asarray(hm._mark.color).shape == (320, 320)
    assert hm.result.estimator == "biased"
    assert sorted(hm.order) == list(range(320))  # clustered: a permutation
    clicks = [m for m in hm.figure_widget.marks if isinstance(m, bq.Image)]
    assert clicks, "a transparent Image mark takes the clicks on the canvas heatmap"
    hm._on_image_click(clicks[0], {"event": "element_click", "data": {"click_x": 10.2, "click_y": 3.8}})
    a, b = int(hm.order[4]), int(hm.order[10])
    assert hm.selected == (f"_blocks.15:{a}", f"_blocks.15:{b}") and hm.channel == a
    assert f"channel {a}" in hm.cap_a.value
    m = hm.result.matrix
    assert np.isclose(np.asarray(hm._mark.color)[4, 10], m[a, b], atol=1e-6)


def test_models_mode(probe, images):
    other = cw.Probe(cw.load_model("resnet18", pretrained=False), device="cpu")
    hm = CKAHeatmap(probe, images, mode="models", other=other, layers=BLOCKS[:2], batch_size=8, run_mode="foreground")
    hm.join()
    assert hm.result.matrix.shape == (2, len(other.layers))
    hm.select_cell(1, 3)
    assert hm.layer_a == "_blocks.3" and hm.layer_b == other.layers[3].name
    assert hook_count(other.model) == 0


def test_bad_input_shows_in_message(probe, images):
    hm = CKAHeatmap(probe, images[:3], layers=BLOCKS, run_mode="foreground")
    hm.join()
    assert "at least 4 images" in hm.message.value and hm.result is None
    with pytest.raises(ValueError, match="other="):
        CKAHeatmap(probe, images, mode="models")
    with pytest.raises(KeyError):
        CKAHeatmap(probe, images, mode="channels", layer="_blokcs.4", autostart=False)
    assert hook_count(probe.model) == 0
