"""ImageGrid: a paged preview of any image set, a click selects an image; the Explorer's Images tab."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

import cnnwidgets as cw
from cnnwidgets import render
from cnnwidgets.images import to_tensor
from cnnwidgets.widgets.imagegrid import CAPTION, GAP, ImageGrid

NAMES = ["chelsea", "coffee", "rocket"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """30 crops of three photographs in one sub-folder per photograph, and a notes.txt."""
    root = tmp_path_factory.mktemp("photos")
    x, names = cw.sample_dataset(30, size=48, names=NAMES, seed=2)
    for i, (img, n) in enumerate(zip(x, names)):
        (root / n).mkdir(exist_ok=True)
        Image.fromarray(render.image_rgb(img)).save(root / n / f"{n}_{i:02d}.png")
    (root / "coffee" / "notes.txt").write_text("espresso")
    return root


def _centre(grid, pos):
    """Pixel (x, y from the top) at the middle of tile ``pos`` of the page."""
    r, c = divmod(pos, grid.cols)
    return c * (grid.tile + GAP) + grid.tile / 2, r * (grid.tile + CAPTION + GAP) + grid.tile / 2


def test_pages_captions_and_clicks(photos):
    grid = cw.ImageGrid(photos, per_page=12, cols=4, tile=64)
    s = grid.images
    assert "30 images · 3 classes" in grid.header.value and "skipped 1 file" in grid.header.value
    assert grid.pages == 3 and grid.page_text() == "images 1–12 of 30" and grid.prev_button.disabled
    h, w = grid._page_rgb.shape[:2]
    assert (w, h) == (4 * 64 + 3 * GAP, 3 * (64 + CAPTION + GAP) - GAP)
    # the tile shows the image (48 px enlarged to 64), the band under it its class name (dark text on white)
    x0 = 64 + GAP
    tile, caption = grid._tile(1)
    np.testing.assert_array_equal(grid._page_rgb[:64, x0:x0 + 64], tile)
    ref = np.asarray(Image.open(s.image(1)).convert("RGB").resize((64, 64), Image.LANCZOS)).astype(int)
    assert np.abs(tile.astype(int) - ref).max() <= 1 and caption == "chelsea"
    band = grid._page_rgb[64:64 + CAPTION, :64]
    assert band.min() < 100 and (band == 255).mean() > 0.5
    # a click (bqplot counts y from the bottom) on the 7th tile selects image 6
    x, y = _centre(grid, 6)
    grid._on_click(None, {"data": {"click_x": x, "click_y": h - y}})
    assert grid.index == 6 and grid.image == s.image(6) and "chelsea" in grid.selection.value
    assert grid._sel.visible and min(grid._sel.x) < x < max(grid._sel.x)
    assert grid.select_at(64 + GAP / 2, 10) is None and grid.index == 6  # the gap between tiles selects nothing
    grid.next_button.click()
    assert grid.page == 1 and grid.page_text() == "images 13–24 of 30" and not grid._sel.visible
    grid.index = 27  # set from Python (a linked panel): the grid turns to its page and outlines it
    assert grid.page == 2 and grid.page_text() == "images 25–30 of 30" and grid.next_button.disabled
    assert grid._sel.visible and s.class_name(s.label(27)) in grid.selection.value
    grid.page = 99
    assert grid.page == 2
    with pytest.raises(Exception, match="out of range"):
        grid.index = 30
    grid.index = -1
    assert grid.image is None and not grid._sel.visible


def test_captions_of_unlabelled_sets_and_what_the_model_sees(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((20, 30, 3), 60 * i, np.uint8)).save(tmp_path / f"scan_{i}.png")
    grid = ImageGrid(tmp_path, tile=48)
    assert grid._tile(2)[1] == "scan_2.png" and grid.page_text() == "images 1–3 of 3"
    digits = torch.rand(5, 1, 8, 8)
    grid = ImageGrid(digits, tile=48)  # tiny images: enlarged by whole pixels (crisp), centred
    assert grid._tile(0)[1] == "#0"
    tile = grid._tile(0)[0]
    assert tile.shape == (48, 48, 3) and np.array_equal(tile[0:6, 0:6], np.repeat(np.repeat(
        render.image_rgb(to_tensor(digits[0]))[:1, :1], 6, 0), 6, 1))
    probe = cw.Probe(torch.nn.Conv2d(1, 2, 3), device="cpu",
                     transform=cw.Preprocess(resize=None, crop=(6, 6), channels=1, mean=(0.5,), std=(0.5,)))
    grid = ImageGrid(digits, probe, tile=48)  # as the model sees it: the 6x6 centre crop
    assert np.array_equal(grid._tile(0)[0], np.repeat(np.repeat(render.image_rgb(digits[0, :, 1:7, 1:7]), 8, 0), 8, 1))


def test_a_shuffled_loader_shows_its_latest_pass_and_save_works(tmp_path):
    x = torch.rand(10, 3, 16, 16)
    loader = DataLoader(TensorDataset(x, torch.arange(10) % 2), batch_size=4, shuffle=True)
    grid = ImageGrid(loader, per_page=6, classes=["even", "odd"])
    assert grid.page_text() == "images 1–6 of 10"
    grid.index = 2
    seen = grid.image  # the thumbnail of the image at position 2 of this pass
    match = [i for i in range(10) if torch.allclose(to_tensor(seen), x[i], atol=1 / 255)]
    assert len(match) == 1 and grid.images.class_name(match[0] % 2) in grid.selection.value
    out = grid.save(tmp_path / "grid.png", dpi=60)
    assert Image.open(out).size[0] > 150


def test_the_explorer_shows_its_images_and_passes_the_one_picked(photos):
    probe = cw.Probe(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                         torch.nn.Conv2d(4, 4, 3, padding=1)), device="cpu",
                     transform=cw.Preprocess(resize=None, crop=(48, 48)))
    ex = cw.Explorer(probe, panels=["Feature maps", "Embedding"], images=photos)
    assert ex.names == ["Images", "Feature maps", "Embedding"] and list(ex.panels) == ["Images"]
    grid = ex.panels["Images"]
    fm = ex.panel("Feature maps")
    grid.index = 4
    assert ex.image == grid.image == str(sorted(photos.glob("*/*.png"))[4])
    assert fm.input.image == grid.image  # the feature maps show the picked image
    emb = ex.panel("Embedding")
    assert emb.images is grid.images and emb._classes == NAMES
