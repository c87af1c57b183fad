"""Reload-safe state in JupyterLab: every panel, used (a click or a slider move each), then the notebook saved and the
page reloaded, and opened in a second tab: every widget renders again from the running kernel.

On a reload (or a reconnect, or a second tab) the page asks the kernel for the state of all widgets in one message;
a single widget whose state cannot be serialized breaks it, and every widget of the notebook stays on "Loading
widget..." (known case: a click on a CKA cell left bqplot's GridHeatMap.selected an object-dtype array).
tests/test_widget_state.py checks the same without a browser.
"""
from __future__ import annotations

import json
import re
import time

import pytest

pytestmark = pytest.mark.browser

SETUP = ("import json, torch; torch.set_num_threads(1)  # 2 shared cores\n"
         "import cnnwidgets as cw\np = cw.Probe(cw.load_model(), device='cpu')\ncat = cw.sample_image('chelsea')\n"
         "x, names = cw.sample_dataset(24, size=96, seed=2)")
PANELS = {  # name: the cell that shows it
    "featuremaps": "fm = cw.FeatureMaps(p, cat)\nfm",
    "histogram": "h = cw.Histogram(p, cat)\nh",
    "cka": "hm = cw.CKAHeatmap(p, x[:8], layers=['_blocks.0', '_blocks.4', '_blocks.10', '_blocks.15'], batch_size=8)\nhm",
    "saliency": "sal = cw.Saliency(p, cat)\nsal",
    "dream": "d = cw.Dream(p, layer='_blocks.5._project_conv', channel=3, steps=20, size=48)\nd",
    "embedding": "emb = cw.Embedding(p, x, names, layer=p.layers[20].name)\nemb",
    "imagegrid": "grid = cw.ImageGrid(x, labels=names, per_page=12, cols=6)\ngrid",
    "explorer": "ex = cw.Explorer(p, cat, panels=['Feature maps', 'Histograms', 'Dream'])\nex",
    "monitor": ("import torch.nn.functional as F\ntorch.manual_seed(0)\n"
                "net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),\n"
                "    torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),\n"
                "    torch.nn.Linear(8, 10))\nxs, ys = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))\n"
                "mon = cw.Monitor(cw.Probe(net, input_size=32, mean=0, std=1, device='cpu'), xs[0], images=xs[:8], every=2)\n"
                "display(mon)\nopt = torch.optim.SGD(net.parameters(), lr=0.1)\nfor s in range(8):\n"
                "    loss = F.cross_entropy(net(xs), ys); opt.zero_grad(); loss.backward(); opt.step(); mon.step(loss=loss)\n"
                "mon.finish()"),
}

# per output area of the notebook: widget outputs, those with a rendered view, "Loading widget..." placeholders
_JS_VIEWS = """(sel) => {
  const areas = [...document.querySelector(sel).querySelectorAll('.jp-Cell')].map((cell, i) => {
    // a widget output: ipywidgets' renderer, showing a view, or its 'Loading widget...' / error text while it has none
    const outs = [...cell.querySelectorAll('.jp-OutputArea-output')].filter(o => o.querySelector(':scope > .jupyter-widgets')
                  || /^(Loading widget|Error displaying widget)/.test(o.textContent.trim()));
    return {cell: i, widgets: outs.length,
            rendered: outs.filter(o => o.querySelector('.jupyter-widgets') && !o.innerText.includes('Loading widget')).length,
            loading: outs.filter(o => o.innerText.includes('Loading widget')).length,
            errors: cell.querySelectorAll('.jupyter-widgets-error-widget').length,
            figures: [...cell.querySelectorAll('.bqplot.figure')].filter(f => f.offsetParent !== null).length,
            images: [...cell.querySelectorAll('img.widget-image')].filter(e => e.offsetParent !== null && e.naturalWidth > 0).length};
  });
  return areas.filter(a => a.widgets);
}"""


def _views(nb) -> list[dict]:
    return nb.page.evaluate(_JS_VIEWS, nb.panel)


def _value(nb, expr):
    out = nb.run_cell(f"print(json.dumps({expr}))")
    return json.loads("".join(o.get("text", "") for o in out if o.get("output_type") == "stream").strip().splitlines()[-1])


def _wait(nb, expr, ok, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        v = _value(nb, expr)
        if ok(v) or time.monotonic() > deadline:
            return v
        time.sleep(0.4)


def _cell_output(nb, index: int):
    return nb.page.locator(nb.panel).locator(".jp-Cell").nth(index).locator(".jp-OutputArea")


def _all_rendered(nb, expected: list[dict], timeout: float = 90) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        now = _views(nb)
        if [(a["cell"], a["rendered"], a["figures"], a["images"]) for a in now] == \
                [(a["cell"], a["rendered"], a["figures"], a["images"]) for a in expected]:
            return now
        if time.monotonic() > deadline:
            return now
        nb.page.wait_for_timeout(500)


def test_every_panel_renders_again_after_a_reload_and_in_a_second_tab(lab):
    t0 = time.monotonic()
    nb = lab.run_notebook([SETUP, *PANELS.values()], name="reload", timeout=600)
    page = nb.page
    cell = {name: i for i, name in enumerate(PANELS, start=1)}

    # --- use each panel, in the page ---------------------------------------------------------------------------------
    # FeatureMaps: the layer slider, moved with the keyboard
    _cell_output(nb, cell["featuremaps"]).locator(".noUi-handle, .ui-slider-handle").first.click()
    for _ in range(4):
        page.keyboard.press("ArrowRight")
    assert _wait(nb, "p.layers.names.index(fm.layer)", lambda v: v >= 3) >= 3
    # Histogram: a row of the parameter table
    _cell_output(nb, cell["histogram"]).locator("select[size]").first.select_option(index=5)
    assert _wait(nb, "h.parameter", bool)
    # CKA: a real click on the cell of row 1, column 2 (what made GridHeatMap.selected an object-dtype array)
    assert _wait(nb, "hm.result is not None and hm.result.final", bool, 240)
    cka = _cell_output(nb, cell["cka"]).locator("rect.heatmapcell").nth(1 * 4 + 2)
    cka.scroll_into_view_if_needed()
    box = cka.bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    assert _wait(nb, "list(hm.selected)", bool) == ["_blocks.4", "_blocks.10"]
    # Saliency: the third of the top-5 class buttons
    assert _wait(nb, "sal.join(120)", bool, 150)
    before = _value(nb, "sal.target")
    _cell_output(nb, cell["saliency"]).locator("button.jupyter-button", has_text="·").nth(2).click()
    assert _wait(nb, "sal.target", lambda v: v != before) != before
    # Dream: a short run, started with its button
    _cell_output(nb, cell["dream"]).locator("button", has_text="Start").first.click()
    assert _wait(nb, "d.controls.state", lambda v: v == "done", 120) == "done"
    # Embedding: Compute, then a click on a point
    _cell_output(nb, cell["embedding"]).locator("button", has_text="Compute").first.click()
    assert _wait(nb, "emb.controls.state", lambda v: v == "done", 120) == "done"
    dot = _cell_output(nb, cell["embedding"]).locator(".dot").nth(3)
    dot.scroll_into_view_if_needed()
    dot.click(force=True)
    assert _wait(nb, "emb.selected", lambda v: v >= 0) >= 0
    # ImageGrid: a click on the first thumbnail
    img = _cell_output(nb, cell["imagegrid"]).locator(".bqplot image").first
    img.scroll_into_view_if_needed()
    box = img.bounding_box()
    page.mouse.click(box["x"] + 20, box["y"] + 20)
    assert _wait(nb, "grid.index", lambda v: v >= 0) >= 0
    # Explorer: the Histograms tab, clicked
    _cell_output(nb, cell["explorer"]).locator(".lm-TabBar-tab", has_text="Histograms").first.click()
    assert _wait(nb, "sorted(ex.panels)", lambda v: "Histograms" in v)
    # Monitor (trained in its cell): the snapshot slider moved back with the keyboard
    last = _wait(nb, "mon.slider.value", lambda v: v >= 3)
    _cell_output(nb, cell["monitor"]).locator(".noUi-handle, .ui-slider-handle").first.click()
    for _ in range(2):
        page.keyboard.press("ArrowLeft")
    assert _wait(nb, "mon.slider.value", lambda v: v < last) < last
    page.wait_for_timeout(1000)  # the last images arrive

    before = _views(nb)
    assert [a["cell"] for a in before] == list(cell.values()), before
    assert all(a["rendered"] >= 1 and not a["loading"] and not a["errors"] for a in before), before
    assert not nb.js_errors, nb.js_errors
    nb.check_widgets()
    # the kernel can send the state of every widget it has (what a reload asks for)
    nb.run_cell("import ipywidgets as W\nfrom ipywidgets.widgets.widget import _remove_buffers\n"
                "for w in list(W.Widget.widgets.values()):\n    json.dumps(_remove_buffers(w.get_state())[0])")
    nb.screenshot("reload-before", full_page=False)

    # --- save, reload: everything renders again ------------------------------------------------------------------------
    nb.save()
    t_reload = time.monotonic()
    lab.reload(nb)
    after = _all_rendered(nb, before)
    reload_s = time.monotonic() - t_reload
    nb.scroll_to(f"{nb.panel} .jp-Cell:nth-child({cell['cka'] + 1})")
    nb.screenshot("reload-after", full_page=False)
    loading = [a for a in after if a["loading"]]
    assert not loading, f"widgets still on 'Loading widget...' after the reload: {loading}"
    assert [(a["cell"], a["rendered"], a["figures"], a["images"]) for a in after] == \
           [(a["cell"], a["rendered"], a["figures"], a["images"]) for a in before], (before, after)
    assert not nb.js_errors, nb.js_errors
    nb.check_widgets()

    # --- a second tab on the same notebook and kernel ----------------------------------------------------------------
    second = lab.open_notebook(nb.path)
    again = _all_rendered(second, before)
    assert [(a["cell"], a["rendered"], a["figures"], a["images"]) for a in again] == \
           [(a["cell"], a["rendered"], a["figures"], a["images"]) for a in before], (before, again)
    assert not second.js_errors, second.js_errors
    second.screenshot("reload-second-tab", full_page=False)
    print(f"reload test: {time.monotonic() - t0:.0f} s in all; every widget back {reload_s:.1f} s after the reload; "
          f"views per panel: {[(a['cell'], a['rendered'], a['figures'], a['images']) for a in before]}")
