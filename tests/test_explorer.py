"""The Explorer: panels in tabs, built on first use, following one layer and channel."""
import pytest

import cnnwidgets as cw
from cnnwidgets.hooks import hook_count


def test_tabs_build_lazily_and_follow_one_layer_and_channel(probe):
    ex = cw.Explorer(probe, cw.sample_image("chelsea"), panels=["Feature maps", "Histograms", "Dream"])
    assert list(ex.panels) == ["Feature maps"]  # only the open tab is built
    ex.tabs.selected_index = 2  # opening a tab builds its panel
    assert set(ex.panels) == {"Feature maps", "Dream"}
    hist = ex.panel("Histograms")
    target = probe.layers[30].name
    ex.layer = target
    assert all(p.layer == target for p in ex.panels.values())
    # a selection made in one panel reaches the others through the Explorer
    ex.panels["Feature maps"].layer = probe.layers[4].name
    assert ex.layer == hist.layer == ex.panels["Dream"].layer == probe.layers[4].name
    ex.panels["Dream"].channel = 5
    assert ex.channel == ex.panels["Feature maps"].channel == 5
    assert "channel <b>5</b>" in ex.status.value and probe.layers[4].name in ex.status.value
    assert hook_count(probe.model) == 0


def test_cka_click_selects_its_first_layer(probe):
    ex = cw.Explorer(probe, panels=["Feature maps", "CKA"])
    cka = ex.panel("CKA")
    other = probe.layers[12].name
    cka.layer_a = other
    assert ex.layer == other == ex.panels["Feature maps"].layer


def test_unknown_panel_names_are_refused(probe):
    with pytest.raises(ValueError, match="Unknown panels"):
        cw.Explorer(probe, panels=["Feature maps", "Weights"])
