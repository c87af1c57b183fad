"""Every panel's widget state can be sent to a front end after the panel was used.

On a reload, a reconnect or a second tab, the front end asks the kernel for the state of every widget at once
(ipywidgets' control comm: ``get_state()`` of each, ``_remove_buffers``, one JSON message). One widget whose state
cannot be serialized breaks that message, and *every* widget of the notebook stays on "Loading widget...". Known
case: a click on a CKA cell made bqplot's ``GridHeatMap.selected`` an object-dtype array (the front end sends
``[[row, col]]``), and ``get_state()`` raised ``ValueError: Unsupported dtype object``.

Each panel is used here as in a notebook: front-end messages go through the widgets' own ``_handle_msg`` (a slider
move, a selection, a click on a bqplot mark), as ipywidgets delivers them; then every widget the panel holds
(:func:`cnnwidgets.widgets._base.reachable_widgets`) must give a JSON state. Runs under ipywidgets 8 / bqplot 0.13
here, and under ipywidgets 7.7.1 / bqplot 0.12.47 in ``make test-colab``.
"""
from __future__ import annotations

import json

import bqplot as bq
import ipywidgets as W
import numpy as np
import pytest
from ipywidgets.widgets.widget import _remove_buffers

import cnnwidgets as cw
from cnnwidgets.widgets._base import reachable_widgets

LAYERS = ["_blocks.0", "_blocks.4", "_blocks.10", "_blocks.15"]


def json_state(panel, when: str) -> int:
    """Assert that each widget ``panel`` holds gives a JSON-serializable state; returns how many were checked."""
    widgets = reachable_widgets(panel)
    assert len(widgets) > 5, f"{when}: only {len(widgets)} widgets found"
    bad = []
    for w in widgets:
        try:
            state, _paths, _buffers = _remove_buffers(w.get_state())
            json.dumps(state, allow_nan=False)
        except Exception as e:  # noqa: BLE001 - every failure is collected and reported below
            bad.append(f"{type(w).__module__}.{type(w).__name__}: {type(e).__name__}: {e}")
    assert not bad, f"{when}: widget state a front end cannot be sent:\n" + "\n".join(bad)
    return len(widgets)


def update(widget, **state):
    """A state update from the front end (a slider moved, a selection made), through ipywidgets' own handler."""
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}}, "buffers": []})


def custom(widget, content: dict):
    """A custom message from the front end (a button click, a click on a bqplot mark)."""
    widget._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def widgets_of(panel, kind) -> list:
    return [w for w in reachable_widgets(panel) if isinstance(w, kind)]


def click_image_mark(mark, fx: float = 0.25, fy: float = 0.25):
    """A click on a bqplot Image mark at a fraction of its extent, as bqplot sends it (click_x, click_y in data units)."""
    x, y = np.asarray(mark.x, float), np.asarray(mark.y, float)
    custom(mark, {"event": "element_click", "data": {"click_x": float(x[0] + fx * (x[-1] - x[0])),
                                                     "click_y": float(y[0] + fy * (y[-1] - y[0]))}})


@pytest.fixture(scope="module")
def images():
    return cw.sample_dataset(16, size=96, seed=1)


def test_featuremaps_state_after_a_layer_move_and_a_tile_click(probe, cat):
    fm = cw.FeatureMaps(probe, cat)
    json_state(fm, "built")
    slider = widgets_of(fm, W.SelectionSlider)[0]
    update(slider, index=5)  # the layer slider, moved in the page
    assert fm.layer == slider.value
    before = fm.channel
    for m in widgets_of(fm, bq.Image):  # the tiles (and any other image mark: a click there does nothing)
        click_image_mark(m, 0.6, 0.6)
    assert fm.channel != before, "a click on the tiles selected no channel"
    fm.channel = 3
    fm.join(60)
    json_state(fm, "FeatureMaps after a layer move and a tile click")
    fm.close()


def test_histogram_state_after_a_layer_move_and_a_row_click(probe, cat):
    h = cw.Histogram(probe, cat)
    update(widgets_of(h, W.SelectionSlider)[0], index=4)
    table = [w for w in widgets_of(h, W.Select) if len(w.options) > 10][0]
    update(table, index=7)  # a row of the parameter table, clicked
    assert h.parameter, "the row click selected no parameter"
    json_state(h, "Histogram after a layer move and a row click")
    h.close()


def test_the_check_catches_an_object_dtype_selection():
    """The check is not vacuous: bqplot's own GridHeatMap, clicked as above, cannot give its state (the bug the CKA
    panel's GridHeatMap fixes); neither could a panel holding one."""
    grid = bq.GridHeatMap(color=np.eye(3), scales={"row": bq.OrdinalScale(), "column": bq.OrdinalScale(),
                                                   "color": bq.ColorScale()}, interactions={"click": "select"})
    update(grid, selected=[[1, 2]])
    assert grid.selected.dtype == object
    with pytest.raises(ValueError, match="Unsupported dtype object"):
        grid.get_state()
    box = W.VBox([W.HTML("a panel"), W.Label("x"), W.Button(), W.IntSlider(), W.Dropdown(options=["a"]),
                  bq.Figure(marks=[grid])])
    with pytest.raises(AssertionError, match="Unsupported dtype object"):
        json_state(box, "a box holding bqplot's GridHeatMap after a click")


def test_cka_state_after_a_click_on_a_cell(probe, images):
    hm = cw.CKAHeatmap(probe, images[0][:8], layers=LAYERS, batch_size=8)
    assert hm.join(240) and hm.result is not None
    json_state(hm, "CKA computed")
    grid = widgets_of(hm, bq.GridHeatMap)
    assert grid, "no GridHeatMap in a 4 x 4 layer CKA"
    # a click on row 1, column 2 with interactions={'click': 'select'}: bqplot's front end sets `selected` to the
    # nested list [[1, 2]] (read as an object-dtype array by bqplot's deserializer) and sends an element_click
    update(grid[0], selected=[[1, 2]])
    custom(grid[0], {"event": "element_click", "data": {"data": 0.5, "index": 6, "row": 1, "column": 2,
                                                        "row_num": 1, "column_num": 2, "rowNum": 1, "columnNum": 2}})
    hm.select_cell(1, 2)  # what the click handler does, whatever bqplot version's message it got
    assert list(hm.selected) == [LAYERS[1], LAYERS[2]]
    json_state(hm, "CKA after a click on a cell (GridHeatMap.selected set by the front end)")
    hm.close()


def test_saliency_state_after_a_method_and_a_class_change(probe, cat):
    sal = cw.Saliency(probe, cat)
    assert sal.join(120)
    dropdown = [w for w in widgets_of(sal, W.Dropdown) if "saliency" in [o[1] if isinstance(o, tuple) else o
                                                                          for o in w.options]]
    if dropdown:
        names = [o[1] if isinstance(o, tuple) else o for o in dropdown[0].options]
        update(dropdown[0], index=names.index("gradcam") if "gradcam" in names else 1)
    else:
        sal.method = "gradcam"
    sal.target = 285
    assert sal.join(120)
    json_state(sal, "Saliency after a method and a class change")
    sal.close()


def test_dream_state_after_a_short_run(probe):
    d = cw.Dream(probe, layer="_blocks.5._project_conv", channel=3, steps=10, size=32, run_mode="thread")
    d.start()
    assert d.join(120)
    for b in widgets_of(d, W.Button):
        if b.description == "Keep":
            custom(b, {"event": "click"})  # keep the result in the gallery, clicked
    json_state(d, "Dream after a short run")
    d.close()


def test_embedding_state_after_compute_and_a_click_on_a_point(probe, images):
    x, names = images
    emb = cw.Embedding(probe, x, names, layer=probe.layers[20].name)
    emb.compute()
    scatters = [m for m in widgets_of(emb, bq.Scatter) if m.x is not None and len(m.x)]
    assert scatters, "no points drawn"
    update(scatters[0], selected=[1])  # a click on a point: bqplot's front end selects it
    assert emb.selected >= 0, "the click selected no image"
    json_state(emb, "Embedding after Compute and a click on a point")
    emb.close()


def test_imagegrid_state_after_a_click_on_a_thumbnail(images):
    x, names = images
    grid = cw.ImageGrid(x, labels=names, per_page=8, cols=4)
    mark = widgets_of(grid, bq.Image)[0]
    click_image_mark(mark, 0.1, 0.1)
    assert grid.index >= 0, "the click selected no image"
    json_state(grid, "ImageGrid after a click on a thumbnail")
    grid.close()


def test_explorer_state_after_a_tab_change_and_a_layer_move(probe, cat):
    ex = cw.Explorer(probe, cat, panels=["Feature maps", "Histograms", "Dream"])
    tabs = widgets_of(ex, W.Tab)[0]
    update(tabs, selected_index=1)  # the Histograms tab, clicked: its panel is built
    update(tabs, selected_index=0)
    update(widgets_of(ex, W.SelectionSlider)[0], index=6)
    n = json_state(ex, "Explorer after a tab change and a layer move")
    assert n > 40
    ex.close()
