"""Exported notebooks keep their results: a notebook executed headless (nbclient) and exported to HTML (nbconvert)
shows each panel's last view as an image, offline, while live front ends show the live panel alone."""
from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

WIDGET = "application/vnd.jupyter.widget-view+json"
ROOT = Path(__file__).resolve().parents[1]


class _StaticImages(HTMLParser):
    """(base64 PNG, panel name) of each ``<img>`` inside a ``cnnw-static`` div of an HTML page."""

    def __init__(self):
        super().__init__()
        self.inside, self.found = 0, []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "div" and "cnnw-static" in (a.get("class") or "").split():
            self.inside += 1
        elif tag == "img" and self.inside and (a.get("src") or "").startswith("data:image/png;base64,"):
            self.found.append((a["src"].split(",", 1)[1], (a.get("alt") or "").split(":")[0]))

    def handle_endtag(self, tag):
        if tag == "div" and self.inside:
            self.inside -= 1


def static_images(html: str) -> list[tuple[str, str]]:
    parser = _StaticImages()
    parser.feed(html)
    return parser.found


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def panel_outputs(nb) -> list[tuple[int, dict]]:
    """(cell index, static output) of every panel the notebook displayed: the output right after the panel's widget."""
    found = []
    for i, cell in enumerate(nb.cells):
        outs = cell.get("outputs", []) if cell.cell_type == "code" else []
        for k, o in enumerate(outs):
            text = o.get("data", {}).get("text/plain", "")
            if WIDGET in o.get("data", {}) and text.endswith("panel (live when the notebook runs; its last view is below)"):
                assert k + 1 < len(outs) and "cnnw-static" in outs[k + 1]["data"].get("text/html", ""), \
                    f"cell {i}: {text.split()[0]} has no static view after it"
                found.append((i, outs[k + 1]))
    return found


def export_html(nb, path: Path | None = None) -> str:
    from nbconvert import HTMLExporter

    resources = {"metadata": {"name": path.stem, "path": str(path.parent)}} if path else {}
    return HTMLExporter().from_notebook_node(nb, resources=resources)[0]


def assert_panels_exported(nb, path: Path | None = None) -> list[tuple[str, np.ndarray]]:
    """Every panel of an executed notebook shows an image of itself in the exported HTML, in order: a real picture
    (not blank, at least 200x120 px), the same PNG as the panel's static output. Returns (panel, image) pairs."""
    outputs = panel_outputs(nb)
    shown = static_images(export_html(nb, path))
    name = path.name if path else "notebook"
    missing = [f"cell {i}: {o['data']['text/plain']}" for i, o in outputs if "image/png" not in o["data"]]
    assert not missing, f"{name}: panels without an image of their last view: {missing}"
    assert [b for b, _ in shown] == [o["data"]["image/png"] for _, o in outputs], \
        f"{name}: the HTML has {len(shown)} panel images for {len(outputs)} panels"
    out = []
    for b64, panel in shown:
        rgb = decode(b64)
        assert rgb.shape[0] >= 120 and rgb.shape[1] >= 200, f"{name}: {panel}'s image is only {rgb.shape[1]}x{rgb.shape[0]}"
        assert rgb.std() > 10, f"{name}: {panel}'s image is blank"
        out.append((panel, rgb))
    return out


def execute(cells: list[str], tmp_path: Path):
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    return nb


@pytest.mark.notebook
def test_each_panel_exports_its_last_view(tmp_path):
    """Panels changed after they were displayed (a layer moved in a later cell, a dream run after it was shown, a CKA
    map computed in the background): the exported image is what each panel shows at the end, pixel for pixel."""
    nb = execute([
        "import cnnwidgets as cw\nprobe = cw.Probe(cw.load_model())\ncat = cw.sample_image('chelsea')",
        "fm = cw.FeatureMaps(probe, cat); fm",
        "dream = cw.Dream(probe, probe.layers.names[20], channel=3, steps=6, size=64); dream",
        "cka = cw.CKAHeatmap(probe, cw.sample_batch(8), layers=probe.layers.names[:6]); cka",
        "fm.layer = probe.layers.names[9]; fm.channel = 2\ndream.start(); dream.join(); cka.join();",
        "hist = cw.Histogram(probe, cat)\ndisplay(hist)\nhist.layer = probe.layers.names[3]",
        "panels = dict(FeatureMaps=fm, Dream=dream, CKAHeatmap=cka, Histogram=hist)\n"
        "for name, p in panels.items(): p.save(f'{name}.png', dpi=80)",
    ], tmp_path)
    exported = assert_panels_exported(nb)
    assert [name for name, _ in exported] == ["FeatureMaps", "Dream", "CKAHeatmap", "Histogram"]
    for name, rgb in exported:
        last = np.asarray(Image.open(tmp_path / f"{name}.png").convert("RGB"))
        assert rgb.shape == last.shape and np.abs(rgb.astype(int) - last).mean() < 1, f"{name}: not its last view"
    # the PDF route (LaTeX) has no widget view at all: it takes each panel's PNG
    from nbconvert import LatexExporter

    latex, resources = LatexExporter().from_notebook_node(nb)
    pngs = {base64.b64decode(o["data"]["image/png"]) for _, o in panel_outputs(nb)}
    files = [name for name, data in resources["outputs"].items() if data in pngs]
    assert len(pngs) == 4 and len(files) == 4 and all(f"{{{f}}}" in latex for f in files), files
    first = [o for o in nb.cells[1].outputs if "cnnw-static" in o.get("data", {}).get("text/html", "")][0]
    assert "image/png" in first["data"]  # the output of cell 2 itself was updated (not a new output in cell 5)
    assert len(nb.cells[4].outputs) == 0
