"""Exported notebooks keep their results, seen in a real browser: JupyterLab 4 and the classic Notebook 6 (ipywidgets
7.7.1) show the live panel and not its static view; the exported HTML, opened offline, shows each panel's image."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

#: in an output area: visible static views, their <img>s, and the panel's live widget images
_JS_LOOK = """(root) => {
  const el = typeof root === 'string' ? document.querySelector(root) : root;
  const shown = (e) => e.offsetParent !== null && e.getBoundingClientRect().height > 0;
  return {static: el.querySelectorAll('.cnnw-static').length,
          static_shown: [...el.querySelectorAll('.cnnw-static, .cnnw-static img')].filter(shown).length,
          live_images: [...el.querySelectorAll('img.widget-image')].filter(e => shown(e) && e.naturalWidth > 0).length,
          src: (el.querySelector('.cnnw-static img') || {}).src || ''};
}"""


def test_jupyterlab_shows_the_live_panel_not_its_static_view(lab):
    nb = lab.run_notebook(["import cnnwidgets as cw\np = cw.Probe(cw.load_model())\nfm = cw.FeatureMaps(p, cw.sample_image('chelsea'))\nfm"],
                          name="export-live")
    out = ".jp-Notebook .jp-Cell:nth-child(1) .jp-OutputArea"
    nb.page.wait_for_function(f"() => document.querySelector('{out} .cnnw-static img')", timeout=60_000)
    nb.wait_for(f"{out} img.widget-image")
    before = nb.page.evaluate(_JS_LOOK, out)
    assert before["static"] == 1 and before["static_shown"] == 0 and before["live_images"] >= 2, before
    # the panel's view changes in a later cell: its static view follows, the live view is left in place (not redrawn)
    nb.page.evaluate(f"() => {{ document.querySelector('{out} .cnnw-featuremaps').dataset.mark = 'kept'; }}")
    nb.run_cell("fm.layer = p.layers.names[9]")
    nb.page.wait_for_function(f"(old) => document.querySelector('{out} .cnnw-static img').src !== old", arg=before["src"],
                              timeout=30_000)
    after = nb.page.evaluate(_JS_LOOK, out)
    assert after["static_shown"] == 0 and after["live_images"] >= 2, after
    assert nb.page.evaluate(f"() => document.querySelector('{out} .cnnw-featuremaps').dataset.mark") == "kept"
    nb.screenshot("export-live-jupyterlab")
    nb.close()


@pytest.mark.colab
def test_classic_notebook_with_ipywidgets_7_shows_the_live_panel_not_its_static_view():
    from browser_classic import ClassicNotebook

    nbs = ClassicNotebook()
    try:
        nb = nbs.run_notebook(["import ipywidgets, cnnwidgets as cw\nprint(ipywidgets.__version__)\n"
                               "fm = cw.FeatureMaps(cw.Probe(cw.load_model()), cw.sample_image('chelsea'))\nfm"],
                              name="export-live-classic")
        assert "7.7.1" in nb.outputs_text()
        nb.run_cell("fm.join(60)")  # a later cell: the static view is redrawn after it, whatever was still computing
        try:
            nb.page.wait_for_function("() => document.querySelector('#notebook .cnnw-static img') && "
                                      "document.querySelector('#notebook img.widget-image')", timeout=60_000)
        except Exception:
            nb.screenshot("export-live-classic-failed")
            pytest.fail(f"no static image or no live image in the classic notebook; outputs: {nb.outputs(0)}"[:4000])
        nb.page.wait_for_timeout(500)
        look = nb.page.evaluate(_JS_LOOK, "#notebook")
        assert look["static"] == 1 and look["static_shown"] == 0 and look["live_images"] >= 2, look
        nb.check_widgets()
        nb.screenshot("export-live-classic")
    finally:
        nbs.close()


def test_exported_html_shows_each_panel_offline(lab, tmp_path):
    """Executed with nbclient (widget state stored, as `jupyter nbconvert --execute` does) and exported to HTML: with
    no network the widget libraries cannot load, and each panel's image is what the reader sees."""
    from test_export import assert_panels_exported, execute, export_html

    nb = execute(["import cnnwidgets as cw\np = cw.Probe(cw.load_model())\ncat = cw.sample_image('chelsea')",
                  "fm = cw.FeatureMaps(p, cat); fm",
                  "sal = cw.Saliency(p, cat); display(sal); sal.join();",
                  "hist = cw.Histogram(p, cat); hist"], tmp_path)
    assert nb.metadata.get("widgets"), "nbclient stored no widget state: this test is meant to have it"
    assert len(assert_panels_exported(nb)) == 3
    page_file = tmp_path / "exported.html"
    page_file.write_text(export_html(nb))
    context = lab.browser.new_context(viewport={"width": 1100, "height": 1400})
    blocked = []
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                  else (blocked.append(route.request.url), route.abort()))
    try:
        page = context.new_page()
        page.goto(page_file.as_uri(), wait_until="load", timeout=60_000)
        page.wait_for_timeout(1000)
        images = page.evaluate("""() => [...document.querySelectorAll('.cnnw-static img')].map(e =>
            ({w: e.naturalWidth, h: e.naturalHeight, shown: e.offsetParent !== null && e.getBoundingClientRect().height > 0}))""")
        assert len(images) == 3 and all(i["shown"] and i["w"] > 200 for i in images), images
        assert blocked, "the page asked for nothing online: then this does not test an offline reader"
        out = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out / "export-offline-html.png"), full_page=True)
    finally:
        context.close()
