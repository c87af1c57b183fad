"""A student's own folder of images in JupyterLab: the ImageGrid preview answers a real click, and the
Embedding of a small CNN over the same folder is coloured by class with a legend."""
import json
import time

import pytest

GRID_IMG = ".cnnw-imagegrid-figure image"  # the bqplot Image mark's SVG <image>

SETUP = """
import tempfile, pathlib, torch
import cnnwidgets as cw
from cnnwidgets import render
from PIL import Image
root = pathlib.Path(tempfile.mkdtemp()) / "photos"
x, names = cw.sample_dataset(30, size=64, names=["chelsea", "coffee", "rocket"], seed=3)
for i, (img, n) in enumerate(zip(x, names)):
    (root / n).mkdir(parents=True, exist_ok=True)
    Image.fromarray(render.image_rgb(img)).save(root / n / f"{n}_{i:02d}.png")
(root / "coffee" / "notes.txt").write_text("bought in Rome")
"""


def _value(nb, expr):
    out = nb.run_cell(f"print(json.dumps({expr}))")
    text = "".join(o.get("text", "") for o in out if o.get("output_type") == "stream")
    return json.loads(text.strip().splitlines()[-1])


@pytest.mark.browser
def test_imagegrid_click_and_embedding_coloured_by_class(lab):
    nb = lab.run_notebook([
        "import json\n" + SETUP,
        "grid = cw.ImageGrid(root, per_page=12, cols=6)\ngrid",
    ], name="imagegrid")
    page = nb.page
    nb.wait_for(GRID_IMG, timeout=60_000, state="attached")
    text = page.locator(".cnnw-imagegrid").first.inner_text()
    assert "30 images · 3 classes" in text and "images 1–12 of 30" in text
    assert "skipped 1 file that is not an image (coffee/notes.txt)" in text
    assert _value(nb, "grid.index") == -1

    # a real click on the 9th thumbnail (row 2, column 3) selects image 8
    cols, tile, gap, cap = _value(nb, "[grid.cols, grid.tile, 6, 20]")
    w_px = _value(nb, "int(grid._page_rgb.shape[1])")
    img = page.locator(GRID_IMG).first
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    scale = box["width"] / w_px
    page.mouse.click(box["x"] + (2 * (tile + gap) + tile / 2) * scale, box["y"] + (tile + cap + gap + tile / 2) * scale)
    deadline = time.monotonic() + 20
    while _value(nb, "grid.index") == -1 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _value(nb, "grid.index") == 8
    assert _value(nb, "str(grid.image)").endswith("chelsea_24.png")
    page.wait_for_function("() => document.body.innerText.includes('selected: image 8')", timeout=20_000)
    nb.scroll_to(".cnnw-imagegrid")
    nb.screenshot("imagegrid-clicked", selector=".cnnw-imagegrid")

    # next page
    page.locator(".cnnw-imagegrid button", has_text="next").first.click()
    page.wait_for_function("() => document.body.innerText.includes('images 13–24 of 30')", timeout=20_000)

    # the Embedding of a small CNN over the same folder: coloured by class, legend of class names
    nb.run_cell(
        "torch.manual_seed(0)\n"
        "net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),\n"
        "                          torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU())\n"
        "probe = cw.Probe(net, device='cpu', transform=cw.Preprocess(resize=None, crop=(64, 64)))\n"
        "emb = cw.Embedding(probe, root, layer=probe.layers[1].name)\nemb")
    nb.run_cell("emb.compute(); print('points', [len(m.x) for m in emb.marks], emb._classes)")
    assert "points [10, 10, 10] ['chelsea', 'coffee', 'rocket']" in nb.outputs_text()
    dots = page.locator(".bqplot .dot")
    dots.nth(29).wait_for(state="attached", timeout=30_000)
    colours = set(dots.evaluate_all("(els) => els.map(e => getComputedStyle(e).fill)"))
    assert len(colours) == 3  # one colour per class
    legend = page.locator(".widget-html", has_text="class").filter(has_text="rocket").last
    assert legend.is_visible()
    assert [t.strip() for t in legend.inner_text().splitlines() if t.strip()][-3:] == ["● chelsea", "● coffee", "● rocket"]
    dots.nth(3).scroll_into_view_if_needed()
    nb.screenshot("embedding-by-class", full_page=False)

    # the Explorer given images= opens on an Images tab; a click there shows that image in the feature maps
    nb.run_cell("ex = cw.Explorer(probe, panels=['Feature maps'], images=root)\nex")
    grid_in_tab = page.locator(".jupyter-widgets.widget-tab " + GRID_IMG).last
    grid_in_tab.wait_for(state="attached", timeout=30_000)
    box = grid_in_tab.bounding_box()
    assert box["width"] > 300  # drawn at its size inside the tab, not collapsed
    grid_in_tab.scroll_into_view_if_needed()
    box = grid_in_tab.bounding_box()
    page.mouse.click(box["x"] + (tile / 2) * box["width"] / w_px, box["y"] + (tile / 2) * box["width"] / w_px)
    deadline = time.monotonic() + 20
    while _value(nb, "ex.panels['Images'].index") == -1 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _value(nb, "ex.panels['Images'].index") == 0
    assert _value(nb, "str(ex.image) == str(ex.panel('Feature maps').input.image) == str(ex.panels['Images'].image)")
    nb.screenshot("explorer-images-tab", full_page=False)
