"""TopImages in JupyterLab (headless Chromium) on a model and data cnnwidgets does not ship: a small CNN trained in
the notebook on scikit-learn's digits, written as a folder of PNGs (one sub-folder per digit) and indexed; real
clicks browse channels, rank by mean, and a click on a FeatureMaps tile shows that channel's top images."""
import json

import pytest

from browser import printed_repr as _value, wait_change as _wait_change

SETUP = r'''
import tempfile, pathlib, numpy as np, torch, torch.nn as nn, torch.nn.functional as F, traitlets
from PIL import Image
from sklearn.datasets import load_digits
import cnnwidgets as cw

d = load_digits()
x = F.interpolate(torch.tensor(d.images[:400], dtype=torch.float32)[:, None] / 16, size=(28, 28), mode="bilinear").clamp(0, 1)
y = torch.tensor(d.target[:400])
folder = pathlib.Path(tempfile.mkdtemp()) / "digits"
for i, (img, label) in enumerate(zip(x, y)):
    (folder / str(int(label))).mkdir(parents=True, exist_ok=True)
    Image.fromarray((img[0].numpy() * 255).round().astype(np.uint8)).save(folder / str(int(label)) / f"{i:03d}.png")

torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 7 * 7, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for step in range(60):
    i = torch.randint(0, 400, (64,), generator=torch.Generator().manual_seed(step))
    opt.zero_grad(); F.cross_entropy(model(x[i]), y[i]).backward(); opt.step()
model.eval()
probe = cw.Probe(model, input_size=28, mean=0, std=1, channels=1)
ix = cw.index.build(probe, str(folder), ["0", "3"], k=8)
'''


@pytest.mark.browser
def test_topimages_browse_rank_and_featuremaps_link(lab):
    nb = lab.run_notebook([
        SETUP,
        "top = cw.TopImages(ix, '3', images=str(folder), probe=probe, channel=2)\ntop",
        "fm = cw.FeatureMaps(probe, str(folder / '7' / sorted(p.name for p in (folder / '7').iterdir())[0]), layer='3')\n"
        "fm.channel = 2  # linked below: the top images start on FeatureMaps' channel\n"
        "links = [traitlets.link((fm, 'layer'), (top, 'layer')), traitlets.link((fm, 'channel'), (top, 'channel'))]\nfm",
    ], name="topimages", timeout=180)
    page = nb.page
    nb.wait_for(".cnnw-topimages .cnnw-top-img", timeout=60_000)
    card_src = lambda: page.locator(".cnnw-topimages img.cnnw-top-img").first.get_attribute("src")  # noqa: E731
    caption = lambda: page.locator(".cnnw-top-channel").first.inner_text()  # noqa: E731
    assert "channel 2 of 16" in caption()
    assert page.locator(".cnnw-topimages .cnnw-top-card").count() == 8
    text = page.locator(".cnnw-topimages").first.inner_text()
    assert "#1" in text and "yellow frame" in text and "rank by" in text
    nb.scroll_to(".cnnw-topimages")
    nb.screenshot("topimages-panel", selector=".cnnw-topimages")

    # 1. a real click on "next": channel 3, its own top images
    before = card_src()
    page.locator(".cnnw-topimages button", has_text="next").first.click()
    _wait_change(card_src, before)
    assert "channel 3 of 16" in caption() and _value(nb, "top.channel") == "3"
    assert _value(nb, "[h.ref for h in top.hits] == [h.ref for h in ix.top('3', 3)]") == "True"

    # 2. rank by the whole image's mean
    before = card_src()
    page.locator(".cnnw-topimages button", has_text="whole image (mean)").first.click()
    page.wait_for_function("() => document.querySelector('.cnnw-top-channel').innerText.includes('mean over the whole')",
                           timeout=20_000)
    assert _value(nb, "top.by") == "'mean'"
    assert _value(nb, "[h.ref for h in top.hits] == [h.ref for h in ix.top('3', 3, by='mean')]") == "True"

    # 3. a click on the 6th tile of FeatureMaps' grid: the top images follow to that channel
    grid = ".cnnw-grid image"
    nb.wait_for(grid, timeout=30_000, state="attached")
    cols, th, tw = json.loads(_value(nb, "[fm.plan.cols(0), *fm.plan.tile_hw]"))
    w_px = int(_value(nb, "fm._grid_rgb.shape[1]"))
    page.locator(grid).first.scroll_into_view_if_needed()
    box = page.locator(grid).first.bounding_box()
    scale = box["width"] / w_px
    col, row = 5 % cols, 5 // cols
    before = card_src()
    page.mouse.click(box["x"] + (col * (tw + 1) + tw / 2) * scale, box["y"] + (row * (th + 1) + th / 2) * scale)
    _wait_change(card_src, before)
    channel = _value(nb, "fm.channel")
    assert _value(nb, "top.channel") == channel == _value(nb, "int(fm.visible_channels[5])")
    assert f"channel {channel} of 16" in caption()
    nb.scroll_to(".cnnw-topimages")
    nb.screenshot("topimages-linked", selector=".cnnw-topimages")
    nb.run_cell("fm.close(); top.close()")

    # 4. the Explorer given the index: a Top images tab, the channel's dream beside its examples
    nb.run_cell("ex = cw.Explorer(probe, images=str(folder), index=ix)\nex.channel = 6\nex")
    page.locator(".lm-TabBar-tab, .p-TabBar-tab", has_text="Top images").last.click()
    nb.wait_for(".cnnw-topimages .cnnw-top-img", timeout=30_000)
    page.locator(".cnnw-topimages button", has_text="Dream").last.click()
    page.wait_for_function("() => { const i = document.querySelector('img.cnnw-top-dream');"
                           " return i && i.offsetWidth > 0 && i.getAttribute('src'); }", timeout=60_000)
    page.wait_for_function("() => !document.querySelector('.cnnw-topimages').innerText.includes('step ')",
                           timeout=60_000)  # the dream's last frame
    assert "channel 6 of 16" in page.locator(".cnnw-top-channel").last.inner_text()
    assert "dream of channel 6 of layer 3" in page.locator(".cnnw-topimages").last.inner_text()
    nb.scroll_to(".cnnw-topimages")
    nb.screenshot("topimages-explorer", selector=".cnnw-topimages")
    nb.run_cell("ex.close()")
    nb.close()
