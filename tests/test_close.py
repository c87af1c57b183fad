"""close() on a panel stops its job and closes every widget it made: none stays in ipywidgets' registry, and
panels made and closed again and again do not pile widgets up."""
from __future__ import annotations

import ipywidgets as W
import pytest
import torch

import cnnwidgets as cw
from cnnwidgets.widgets._base import reachable_widgets
from digits import CLASSES, SmallCNN, digits


def registry() -> dict:
    """ipywidgets' live widgets (``Widget.widgets`` in 7, ``widget._instances`` in 8)."""
    from ipywidgets.widgets import widget

    return getattr(widget, "_instances", None) or W.Widget.widgets


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    x, y = digits(48)
    probe = cw.Probe(SmallCNN(), input_size=28, mean=0, std=1, classes=CLASSES)
    return probe, x, y


PANELS = {
    "FeatureMaps": lambda p, x, y: cw.FeatureMaps(p, x[0]),
    "Histogram": lambda p, x, y: cw.Histogram(p, x[0]),
    "CKAHeatmap": lambda p, x, y: cw.CKAHeatmap(p, x[:16], batch_size=8, run_mode="thread"),
    "Embedding": lambda p, x, y: cw.Embedding(p, cw.image_set(x, y, CLASSES)),
    "ImageGrid": lambda p, x, y: cw.ImageGrid(cw.image_set(x, y, CLASSES), p),
    "Explorer": lambda p, x, y: cw.Explorer(p, x[0], panels=["Feature maps", "Histograms", "CKA"]),
    "TopImages": lambda p, x, y: cw.TopImages(cw.index.build(p, cw.image_set(x[:16], y[:16], CLASSES), k=4),
                                              images=cw.image_set(x[:16], y[:16], CLASSES), probe=p),
    "KNNAccuracy": lambda p, x, y: cw.KNNAccuracy(p, cw.image_set(x, y, CLASSES)),
}


def use(panel, x):
    """Interact as a user would: the panel's typical clicks and moves."""
    name = type(panel).__name__
    if name == "FeatureMaps":
        panel.layer = panel.probe.layers[1].name
        panel.channel = 3
        panel.cmap = "gray"
    elif name == "Histogram":
        panel.sort("std")
        panel.layer = panel.probe.layers[1].name
    elif name == "CKAHeatmap":
        panel.join(30)
        panel.select_cell(0, 1)
    elif name == "Embedding":
        panel.compute()
        panel.show_top()
        panel.selected = 3
    elif name == "ImageGrid":
        panel.index = 2
    elif name == "TopImages":
        panel.step(1)
        panel.by = "mean"
    elif name == "KNNAccuracy":
        panel.compute()
    elif name == "Explorer":
        panel.tabs.selected_index = 2
        panel.panel("CKA").join(30)
        panel.layer = panel.probe.layers[1].name


@pytest.mark.parametrize("name", list(PANELS))
def test_close_releases_every_widget_and_stops_the_job(small, name):
    probe, x, y = small
    panel = PANELS[name](probe, x, y)
    use(panel, x)
    made = reachable_widgets(panel)
    ids = {w.model_id for w in made}
    assert len(made) > 5 and ids <= set(registry())
    panel.close()
    assert not ids & set(registry())  # every widget it held is closed
    assert all(not c.running for c in getattr(panel, "_jobs", []))


def test_a_closed_panel_stops_its_running_job(small):
    probe, x, y = small
    hm = cw.CKAHeatmap(probe, torch.rand(400, 1, 28, 28), batch_size=4, run_mode="thread")
    assert hm.controls.running
    hm.close()
    assert not hm.controls.running and hm.controls.runner.state == "stopped"


def test_making_and_closing_panels_does_not_pile_widgets_up(small):
    probe, x, y = small
    for make in (PANELS["FeatureMaps"], PANELS["Embedding"]):
        panel = make(probe, x, y)
        use(panel, x)
        panel.close()
        before = len(registry())
        for _ in range(5):
            panel = make(probe, x, y)
            use(panel, x)
            panel.close()
        assert len(registry()) <= before + 2
