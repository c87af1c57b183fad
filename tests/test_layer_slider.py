"""The shared layer slider: a user's move reaches the panel, a linked panel's choice does not echo back."""
from cnnwidgets.widgets._base import LayerSlider


def test_moves_call_back_and_show_stays_quiet(probe):
    moved = []
    ls = LayerSlider(probe, value=probe.layers[3].name, on_move=moved.append)
    assert "layer 4 of 49" in ls.caption.value and probe.layers[3].name in ls.caption.value
    ls.slider.value = probe.layers[5].name  # what a user's drag does
    assert moved == [probe.layers[5].name] and "layer 6 of 49" in ls.caption.value
    ls.show("_blocks.4._bn0")  # not a conv layer: added to the options in forward order, no call back
    assert moved == [probe.layers[5].name] and ls.value == "_blocks.4._bn0"
    names = [o[1] for o in ls.slider.options]
    assert len(names) == 50 and names.index("_blocks.4._bn0") == names.index("_blocks.4._expand_conv") + 1
    assert "BatchNorm2d" in ls.caption.value
    ls.show(probe.layers[0].name)  # back to a conv layer: the extra option goes, still quiet
    assert len(ls.slider.options) == 49 and moved == [probe.layers[5].name] and ls.value == probe.layers[0].name
