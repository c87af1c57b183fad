"""The quickstart in the other front ends, in headless Chromium: Notebook 7 (the quickstart run as a user runs it) and
Voila (which runs the notebook itself and shows only its outputs). In each: it runs without an error, its widgets
render (pictures, bqplot charts), and a dream started with its Start button streams frames and stops on Stop.
Both reuse tests/browser.py (the server's life cycle, one shared Playwright per process)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from browser import DREAM, SCREENSHOTS, Lab, _die_with_parent
from browser import DREAM_FRAME as FRAME, DREAM_PROGRESS as PROGRESS

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "notebooks" / "quickstart.ipynb"
pytestmark = pytest.mark.browser


def _dream_streams_and_stops(page, name: str):
    """Start the quickstart's dream from its button: frames arrive while it runs (the picture changes), Stop ends it
    before its last step."""
    dream = page.locator(DREAM).first
    dream.scroll_into_view_if_needed()
    first_frame = page.evaluate(FRAME)
    dream.locator("button:has-text('Start')").first.click()
    page.wait_for_function(f"() => {{ const m = ({PROGRESS})().match(/^(\\d+) \\//); return m && +m[1] >= 5; }}",
                           timeout=60_000)
    frames = {page.evaluate(FRAME)}
    deadline = time.monotonic() + 20
    while len(frames) < 3 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
        frames.add(page.evaluate(FRAME))
    assert len(frames - {first_frame}) >= 2, f"{name}: the dream's picture did not change while it ran"
    dream.locator("button:has-text('Stop')").first.click()
    page.wait_for_function(f"() => ({PROGRESS})().startsWith('stopped at')", timeout=10_000)
    text = page.evaluate(PROGRESS)
    m = re.match(r"stopped at (\d+) / (\d+) steps", text)
    assert m and int(m.group(1)) < int(m.group(2)), text
    dream.screenshot(path=str(SCREENSHOTS / f"{name}-dream-stopped.png"))
    return text


# --- Notebook 7 --------------------------------------------------------------------------------------------------------
class Notebook7(Lab):
    """``jupyter notebook`` 7 (JupyterLab's components, one document per page) from this venv."""

    def _start_server(self, timeout: float):
        self._log = open(self.root / "server.log", "wb")
        from browser import KERNEL

        cmd = [self.python, "-m", "notebook", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--port-retries=0", f"--ServerApp.root_dir={self.notebooks}", f"--IdentityProvider.token={self.token}",
               "--JupyterNotebookApp.expose_app_in_browser=True", "--ServerApp.open_browser=False",
               f"--MappingKernelManager.default_kernel_name={KERNEL}", "--ServerApp.terminals_enabled=False"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self._proc = subprocess.Popen(cmd, cwd=self.root, env=self._env(), stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        self._wait_for_server("Notebook 7", timeout)

    def _env(self) -> dict:
        env = super()._env()
        # of JupyterLab's settings only the one Notebook 7 knows (every cell in the DOM): with the others its page throws
        # reading their schema
        settings = self.root / "nb7-settings"
        f = settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps({"windowingMode": "none"}))
        env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
        return env

    def open_notebook(self, path: str, timeout: float = 120):
        from browser import NotebookRun

        context = self.browser.new_context(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
        page = context.new_page()
        run = NotebookRun(self, path, page, context)
        self._open.append(run)
        page.goto(f"{self.url}/notebooks/{path}?token={self.token}", wait_until="domcontentloaded",
                  timeout=timeout * 1000)
        self._await_notebook(run, timeout)
        return run


def test_quickstart_in_notebook_7():
    import notebook

    t0 = time.monotonic()
    nbs = Notebook7()
    try:
        nb = nbs.run_notebook(QUICKSTART, name="quickstart-nb7", timeout=300)
        page = nb.page
        assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"  # not JupyterLab
        text = nb.outputs_text()
        assert "Probe(efficientnet_lite0" in text and "hooks on the model: 0" in text, text[:500]
        page.wait_for_function("() => document.querySelectorAll('.bqplot.figure').length >= 5", timeout=60_000)
        images = page.locator(".jp-OutputArea-output img.widget-image")
        images.nth(1).wait_for(state="visible", timeout=30_000)
        assert images.nth(0).evaluate("(i) => [i.naturalWidth, i.naturalHeight]") == [224, 224]
        nb.check_widgets()
        nb.scroll_top()
        nb.screenshot("frontends-notebook7-top")
        stopped = _dream_streams_and_stops(page, "frontends-notebook7")
        # Notebook 7.6's page throws this once on load with any notebook (a lone `1+1` too); any other error fails
        ours = [e for e in nb.js_errors if e != "Cannot read properties of undefined (reading 'schema')"]
        assert not ours, ours
        print(f"Notebook {notebook.__version__}: quickstart ran, widgets drawn, dream {stopped}; "
              f"{time.monotonic() - t0:.0f} s")
    finally:
        nbs.close()


# --- Voila -------------------------------------------------------------------------------------------------------------
class Voila(Lab):
    """``voila quickstart.ipynb`` from this venv: it runs the notebook in a kernel of this venv and serves its outputs."""

    notebook = "quickstart.ipynb"

    def _start_server(self, timeout: float):
        (self.notebooks / self.notebook).write_bytes(QUICKSTART.read_bytes())
        kdir = self.root / "share" / "jupyter" / "kernels" / "python3"  # the notebook's kernel: this venv's python
        kdir.mkdir(parents=True)
        (kdir / "kernel.json").write_text(json.dumps({
            "argv": [self.python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (.venv)", "language": "python"}))
        env = self._env()
        env["JUPYTER_PATH"] = str(self.root / "share" / "jupyter")
        self._log = open(self.root / "server.log", "wb")
        cmd = [self.python, "-m", "voila", str(self.notebooks / self.notebook), "--no-browser",
               "--Voila.ip=127.0.0.1", f"--port={self.port}", "--Voila.port_retries=0", f"--token={self.token}",
               "--show_tracebacks=True", "--NotebookClient.timeout=300"]
        self._proc = subprocess.Popen(cmd, cwd=self.notebooks, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        self._wait_for_server("Voila", timeout)

    def _wait_for_server(self, what: str, timeout: float) -> None:
        """Until Voila accepts connections (a GET of its page would start a kernel)."""
        import socket

        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {self._proc.returncode}:\n{self.server_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not listen on {self.url} in {timeout}s:\n{self.server_log()}")
            time.sleep(0.3)

    def _shutdown_sessions(self, path=None):  # Voila has no sessions API; its kernels stop with it
        pass


def test_quickstart_in_voila():
    import voila

    t0 = time.monotonic()
    server = Voila()
    try:
        context = server.browser.new_context(viewport={"width": 1280, "height": 1000}, device_scale_factor=1)
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server.url}/?token={server.token}", wait_until="domcontentloaded", timeout=120_000)
        # Voila runs every cell, then shows the outputs; the last output is the Explorer (its tabs)
        page.wait_for_function("() => document.querySelectorAll('.jupyter-widgets .lm-TabBar-tab').length >= 5",
                               timeout=240_000)
        body = page.locator("body").inner_text()
        for bad in ("Traceback", "Error displaying widget", "There was an error when executing cell",
                    "Failed to load model class"):
            assert bad not in body, f"Voila shows {bad!r}:\n{body[:3000]}"
        assert "hooks on the model: 0" in body and "_blocks.3._project_conv" in body, body[:1000]
        assert "import cnnwidgets" not in body  # outputs only, no code
        page.wait_for_function("() => document.querySelectorAll('.bqplot.figure').length >= 5", timeout=60_000)
        assert page.locator("img.widget-image").count() >= 2
        assert page.locator(".jupyter-widgets-error-widget").count() == 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "frontends-voila-top.png"))
        stopped = _dream_streams_and_stops(page, "frontends-voila")
        assert not errors, errors
        print(f"Voila {voila.__version__}: quickstart shown, widgets drawn, dream {stopped}; "
              f"{time.monotonic() - t0:.0f} s")
        context.close()
    finally:
        server.close()
