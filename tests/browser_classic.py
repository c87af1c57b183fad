"""The Colab-like setting in a real browser: the classic Notebook 6 (ipywidgets 7.7.1, bqplot 0.12.47, ipykernel 6)
served from the Colab-like venv (``make install-colab``) on a loopback port, driven by headless Chromium.

    nbs = ClassicNotebook(colab_python())      # server + browser (both stopped by close())
    nb = nbs.run_notebook(["import cnnwidgets as cw", "cw.Probe(cw.load_model())"], name="probe")
    nb.run_cell("1 + 1")                       # appended at the bottom, run, waited for
    i = nb.run_cell("print(2)", wait=False)    # queued: nb.wait_cells({i}) later
    nb.screenshot("colab-probe")               # -> artifacts/screenshots/colab-probe.png

Cells run through the notebook's own JavaScript (``Jupyter.notebook``: ``execute_all_cells``, a cell's
``execute()``), so outputs and widgets render as a user sees them. Uncaught page errors and console errors are
collected in ``nb.js_errors`` / ``nb.console_errors``. It reuses :mod:`browser` (the JupyterLab harness) for the
server's life cycle, the browser, screenshots and :class:`browser.CellError`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

from browser import REPO, CellError, Lab, NotebookRun, _die_with_parent

COLAB_VENV = REPO / os.environ.get("CNNWIDGETS_COLAB_VENV", ".venv-colab")
KERNEL = "cnnwidgets-colab"
#: what bqplot draws for its marks inside a figure's plot area: bars, lines, scatter dots, grid heatmap cells, images
MARKS = ", ".join(f"svg.svg-figure {m}" for m in ("rect.bar", "path.line", "path.curve", ".dot", "rect.heatmapcell",
                                                   "image", "path.area"))

#: what a widget output shows when its view failed (ipywidgets 7's classic renderer, and 8's)
WIDGET_ERRORS = ("Error displaying widget", "Error rendering Jupyter widget", "Failed to load model class",
                 "Could not create a view", "Could not create a model")


def colab_python(timeout: float = 900) -> Path:
    """The Colab-like venv's python, created first if needed (``make install-colab``: stamped, so it installs once;
    a later call only checks the stamp)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV")}
    r = subprocess.run(["make", "--no-print-directory", "install-colab", f"COLAB_VENV={COLAB_VENV}"], cwd=REPO, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"make install-colab failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return COLAB_VENV / "bin" / "python"


# --- JavaScript run in the page (the classic Notebook's global `Jupyter`) ----------------------------------------------
_JS_STATE = """
() => {
  const J = window.Jupyter;
  if (!J || !J.notebook || !J.notebook._fully_loaded) return {ready: false};
  const nb = J.notebook;
  const icon = document.querySelector('#kernel_indicator_icon');
  const cls = icon ? icon.className : '';
  const status = /kernel_busy_icon/.test(cls) ? 'busy' : /kernel_idle_icon/.test(cls) ? 'idle' :
                 /kernel_dead_icon/.test(cls) ? 'dead' : /kernel_disconnected_icon/.test(cls) ? 'disconnected' : 'starting';
  const cells = nb.get_cells().map((c, i) => {
    const out = {index: i, type: c.cell_type, source: c.get_text()};
    if (c.cell_type === 'code') {
      const n = c.input_prompt_number;
      out.count = (n === undefined || n === null || n === '*' || n === ' ') ? null : n;
      out.running = n === '*';
      out.errors = [];
      out.stderr = [];
      for (const o of c.output_area.outputs) {
        if (o.output_type === 'error') out.errors.push(o.ename + ': ' + o.evalue + '\\n' + (o.traceback || []).join('\\n'));
        if (o.output_type === 'stream' && o.name === 'stderr') out.stderr.push(o.text);
      }
    }
    return out;
  });
  const kernel = nb.kernel;
  return {ready: !!(kernel && kernel.is_connected() && J.WidgetManager), status, cells};
}
"""


class ClassicRun(NotebookRun):
    """One notebook open in the classic Notebook in its own page, with a live kernel (ipykernel 6)."""

    def __init__(self, lab, path, page, context):
        super().__init__(lab, path, page, context)
        self.console_errors: list[str] = []  # console.error lines (ipywidgets 7 logs a failed view/model there)
        self.js_stacks: list[str] = []  # the stacks of js_errors
        page.on("pageerror", lambda e: self.js_stacks.append(getattr(e, "stack", "") or str(e)))
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))

    def _state(self):
        return self.page.evaluate(_JS_STATE)

    def wait_ready(self, timeout: float = 120):
        """Wait until the notebook, its kernel and the widget manager are up and the kernel is idle."""
        self.page.wait_for_function(
            "() => { const J = window.Jupyter; return !!(J && J.notebook && J.notebook._fully_loaded && J.notebook.kernel"
            " && J.notebook.kernel.is_connected() && J.WidgetManager && document.querySelector('#kernel_indicator_icon')"
            " && document.querySelector('#kernel_indicator_icon').className.includes('kernel_idle_icon')); }",
            timeout=timeout * 1000, polling=250)

    def run_all(self, timeout: float = 300, fail_on_stderr: bool = False):
        """Run every cell (Cell ▸ Run All) and wait until all have executed; raise :class:`CellError` on an error."""
        self._touch()
        self.page.evaluate("() => { Jupyter.notebook.clear_all_output(); Jupyter.notebook.execute_all_cells(); }")
        st = self._state()
        indices = {c["index"] for c in st["cells"] if c["type"] == "code"}
        st = self._wait_done(indices, timeout, self.path, fail_on_stderr)
        self.check_widgets()
        return st

    def run_cell(self, code: str, timeout: float = 120, fail_on_stderr: bool = False, wait: bool = True):
        """Append a code cell with ``code`` at the bottom and run it. With ``wait`` (default) wait for it and return
        its outputs (nbformat dicts); else return its index at once (queued if the kernel is busy)."""
        self._touch()
        index = self.page.evaluate("""(code) => { const nb = Jupyter.notebook;
            const cell = nb.insert_cell_at_bottom('code'); cell.set_text(code);
            const i = nb.find_cell_index(cell); nb.select(i); cell.execute(); nb.scroll_to_cell(i, 0); return i; }""", code)
        if not wait:
            return index
        first = code.strip().splitlines()[0] if code.strip() else ""
        self._wait_done({index}, timeout, f"{self.path}: run_cell({first!r})", fail_on_stderr)
        return self.outputs(index)

    def wait_cells(self, indices, timeout: float = 120, fail_on_stderr: bool = False):
        """Wait for the code cells at ``indices`` (e.g. queued with ``run_cell(..., wait=False)``)."""
        return self._wait_done(set(indices), timeout, f"{self.path}: cells {sorted(indices)}", fail_on_stderr)

    def outputs(self, index: int) -> list:
        return self.page.evaluate("(i) => JSON.parse(JSON.stringify(Jupyter.notebook.get_cell(i).output_area.outputs))",
                                  index)

    def cell_count(self, index: int):
        """The execution count shown for a cell (None before it ran, '*' while it runs or waits)."""
        return self.page.evaluate("(i) => { const n = Jupyter.notebook.get_cell(i).input_prompt_number;"
                                  " return n === undefined ? null : n; }", index)

    def widget_errors(self) -> list[str]:
        """Texts of outputs where a widget failed to render, and widget errors logged to the console."""
        texts = self.page.locator("#notebook .output_area").all_inner_texts()
        bad = [t for t in texts if any(e in t for e in WIDGET_ERRORS)]
        bad += [t for t in self.console_errors if any(e in t for e in WIDGET_ERRORS)]
        return bad

    def check_widgets(self):
        """Raise if a widget failed to render (ipywidgets 7 shows the error in the output or logs it)."""
        bad = self.widget_errors()
        if bad:
            raise CellError(f"{self.path}: a widget failed to render in the classic Notebook: {bad[0][:500]}")

    def widget_views(self) -> int:
        """How many widget outputs show a rendered view."""
        return self.page.evaluate("() => document.querySelectorAll('#notebook .output_area .jupyter-widgets').length")

    def output_of(self, index: int):
        """A Locator of the output area of the cell at ``index``."""
        self.page.evaluate("(i) => Jupyter.notebook.get_cell(i).output_area.element[0].setAttribute('data-cnnw-cell', String(i))",
                           index)
        return self.page.locator(f'[data-cnnw-cell="{index}"]')

    def figures(self, index: int) -> list[dict]:
        """The bqplot figures shown (not hidden) in the output of the cell at ``index``: size, CSS classes, and how many
        mark primitives they draw (bars, lines, dots, heatmap cells, images)."""
        return self.page.evaluate("""([i, marks]) => {
            const el = Jupyter.notebook.get_cell(i).output_area.element[0];
            return [...el.querySelectorAll('.bqplot.figure')].filter(f => f.offsetParent !== null).map(f => {
              const r = f.getBoundingClientRect();
              return {w: r.width, h: r.height, marks: f.querySelectorAll(marks).length, cls: f.className}; }); }""",
                                  [index, MARKS])

    def images(self, index: int) -> list[int]:
        """naturalWidth of every visible ipywidgets Image in the output of the cell at ``index`` (0: nothing drawn)."""
        return self.page.evaluate("""(i) => [...Jupyter.notebook.get_cell(i).output_area.element[0]
            .querySelectorAll('img.widget-image')].filter(e => e.offsetParent !== null).map(e => e.naturalWidth)""", index)

    def scroll_top(self):
        self.page.evaluate("() => { Jupyter.notebook.scroll_to_top(0); }")
        self.page.wait_for_timeout(200)

    def outputs_text(self) -> str:
        return "\n".join(self.page.locator("#notebook .output_area").all_inner_texts())

    def save(self, timeout: float = 30):
        """File ▸ Save (with the widget state, as the classic Notebook saves it) and wait until it is written."""
        self._touch()
        self.page.evaluate("() => Jupyter.notebook.save_notebook()")
        self.page.wait_for_function("() => !Jupyter.notebook.dirty", timeout=timeout * 1000, polling=200)


class ClassicNotebook(Lab):
    """``jupyter notebook`` (6.5, classic) from the Colab-like venv on a free 127.0.0.1 port with a token, serving a
    temporary root, and a headless Chromium. ``python``: the venv's interpreter (server and kernel)."""

    def __init__(self, python: str | os.PathLike | None = None, startup_timeout: float = 120):
        super().__init__(python=str(python or colab_python()), startup_timeout=startup_timeout)

    def _env(self) -> dict:
        share = self.root / "share"
        kdir = share / "jupyter" / "kernels" / KERNEL
        kdir.mkdir(parents=True)
        (kdir / "kernel.json").write_text(json.dumps({
            "argv": [self.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "cnnwidgets Colab-like (.venv-colab)", "language": "python",
        }))
        env = dict(os.environ)
        for k in ("VIRTUAL_ENV", "JUPYTER_TOKEN"):
            env.pop(k, None)
        env["PATH"] = f"{Path(self.python).parent}{os.pathsep}{env.get('PATH', '')}"
        env.update({
            "JUPYTER_PATH": str(share / "jupyter"),
            "JUPYTER_CONFIG_DIR": str(self.root / "config"),  # nbextensions come from the venv's etc/jupyter
            "JUPYTER_RUNTIME_DIR": str(self.root / "runtime"),
            "JUPYTER_DATA_DIR": str(self.root / "data"),
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        })
        return env

    def _start_server(self, timeout: float):
        self._log = open(self.root / "server.log", "wb")
        cmd = [self.python, "-m", "notebook", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}", "--port-retries=0",
               f"--notebook-dir={self.notebooks}", f"--NotebookApp.token={self.token}", "--NotebookApp.open_browser=False",
               f"--MappingKernelManager.default_kernel_name={KERNEL}", "--NotebookApp.terminals_enabled=False"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self._proc = subprocess.Popen(cmd, cwd=self.root, env=self._env(), stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        self._wait_for_server("jupyter notebook", timeout)

    def write_notebook(self, cells, name: str) -> str:
        path = super().write_notebook(cells, name)
        nb = nbformat.read(self.notebooks / path, as_version=4)
        nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "cnnwidgets Colab-like (.venv-colab)",
                                     "language": "python"}
        nbformat.write(nb, self.notebooks / path)
        return path

    def open_notebook(self, path: str, timeout: float = 120) -> ClassicRun:
        """Open ``path`` (relative to the root) in a new page and wait until its kernel and widgets are ready."""
        from browser import MAX_OPEN

        while len([n for n in self._open if not n.closed]) >= MAX_OPEN:
            next(n for n in self._open if not n.closed).close()
        self._open = [n for n in self._open if not n.closed]
        # tall: the notebook scrolls inside #site under a fixed header, so an element screenshot shows one viewport
        context = self.browser.new_context(viewport={"width": 1280, "height": 1400}, device_scale_factor=1)
        # Notebook 6.5's "migration to Notebook 7" banner, as dismissed once ("Don't show anymore"); turning it off
        # with show_banner=False instead makes the page's own script throw (it looks for the banner's button)
        context.add_init_script("try { localStorage.setItem('showNotebookNews', 'false'); } catch (e) {}")
        page = context.new_page()
        run = ClassicRun(self, path, page, context)
        run.panel = "#notebook"
        self._open.append(run)
        page.goto(f"{self.url}/notebooks/{path}?token={self.token}", wait_until="domcontentloaded", timeout=timeout * 1000)
        run.wait_ready(timeout)
        return run

    def reload(self, run: ClassicRun, timeout: float = 120) -> ClassicRun:
        """Reload ``run``'s page (the kernel keeps running) and wait until it is ready again."""
        run.js_errors.clear()
        run.console_errors.clear()
        run.page.reload(wait_until="domcontentloaded", timeout=timeout * 1000)
        run.wait_ready(timeout)
        return run


def main():  # pragma: no cover - by hand: python tests/browser_classic.py (a smoke run with a screenshot)
    nbs = ClassicNotebook()
    try:
        nb = nbs.run_notebook(["import ipywidgets as W, bqplot\nW.IntSlider(3)", "print(W.__version__, bqplot.__version__)"],
                              name="smoke")
        print(nb.outputs_text(), nb.screenshot("colab-smoke"), nb.js_errors, nb.console_errors)
    finally:
        nbs.close()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
