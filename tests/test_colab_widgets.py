"""What differs between ipywidgets 7 (Colab's 7.7.1) and 8, tested under whichever is installed: here under 8, and
under 7.7.1 / bqplot 0.12.47 in ``make test-colab`` (tests/test_colab_env.py runs it).

* FileUpload: ipywidgets 7 keeps ``value`` read-only (a dict built from ``metadata`` and ``data`` when the front end
  bumps ``_counter``), 8 has a plain tuple. The same file uploaded twice must be taken twice in both.
* Arguments: ipywidgets 7 ignores an argument it does not know (``IntSlider(tooltip=...)``) with a DeprecationWarning
  only (traitlets' "Passing unrecognized arguments"); every panel is built here with that warning recorded.
"""
from __future__ import annotations

import io
import re
import warnings

import bqplot as bq
import ipywidgets as W
import pytest

import cnnwidgets as cw
from cnnwidgets.widgets._base import clear_upload, uploaded_files

IPYW = int(W.__version__.split(".")[0])


def png(name: str = "rocket", size=(80, 60)) -> bytes:
    buf = io.BytesIO()
    cw.sample_image(name).resize(size).save(buf, format="PNG")
    return buf.getvalue()


def front_end_upload(upload: W.FileUpload, name: str, content: bytes, last_modified: int = 1_700_000_000_000):
    """What the browser sends when a file is chosen, as the comm message ipywidgets' handler gets it."""
    if IPYW >= 8:
        state = {"value": [{"name": name, "type": "image/png", "size": len(content), "last_modified": last_modified,
                            "content": memoryview(content)}]}
    else:  # 7.x: the front end counts on from its own _counter, and sends metadata and data beside it
        state = {"_counter": upload._counter + 1, "data": [memoryview(content)],
                 "metadata": [{"name": name, "type": "image/png", "size": len(content), "lastModified": last_modified}]}
    upload._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}}, "buffers": []})


def test_uploaded_files_and_clear_upload_under_this_ipywidgets():
    u = W.FileUpload(accept="image/*")
    seen = []

    def on(change):
        files = uploaded_files(u)
        if files:
            seen.append(files)
            clear_upload(u)

    u.observe(on, "value")
    content = png()
    front_end_upload(u, "a.png", content)
    front_end_upload(u, "a.png", content)  # the same file again
    front_end_upload(u, "b.png", content[:-1] + b"\0")
    assert [f[0][0] for f in seen] == ["a.png", "a.png", "b.png"], f"ipywidgets {W.__version__}: {seen}"
    assert seen[0][0][1] == content and isinstance(seen[0][0][1], bytes)
    assert not uploaded_files(u) and u.value in ({}, ())  # the bytes are not kept
    if IPYW < 8:
        assert u.data == [] and u.metadata == []


def test_the_same_png_uploaded_twice_is_taken_twice_by_featuremaps(probe, cat):
    fm = cw.FeatureMaps(probe, cat)
    fired = []
    fm.input.on_change(lambda img: fired.append(img.size))
    content = png(size=(120, 90))
    front_end_upload(fm.input.upload, "rocket.png", content)
    assert fm.input.name == "upload: rocket.png" and fired == [(120, 90)], fired  # once, not twice
    tiles = fm.grid_image.value if hasattr(fm, "grid_image") else None
    fm.input.dropdown.value = "chelsea"
    assert len(fired) == 2
    front_end_upload(fm.input.upload, "rocket.png", content)  # the same file again: taken
    assert fm.input.name == "upload: rocket.png" and fired[2:] == [(120, 90)], fired
    if tiles is not None:
        assert fm.grid_image.value == tiles  # the same maps as after the first upload
    front_end_upload(fm.input.upload, "rocket.png", content)  # and again, while shown: announced again
    assert len(fired) == 4
    fm.close()


def test_an_upload_that_is_not_an_image_is_said_under_this_ipywidgets(probe, cat):
    fm = cw.FeatureMaps(probe, cat)
    front_end_upload(fm.input.upload, "notes.txt", b"hello")
    assert "not an image" in fm.message.value and "notes.txt" in fm.message.value
    assert fm.input.name == "your image"
    fm.close()


def test_the_same_png_uploaded_twice_is_taken_twice_by_saliency(probe, cat):
    sal = cw.Saliency(probe, cat)
    sal.join(120)
    shown = []
    original = sal.set_image
    sal.set_image = lambda image, *a, **k: (shown.append(getattr(image, "size", None)), original(image, *a, **k))
    content = png(size=(120, 90))
    front_end_upload(sal.upload, "rocket.png", content)
    sal.set_image(cat)
    front_end_upload(sal.upload, "rocket.png", content)
    assert shown.count((120, 90)) == 2, shown
    front_end_upload(sal.upload, "notes.txt", b"hello")
    assert "not an image" in sal.message.value and "notes.txt" in sal.message.value
    sal.close()


# --- no argument ipywidgets 7 would ignore -----------------------------------------------------------------------------
UNRECOGNIZED = re.compile(r"Passing unrecognized arguments to super\((\w+)\)\.__init__\((.*)\)", re.S)


def _ignored_arguments(records) -> list[str]:
    """The 'unrecognized arguments' warnings that mean an argument was dropped: not those for a Python property the
    class handles itself (bqplot 0.13's ``Axis(orientation=...)``)."""
    out = []
    for r in records:
        m = UNRECOGNIZED.search(str(r.message))
        if not m:
            continue
        cls = getattr(bq, m.group(1), None) or getattr(W, m.group(1), None)
        names = re.findall(r"(\w+)=", m.group(2))
        if cls is not None and names and all(isinstance(getattr(cls, n, None), property) for n in names):
            continue
        out.append(f"{r.filename}:{r.lineno}: {m.group(0).splitlines()[0]}")
    return out


def test_the_argument_check_sees_an_ignored_argument():
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        W.IntSlider(3, no_such_argument="x")
        bq.Axis(scale=bq.LinearScale(), orientation="vertical")  # a trait in bqplot 0.12, a property in 0.13: taken
    found = _ignored_arguments(records)
    assert len(found) == 1 and "IntSlider" in found[0] and "no_such_argument" in found[0], found


PANELS = {
    "FeatureMaps": lambda p, cat, x: cw.FeatureMaps(p, cat),
    "Histogram": lambda p, cat, x: cw.Histogram(p, cat),
    "CKAHeatmap": lambda p, cat, x: cw.CKAHeatmap(p, x[0][:8], layers=["_blocks.0", "_blocks.4", "_blocks.15"],
                                                  batch_size=8, autostart=False),
    "CKAHeatmap channels": lambda p, cat, x: cw.CKAHeatmap(p, x[0][:8], mode="channels", layer="_blocks.15",
                                                           autostart=False),
    "Saliency": lambda p, cat, x: cw.Saliency(p, cat),
    "Dream": lambda p, cat, x: cw.Dream(p, photo=cat),
    "Embedding": lambda p, cat, x: cw.Embedding(p, x[0], x[1], layer=p.layers[20].name),
    "ImageGrid": lambda p, cat, x: cw.ImageGrid(x[0], labels=x[1], per_page=8),
    "Explorer": lambda p, cat, x: cw.Explorer(p, cat, images=x[0]),
}


@pytest.fixture(scope="module")
def images():
    return cw.sample_dataset(8, size=96, seed=1)


@pytest.mark.parametrize("name", PANELS)
def test_every_panel_is_built_with_arguments_this_ipywidgets_knows(name, probe, cat, images):
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        panel = PANELS[name](probe, cat, images)
        if name == "Explorer":  # every tab's panel
            for i in range(len(panel.tabs.children)):
                panel.tabs.selected_index = i
        if name == "Dream":  # every mode and objective shows other controls
            for mode in ("atlas", "deepdream", "single"):
                panel.mode = mode
            for objective in ("neuron", "layer", "channel"):
                panel.objective = objective
        panel.join(120)
    ignored = _ignored_arguments(records)
    panel.close()
    assert not ignored, f"ipywidgets {W.__version__} / bqplot {bq.__version__} ignored arguments of {name}:\n" + \
                        "\n".join(ignored)
