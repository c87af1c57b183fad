"""A real-browser harness: JupyterLab 4 on a loopback port + headless Chromium via Playwright.

Used through the ``lab`` fixture (tests/conftest.py)::

    nb = lab.run_notebook(["import cnnwidgets as cw", "cw.Probe(cw.load_model())"], name="probe")
    nb.run_cell("1 + 1")
    nb.screenshot("probe")            # -> artifacts/screenshots/probe.png
    nb.wait_for(".jupyter-widgets", timeout=30_000)

Cells run through JupyterLab's own commands ("Run All", "Run Cell"), so outputs and widgets are
rendered exactly as a user sees them. A cell that errors raises :class:`CellError` with the
traceback text. Everything (server, kernels, browser) is stopped by :meth:`Lab.close`.
"""
from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = os.environ.get("CNNWIDGETS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
KERNEL = "cnnwidgets-test"
#: the Dream panel; its progress line ("12 / 256 steps", "stopped at …", "done · …") and its picture's src, for page.evaluate
DREAM = ".cnnwidgets-dream"
DREAM_PROGRESS = """() => { const t = [...document.querySelectorAll('.cnnwidgets-dream .widget-html-content')]
    .map(e => e.innerText).find(t => /^(stopped at |done · )?\\d+ \\/ \\d+ steps/.test(t)); return t || ''; }"""
DREAM_FRAME = "() => { const i = document.querySelector('.cnnwidgets-dream img.widget-image'); return i ? i.src : ''; }"
MAX_OPEN = 3  # notebooks (and their kernels) kept open at once; the least recently used is closed



def wait_change(get, old, timeout=20.0):
    """Poll ``get()`` until it gives something other than ``old`` (and not empty); that value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = get()
        if new and new != old:
            return new
        time.sleep(0.2)
    raise AssertionError(f"nothing changed within {timeout}s (still {str(old)[:80]})")


def printed_repr(nb, expr) -> str:
    """``repr(expr)`` as the notebook's kernel prints it (a cell run in ``nb``)."""
    out = nb.run_cell(f"print(repr({expr}))")
    return "".join(o.get("text", "") for o in out if o.get("output_type") == "stream").strip()


class CellError(AssertionError):
    """A notebook cell raised in the browser; the message holds the cell source and its traceback."""


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent():
    """Linux: the server gets SIGTERM if pytest is killed outright (its kernels then stop with it)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# JavaScript run in the page; `window.jupyterapp` exists because of --LabApp.expose_app_in_browser.
_JS_PANEL = """
(path) => {
  const app = window.jupyterapp;
  if (!app) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.content.widgets) return w;
  }
  return null;
}
"""

_JS_STATE = """
(path) => {
  const find = %s;
  const panel = find(path);
  if (!panel) return {ready: false};
  const kernel = panel.sessionContext && panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.map((c, i) => {
    const m = c.model;
    const out = {index: i, type: m.type, source: m.sharedModel.getSource()};
    if (m.type === 'code') {
      out.count = m.executionCount;
      out.errors = [];
      out.stderr = [];
      const outs = m.outputs.toJSON();
      for (const o of outs) {
        if (o.output_type === 'error') out.errors.push(o.ename + ': ' + o.evalue + '\\n' + (o.traceback || []).join('\\n'));
        if (o.output_type === 'stream' && o.name === 'stderr') out.stderr.push(Array.isArray(o.text) ? o.text.join('') : o.text);
      }
      out.running = !!c.node.querySelector('.jp-InputArea-prompt') &&
                    c.node.querySelector('.jp-InputArea-prompt').textContent.includes('*');
    }
    return out;
  });
  return {ready: panel.sessionContext.isReady, status: kernel ? kernel.status : 'none', cells};
}
""" % _JS_PANEL.strip()


class NotebookRun:
    """One notebook open in its own browser page, with a live kernel."""

    def __init__(self, lab: "Lab", path: str, page, context):
        self.lab = lab
        self.path = path  # relative to the server root
        self._page = page
        self._context = context
        self.closed = False
        self.panel = "body"  # CSS selector of this notebook's panel, set once it is open
        self.js_errors: list[str] = []  # uncaught exceptions in the page (widget front ends included)
        page.on("pageerror", lambda e: self.js_errors.append(str(e)))

    @property
    def page(self):
        """The Playwright Page showing this notebook (using it marks the notebook as recently used)."""
        if self.closed:
            raise RuntimeError(f"{self.path} was closed: at most {MAX_OPEN} notebooks stay open at once and the "
                               "least recently used is closed; use the notebook you run last, or fewer at once.")
        self._touch()
        return self._page

    # --- running ---------------------------------------------------------------------------
    def _state(self):
        return self.page.evaluate(_JS_STATE, self.path)

    def _wait_done(self, indices, timeout: float, what: str, fail_on_stderr: bool = False):
        """Wait until the code cells at ``indices`` have executed and the kernel is idle; raise on errors."""
        deadline = time.monotonic() + timeout
        idle_since = None
        while True:
            st = self._state()
            cells = [c for c in st.get("cells", []) if c["index"] in indices and c["type"] == "code"]
            errors = [c for c in cells if c["errors"] or (fail_on_stderr and c["stderr"])]
            if errors:
                time.sleep(0.3)  # let the rest of the queue be aborted before we report
                c = errors[0]
                text = _ANSI.sub("", "\n".join(c["errors"] or c["stderr"]))
                raise CellError(f"{what}: cell [{c['index']}] raised in the browser.\n--- cell source ---\n"
                                f"{c['source']}\n--- traceback ---\n{text}")
            done = st.get("ready") and all(c["count"] is not None and not c["running"] for c in cells)
            if done and st.get("status") == "idle":
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 0.5:  # idle for a moment: no output still arriving
                    return st
            else:
                idle_since = None
            if st.get("status") in ("dead", "unknown") :
                raise CellError(f"{what}: the kernel died (status {st.get('status')}).")
            if time.monotonic() > deadline:
                pending = [c["index"] for c in cells if c["count"] is None or c["running"]]
                raise TimeoutError(f"{what}: cells {pending} still not executed after {timeout:.0f}s "
                                   f"(kernel {st.get('status')}).")
            time.sleep(0.2)

    def run_all(self, timeout: float = 300, fail_on_stderr: bool = False):
        """Run every cell (JupyterLab's "Run All") and wait until all have executed.

        Raises :class:`CellError` on an error output (and on any stderr output if ``fail_on_stderr``).
        """
        self._touch()
        st = self._state()
        # not awaited: the command's promise ends only when every cell has run; _wait_done polls with a timeout
        self.page.evaluate("""async (path) => { const p = (%s)(path);
            window.jupyterapp.shell.activateById(p.id);
            await window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs');
            window.jupyterapp.commands.execute('notebook:run-all-cells'); }""" % _JS_PANEL.strip(), self.path)
        indices = {c["index"] for c in st["cells"] if c["type"] == "code"}
        st = self._wait_done(indices, timeout, f"{self.path}", fail_on_stderr)
        self.check_widgets()
        return st

    def check_widgets(self):
        """Raise if a widget failed to render in the front end ("Error displaying widget", missing model class)."""
        panel = self.page.locator(self.panel)
        bad = [t for t in panel.locator(".jp-OutputArea-output").all_inner_texts()
               if "Error displaying widget" in t or "Failed to load model class" in t]
        broken = panel.locator(".jupyter-widgets-error-widget")  # ipywidgets 8's error placeholder
        if broken.count():
            msg = broken.first.evaluate("(e) => e.title || e.getAttribute('data-error') || e.textContent || ''")
            bad.append(f"{broken.count()} widget(s) show ipywidgets' error placeholder: {msg}")
        if bad:
            raise CellError(f"{self.path}: a widget failed to render in JupyterLab: {bad[0][:500]}")

    def run_cell(self, code: str, timeout: float = 120, fail_on_stderr: bool = False):
        """Append a code cell with ``code`` at the end, run it in the same kernel and wait for it.

        Returns the cell's outputs as JSON (nbformat dicts).
        """
        self._touch()
        index = self.page.evaluate(
            """async ([path, code]) => {
                 const panel = (%s)(path);
                 const nb = panel.content;
                 const app = window.jupyterapp;
                 app.shell.activateById(panel.id);
                 nb.activeCellIndex = nb.widgets.length - 1;
                 nb.mode = 'command';
                 await app.commands.execute('notebook:insert-cell-below');
                 const cell = nb.activeCell;
                 if (cell.model.type !== 'code') await app.commands.execute('notebook:change-cell-to-code');
                 nb.activeCell.model.sharedModel.setSource(code);
                 const index = nb.widgets.indexOf(nb.activeCell);
                 app.commands.execute('notebook:run-cell');  // not awaited: _wait_done polls with a timeout
                 return index;
               }""" % _JS_PANEL.strip(),
            [self.path, code],
        )
        first = code.strip().splitlines()[0] if code.strip() else ""
        self._wait_done({index}, timeout, f"{self.path}: run_cell({first!r})", fail_on_stderr)
        return self.page.evaluate(
            "([path, i]) => (%s)(path).content.widgets[i].model.outputs.toJSON()" % _JS_PANEL.strip(),
            [self.path, index])

    # --- looking ---------------------------------------------------------------------------
    def wait_for(self, selector: str, timeout: float = 30_000, state: str = "visible"):
        """Wait for a DOM element (Playwright selector); ``timeout`` in milliseconds. Returns a Locator."""
        self._touch()
        loc = self.page.locator(selector).first
        loc.wait_for(state=state, timeout=timeout)
        return loc

    def scroll_to(self, selector: str):
        """Scroll the notebook so the first element matching ``selector`` is in view."""
        self.page.locator(selector).first.scroll_into_view_if_needed()

    def scroll_top(self):
        """Scroll the notebook back to its first cell (Run All leaves it at the last one)."""
        self.page.evaluate("""(path) => { const p = (%s)(path); p.content.activeCellIndex = 0;
                              p.content.scrollToItem ? p.content.scrollToItem(0, 'start') : p.content.node.scrollTo(0, 0);
                              const outer = p.content.node.querySelector('.jp-WindowedPanel-outer') || p.content.node;
                              outer.scrollTop = 0; }""" % _JS_PANEL.strip(), self.path)
        self.page.wait_for_timeout(200)

    def screenshot(self, name: str, selector: str | None = None, full_page: bool = False) -> Path:
        """Save a PNG of the page (or of one element) to ``artifacts/screenshots/<name>.png``."""
        self._touch()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.wait_for_timeout(300)  # let the last frame paint
        if selector:
            self.page.locator(selector).first.screenshot(path=str(path))
        else:
            self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def stderr(self) -> str:
        """Everything the cells wrote to stderr (warnings, logs), as text."""
        cells = self._state().get("cells", [])
        return "".join(s for c in cells if c["type"] == "code" for s in c["stderr"])

    def outputs_text(self) -> str:
        """All text shown in the notebook's output areas (for assertions)."""
        return "\n".join(self.page.locator(self.panel).locator(".jp-OutputArea-output").all_inner_texts())

    def save(self, timeout: float = 30):
        """Save the notebook as a user would (JupyterLab's "Save", Ctrl-S) and wait until it is no longer dirty."""
        self._touch()
        self.page.evaluate("""async (path) => { const p = (%s)(path); window.jupyterapp.shell.activateById(p.id);
                              await window.jupyterapp.commands.execute('docmanager:save'); }""" % _JS_PANEL.strip(),
                           self.path)
        self.page.wait_for_function("(path) => !(%s)(path).context.model.dirty" % _JS_PANEL.strip(), arg=self.path,
                                    timeout=timeout * 1000, polling=200)

    # --- closing ---------------------------------------------------------------------------
    def _touch(self):
        self.lab._touch(self)

    def close(self):
        """Shut this notebook's kernel down and close its page."""
        if self.closed:
            return
        self.closed = True
        try:
            self.lab._shutdown_sessions(self.path)
        finally:
            try:
                self._context.close()
            except Exception:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()



#: Playwright's sync API runs one event loop per thread: a second ``sync_playwright().start()`` while the first is
#: alive fails ("using Playwright Sync API inside the asyncio loop"). The session's ``lab`` and a test's own
#: browser (the Colab notebook, the demo's server) therefore share one Playwright, each launching its own Chromium.
_PLAYWRIGHT = {"pw": None, "users": 0}


def _playwright_acquire():
    from playwright.sync_api import sync_playwright

    if _PLAYWRIGHT["pw"] is None:
        _PLAYWRIGHT["pw"] = sync_playwright().start()
    _PLAYWRIGHT["users"] += 1
    return _PLAYWRIGHT["pw"]


def _playwright_release():
    _PLAYWRIGHT["users"] -= 1
    if _PLAYWRIGHT["users"] <= 0 and _PLAYWRIGHT["pw"] is not None:
        pw, _PLAYWRIGHT["pw"], _PLAYWRIGHT["users"] = _PLAYWRIGHT["pw"], None, 0
        try:
            pw.stop()
        except Exception:
            pass


class Lab:
    """A JupyterLab server on a free 127.0.0.1 port, serving a temporary root, and a headless Chromium."""

    def __init__(self, python: str = sys.executable, startup_timeout: float = 120):
        self.python = python
        self.root = Path(tempfile.mkdtemp(prefix="cnnwidgets-lab-"))
        self.notebooks = self.root / "notebooks"
        self.notebooks.mkdir()
        self.port = _free_port()
        self.token = os.urandom(16).hex()
        self.url = f"http://127.0.0.1:{self.port}"
        self._open: list[NotebookRun] = []
        self._proc = None
        self._pw = None
        self.browser = None
        atexit.register(self.close)  # also on an interrupted session
        try:
            self._start_server(startup_timeout)
            self._start_browser()
        except BaseException:
            self.close()
            raise

    # --- server ----------------------------------------------------------------------------
    def _env(self) -> dict:
        share = self.root / "share"
        kdir = share / "jupyter" / "kernels" / KERNEL
        kdir.mkdir(parents=True)
        (kdir / "kernel.json").write_text(json.dumps({
            "argv": [self.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "cnnwidgets test (.venv)", "language": "python",
        }))
        settings = self.root / "lab-settings"
        # Keep every cell in the DOM (no virtual scrolling), no news/update toasts over screenshots.
        for plugin, values in {
            "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
            "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
            "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
        }.items():
            f = settings / f"{plugin}.jupyterlab-settings"
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(json.dumps(values))
        env = dict(os.environ)
        env.update({
            "JUPYTER_PATH": str(share / "jupyter"),
            "JUPYTER_CONFIG_DIR": str(self.root / "config"),
            "JUPYTER_RUNTIME_DIR": str(self.root / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.root / "workspaces"),
            "PYTHONUNBUFFERED": "1",
            "MPLBACKEND": "module://matplotlib_inline.backend_inline",
        })
        env.pop("JUPYTER_TOKEN", None)
        return env

    def _start_server(self, timeout: float):
        self._log = open(self.root / "server.log", "wb")
        cmd = [self.python, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--port-retries=0", f"--ServerApp.root_dir={self.notebooks}", f"--IdentityProvider.token={self.token}",
               "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False",
               f"--MappingKernelManager.default_kernel_name={KERNEL}",
               "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
               "--LabApp.news_url=", "--ServerApp.terminals_enabled=False"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI runs as root
            cmd.append("--allow-root")
        self._proc = subprocess.Popen(cmd, cwd=self.root, env=self._env(), stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        self._wait_for_server("JupyterLab", timeout)

    def _wait_for_server(self, what: str, timeout: float) -> None:
        """Until the server started in ``self._proc`` answers /api/status; its log in the error if it does not."""
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {self._proc.returncode}:\n{self.server_log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not answer on {self.url} in {timeout}s:\n{self.server_log()}")
            time.sleep(0.3)

    def server_log(self, tail: int = 4000) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def api(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}{path}", data=data, method=method,
                                     headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def _shutdown_sessions(self, path: str | None = None):
        try:
            sessions = self.api("GET", "/api/sessions")
        except OSError:
            return
        for s in sessions or []:
            if path is None or s.get("path") == path:
                try:
                    self.api("DELETE", f"/api/sessions/{s['id']}")
                except OSError:
                    pass

    # --- browser ---------------------------------------------------------------------------
    def _start_browser(self):
        if not Path(CHROMIUM).exists():
            raise RuntimeError(f"No Chromium at {CHROMIUM}: install it (apt-get install chromium) or set CNNWIDGETS_CHROMIUM.")
        self._pw = _playwright_acquire()
        self.browser = self._pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)

    def _close_browser(self):
        if self.browser is not None:
            try:
                self.browser.close()
            except Exception:
                pass
            self.browser = None
        if self._pw is not None:
            _playwright_release()
            self._pw = None

    # --- notebooks -------------------------------------------------------------------------
    def write_notebook(self, cells, name: str) -> str:
        """Write cells (code strings, or nbformat cells for markdown) to ``<root>/<name>.ipynb``; returns its path."""
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "cnnwidgets test (.venv)", "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        for c in cells:
            nb.cells.append(nbformat.v4.new_code_cell(c) if isinstance(c, str) else nbformat.from_dict(c))
        for c in nb.cells:  # a fresh run: no stale outputs or counts
            if c.cell_type == "code":
                c.outputs, c.execution_count = [], None
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "notebook"
        path = f"{safe}.ipynb"
        nbformat.write(nb, self.notebooks / path)
        return path

    def open_notebook(self, path: str, timeout: float = 120) -> NotebookRun:
        """Open ``path`` (relative to the root) in a new page and wait until its kernel is ready."""
        while len([n for n in self._open if not n.closed]) >= MAX_OPEN:
            oldest = next(n for n in self._open if not n.closed)
            oldest.close()
        self._open = [n for n in self._open if not n.closed]
        context = self.browser.new_context(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
        page = context.new_page()
        run = NotebookRun(self, path, page, context)
        self._open.append(run)
        # its own workspace: a new page must not reopen the notebooks of earlier tests as tabs
        workspace = "nb-" + re.sub(r"[^A-Za-z0-9-]+", "-", path[: -len(".ipynb")])
        page.goto(f"{self.url}/lab/workspaces/{workspace}/tree/{path}?reset&token={self.token}", wait_until="domcontentloaded",
                  timeout=timeout * 1000)
        self._await_notebook(run, timeout)
        return run

    def _await_notebook(self, run: NotebookRun, timeout: float):
        """Wait until ``run``'s notebook is open in its page with an idle kernel; show it, the left sidebar collapsed."""
        page, path = run._page, run.path
        page.wait_for_function(
            "(path) => { const p = (%s)(path); return !!(p && p.sessionContext && p.sessionContext.isReady && "
            "p.content.widgets.length && p.sessionContext.session && p.sessionContext.session.kernel && "
            "p.sessionContext.session.kernel.status === 'idle'); }" % _JS_PANEL.strip(),
            arg=path, timeout=timeout * 1000, polling=250)
        run.panel = '[id="%s"]' % page.evaluate("(path) => (%s)(path).id" % _JS_PANEL.strip(), path)
        page.evaluate("""(path) => { const p = (%s)(path); window.jupyterapp.shell.activateById(p.id);
                          window.jupyterapp.shell.collapseLeft && window.jupyterapp.shell.collapseLeft(); }"""
                      % _JS_PANEL.strip(), path)

    def reload(self, run: NotebookRun, timeout: float = 120) -> NotebookRun:
        """Reload ``run``'s page as a user does (F5): the notebook opens again from disk and reconnects to its running
        kernel, whose widgets the page asks for anew. Page errors are counted afresh."""
        run.js_errors.clear()
        run.page.reload(wait_until="domcontentloaded", timeout=timeout * 1000)
        self._await_notebook(run, timeout)
        return run

    def run_notebook(self, cells, name: str = "notebook", timeout: float = 300,
                     fail_on_stderr: bool = False) -> NotebookRun:
        """Write ``cells`` to a fresh notebook, open it in the browser, run all cells and wait.

        ``cells`` is a list of code strings (or nbformat cell dicts), or a path to an .ipynb whose
        cells are used. Raises :class:`CellError` (with the traceback) when a cell errors.
        """
        if isinstance(cells, (str, os.PathLike)) and str(cells).endswith(".ipynb"):
            cells = [dict(c) for c in nbformat.read(str(cells), as_version=4).cells]
        stem, n = name, 1
        while (self.notebooks / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', stem).strip('-')}.ipynb").exists():
            n += 1
            stem = f"{name}-{n}"
        path = self.write_notebook(cells, stem)
        run = self.open_notebook(path, timeout=timeout)
        try:
            run.run_all(timeout=timeout, fail_on_stderr=fail_on_stderr)
        except BaseException:
            try:  # keep a picture of the failure, then free its kernel (the test has no handle on it)
                run.screenshot(f"{path[:-len('.ipynb')]}-error")
            except Exception:
                pass
            run.close()
            raise
        return run

    def _touch(self, run: NotebookRun):
        if run in self._open:
            self._open.remove(run)
            self._open.append(run)

    # --- teardown --------------------------------------------------------------------------
    def close(self):
        """Close pages, stop kernels, the browser and the server; remove the temporary root."""
        for run in list(self._open):
            try:
                run.close()
            except Exception:
                pass
        self._open = []
        self._close_browser()
        if self._proc is not None and self._proc.poll() is None:
            self._shutdown_sessions()
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)  # server and the kernels it started
                self._proc.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                    self._proc.wait(timeout=5)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    pass
        if getattr(self, "_log", None):
            self._log.close()
        shutil.rmtree(self.root, ignore_errors=True)


# Lab settings that keep screenshots and cell states reliable: every cell in the DOM, no news/update toasts.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
}


def isolated_jupyter_env(root: Path, env: dict | None = None) -> dict:
    """Environment for a JupyterLab started by someone else (``make demo``) that this harness can drive.

    Config, runtime, settings and workspaces go under ``root`` (nothing read from or written to ~/.jupyter),
    with :data:`LAB_SETTINGS` and ``LabApp.expose_app_in_browser`` (the ``window.jupyterapp`` the harness uses),
    set through a config file as a user's own config would be. Kernels are found as usual (the .venv's).
    """
    root = Path(root)
    settings, config = root / "lab-settings", root / "config"
    for plugin, values in LAB_SETTINGS.items():
        f = settings / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    config.mkdir(parents=True, exist_ok=True)
    (config / "jupyter_server_config.json").write_text(json.dumps({"LabApp": {
        "expose_app_in_browser": True, "news_url": None,
        "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate"}}))
    env = dict(os.environ if env is None else env)
    env.update({
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces"),
    })
    env.pop("JUPYTER_TOKEN", None)
    return env


class AttachedLab(Lab):
    """A headless Chromium driving a JupyterLab that is already running (started elsewhere, e.g. by ``make demo``).

    ``url`` is the one the server printed, ``http://127.0.0.1:PORT/...?token=...``; the server needs
    ``LabApp.expose_app_in_browser`` (see :func:`isolated_jupyter_env`). ``root`` is the folder it serves, if
    known (for :meth:`write_notebook`). :meth:`close` closes the browser only: the server and its kernels
    belong to whoever started them.
    """

    def __init__(self, url: str, root: Path | None = None, python: str = sys.executable):
        import urllib.parse

        parts = urllib.parse.urlsplit(url)
        token = urllib.parse.parse_qs(parts.query).get("token", [""])[0]
        if not (parts.scheme and parts.port and token):
            raise ValueError(f"expected http://HOST:PORT/...?token=..., got {url!r}")
        self.python = python
        self.root = self.notebooks = Path(root) if root is not None else None
        self.port = parts.port
        self.token = token
        self.url = f"{parts.scheme}://{parts.netloc}"
        self._open = []
        self._proc = None
        self._pw = None
        self.browser = None
        atexit.register(self.close)
        try:
            self._start_browser()
        except BaseException:
            self.close()
            raise

    def close(self):
        """Close the pages and the browser; the server and its kernels keep running."""
        for run in list(self._open):
            run.closed = True
            try:
                run._context.close()
            except Exception:
                pass
        self._open = []
        self._close_browser()
