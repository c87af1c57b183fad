"""The README's two commands, `make demo` and `make test`, run as a newcomer runs them: in a fresh clone.

One clone (of the working tree's tracked files, uncommitted changes included) and one .venv serve both tests:
`make demo` runs first on the clean clone (so it cannot lean on anything `make test` installs), then
`make test` adds the test tools to the same .venv. Nothing is mocked: the real make, pip, JupyterLab server,
kernel and a headless Chromium. Select with ``-m fresh_clone``; the first run takes minutes (it installs).

The nested `make test` runs with CNNWIDGETS_IN_FRESH_CLONE=1, which skips this module there (no recursion).
CNNWIDGETS_KEEP_CLONE=1 keeps the clone (and its .venv) for a look after a failure.
The clone holds the tracked files only: an uncommitted change that needs a file not yet added to git fails here as
it would in a real clone. CNNWIDGETS_FRESH_CLONE_COMMIT=HEAD (any commit) clones that commit instead.
"""
from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from browser import SCREENSHOTS, AttachedLab, _free_port, isolated_jupyter_env

REPO = Path(__file__).resolve().parents[1]
LOGS = REPO / "artifacts" / "fresh-clone"
NESTED = "CNNWIDGETS_IN_FRESH_CLONE"
WORK = "my-notebooks"  # the Makefile's WORK: make demo's working copy of notebooks/
URL = re.compile(r"http://127\.0\.0\.1:(\d+)/lab/tree/quickstart\.ipynb\?token=([0-9a-f]{16,})")
INSTALL_TIMEOUT = 1500  # s: the first make creates .venv and installs torch, JupyterLab... (pip's cache helps)

pytestmark = [
    pytest.mark.fresh_clone,
    pytest.mark.skipif(os.environ.get(NESTED) == "1", reason="inside a fresh clone's own make test (no recursion)"),
]


def _git(*args, cwd=REPO) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL).stdout.strip()


def _newcomer_env() -> dict:
    """Our environment minus what only this test run has: the outer make's flags, an activated .venv, pytest's."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
           and not k.startswith("PYTEST_")}
    outer_venv = str(REPO / ".venv")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(outer_venv))
    env[NESTED] = "1"
    return env


class Clone:
    def __init__(self, path: Path, commit: str):
        self.path, self.commit = path, commit
        self.timings: dict[str, float] = {}

    def status(self) -> str:
        """`git status --porcelain`: tracked changes and untracked files that git does not ignore."""
        return _git("status", "--porcelain", cwd=self.path)


@pytest.fixture(scope="module")
def fresh_clone():
    """A clone of this repository in a temp dir, checked out at a commit of the working tree (git stash create:
    read-only, it only writes objects) or HEAD when nothing is modified. No .venv, no my-notebooks/."""
    t0 = time.monotonic()
    commit = os.environ.get("CNNWIDGETS_FRESH_CLONE_COMMIT")
    if commit:
        commit = _git("rev-parse", "--verify", f"{commit}^{{commit}}")
    else:
        commit = _git("-c", "user.name=fresh-clone test", "-c", "user.email=fresh-clone@localhost", "stash", "create")
        commit = commit or _git("rev-parse", "HEAD")
    top = Path(tempfile.mkdtemp(prefix="cnnwidgets-fresh-clone-"))
    path = top / "cnnwidgets"
    _git("clone", "--quiet", "--no-checkout", str(REPO), str(path), cwd=top)  # local: objects hard-linked
    _git("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit, cwd=path)
    clone = Clone(path, commit)
    clone.timings["clone"] = time.monotonic() - t0
    LOGS.mkdir(parents=True, exist_ok=True)
    try:
        yield clone
    finally:
        _kill_leftovers(path)
        lines = [f"{k}: {v:.1f} s" for k, v in clone.timings.items()]
        (LOGS / "timings.txt").write_text("\n".join(lines) + "\n")
        print("\nfresh-clone timings: " + ", ".join(lines))
        if os.environ.get("CNNWIDGETS_KEEP_CLONE") == "1":
            print(f"fresh clone kept at {path}")
        else:
            shutil.rmtree(top, ignore_errors=True)


def _processes_under(path: Path) -> dict[int, str]:
    """Processes whose command line names a file in ``path`` (the clone's .venv python, its kernels)."""
    found = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(path) in cmd:
                found[int(d.name)] = cmd
    return found


def _kill_leftovers(path: Path):
    """After a failure: stop what our make started in the clone (server, kernels), by pid."""
    for pid in _processes_under(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _foreground_signals():
    """Ctrl-C reaches the command as in a terminal's foreground job, even if this run ignores SIGINT (a test
    started with `&` from a script does: the ignored signal would pass on to make and JupyterLab)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Make:
    """``make <args>`` in the clone, in its own process group as a terminal runs a command; output to a log."""

    def __init__(self, clone: Clone, args: list[str], log: str, env: dict, stdin=subprocess.DEVNULL):
        self.lines: list[str] = []
        self.log = LOGS / log
        self._logf = open(self.log, "w")
        self.proc = subprocess.Popen(["make", *args], cwd=clone.path, env=env, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True,
                                     preexec_fn=_foreground_signals)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            self._logf.write(line)
            self._logf.flush()

    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: re.Pattern, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = pattern.search(self.text())
            if m:
                return m
            if self.proc.poll() is not None:
                self._reader.join(5)
                m = pattern.search(self.text())
                if m:
                    return m
                raise AssertionError(f"make exited with {self.proc.returncode} before printing {pattern.pattern!r}:\n"
                                     f"{self.text()[-6000:]}")
            time.sleep(0.5)
        raise AssertionError(f"no {pattern.pattern!r} after {timeout:.0f} s; make printed:\n{self.text()[-6000:]}")

    def ctrl_c(self, timeout: float = 30) -> float:
        """SIGINT to the whole process group, as Ctrl-C in a terminal sends it; returns the seconds until make exits."""
        t0 = time.monotonic()
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"make demo still running {timeout} s after Ctrl-C (SIGINT):\n{self.text()[-4000:]}")
        self._reader.join(10)
        return time.monotonic() - t0

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self._reader.join(5)
        self._logf.close()


def _get(url: str, timeout: float = 60) -> int:
    """HTTP status of ``url`` once the server answers (it prints its URL just before it listens)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                return r.status
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _api(base: str, token: str, method: str, path: str, body=None):
    req = urllib.request.Request(f"{base}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        raw = r.read()
    return json.loads(raw) if raw else None


def _stopped_cleanly(make: Make, clone: Clone, port: int, seconds: float):
    assert seconds < 30, f"make demo took {seconds:.0f} s to stop after Ctrl-C"
    deadline = time.monotonic() + 10
    while (_port_open(port) or _processes_under(clone.path)) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not _port_open(port), f"something still listens on port {port} after make demo stopped"
    assert not _processes_under(clone.path), f"left running: {_processes_under(clone.path)}"
    assert "Shutting down" in make.text() or "Interrupted" in make.text(), make.text()[-2000:]


@pytest.mark.browser
def test_make_demo_in_a_fresh_clone_serves_a_working_copy_of_the_quickstart(fresh_clone, tmp_path):
    clone = fresh_clone
    assert clone.status() == "", "the clone should start clean"
    venv_was_there = (clone.path / ".venv").exists()
    tracked = (clone.path / "notebooks" / "quickstart.ipynb").read_bytes()
    env = isolated_jupyter_env(tmp_path / "jupyter", _newcomer_env())  # + expose_app_in_browser, for the harness
    port = _free_port()

    # --- 1. the first make demo, as CI runs it: no stdin ----------------------------------------------------
    t0 = time.monotonic()
    make = Make(clone, ["demo", f"PORT={port}"], "make-demo.log", env)
    lab = None
    try:
        m = make.wait_for(URL, INSTALL_TIMEOUT)
        clone.timings["make demo until its URL"] = time.monotonic() - t0
        url, token = m.group(0), m.group(2)
        assert int(m.group(1)) == port, f"asked PORT={port}, got {url}"
        out = make.text()
        if not venv_was_there:
            assert "Installing cnnwidgets and JupyterLab into .venv" in out
            assert (clone.path / ".venv" / ".installed-demo").exists()
        assert f"{WORK}/quickstart.ipynb: copied from notebooks/quickstart.ipynb" in out
        assert f"For a fresh copy: rm {WORK}/quickstart.ipynb, then make demo again." in out
        base = f"http://127.0.0.1:{port}"
        assert _get(f"{base}/lab?token={token}") == 200
        assert _get(url) == 200

        work = clone.path / WORK
        assert (work / "quickstart.ipynb").read_bytes() == tracked  # a plain copy, before anything runs

        t1 = time.monotonic()
        lab = AttachedLab(url, root=work)
        nb = lab.open_notebook("quickstart.ipynb", timeout=300)
        nb.run_all(timeout=900)  # raises CellError with the traceback if any cell shows an error
        clone.timings["quickstart: open and run all cells"] = time.monotonic() - t1
        text = nb.outputs_text()
        assert "Probe(efficientnet_lite0" in text and "hooks on the model: 0" in text
        nb.page.wait_for_function("() => document.querySelectorAll('.bqplot.figure').length >= 5", timeout=60_000)
        # the kernel is the clone's own .venv (an edit the user makes, saved below with the rest)
        where = nb.run_cell("import sys, cnnwidgets; print(sys.prefix); print(cnnwidgets.__file__)")[0]["text"]
        assert where.splitlines() == [str(clone.path / ".venv"), str(clone.path / "cnnwidgets" / "__init__.py")]
        nb.save()
        nb.scroll_top()
        shot = nb.screenshot("make-demo-fresh-clone")
        assert shot.exists() and shot.parent == SCREENSHOTS
        saved = json.loads((work / "quickstart.ipynb").read_text())
        code = [c for c in saved["cells"] if c["cell_type"] == "code"]
        assert code and all(c["execution_count"] for c in code), "the run was not saved into the working copy"
        # a new notebook lands in the working copy too
        new = _api(base, token, "POST", "/api/contents", {"type": "notebook"})
        assert (work / new["path"]).exists()
        assert _api(base, token, "GET", "/api/kernels"), "the quickstart's kernel should be running"
        lab.close()  # the browser only: server and kernel keep running until Ctrl-C

        # nothing tracked changed: the run, the save and the new notebook are all in the ignored working copy
        assert clone.status() == "", clone.status()
        assert (clone.path / "notebooks" / "quickstart.ipynb").read_bytes() == tracked

        _stopped_cleanly(make, clone, port, make.ctrl_c())
    finally:
        if lab is not None:
            lab.close()
        make.close()

    # --- 2. make demo again, at a terminal (stdin a tty: JupyterLab would ask "Shut down (y/[n])?") ----------
    assert subprocess.run(["make", "-q", ".venv/.installed-demo"], cwd=clone.path, env=env).returncode == 0
    port = _free_port()
    master, slave = pty.openpty()
    t0 = time.monotonic()
    make = Make(clone, ["demo", f"PORT={port}"], "make-demo-again.log", env, stdin=slave)
    os.close(slave)
    try:
        m = make.wait_for(URL, 300)
        clone.timings["second make demo until its URL"] = time.monotonic() - t0
        out = make.text()
        assert "Installing" not in out, "the second make demo reinstalled:\n" + out
        assert f"{WORK}/quickstart.ipynb: kept as you left it" in out
        assert json.loads((clone.path / WORK / "quickstart.ipynb").read_text()) == saved  # not overwritten
        assert _get(f"http://127.0.0.1:{port}/lab?token={m.group(2)}") == 200
        _stopped_cleanly(make, clone, port, make.ctrl_c())  # one Ctrl-C: no question left waiting for y
    finally:
        make.close()
        os.close(master)
    assert clone.status() == ""


def test_make_test_in_the_same_fresh_clone_installs_the_test_tools_and_passes(fresh_clone):
    clone = fresh_clone
    # the nested run also collects this module, to show it skips there (no recursion)
    args = "tests/test_stats.py tests/test_make_demo.py -q -rs -p no:cacheprovider"
    t0 = time.monotonic()
    with open(LOGS / "make-test.log", "w") as log:
        r = subprocess.run(["make", "test", f"PYTEST_ARGS={args}"], cwd=clone.path, env=_newcomer_env(),
                           stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT)
    clone.timings["make test (test tools + tests/test_stats.py)"] = time.monotonic() - t0
    out = (LOGS / "make-test.log").read_text(errors="replace")
    assert r.returncode == 0, out[-6000:]
    assert "Installing cnnwidgets, JupyterLab and the test tools into .venv" in out
    venv = clone.path / ".venv"
    assert (venv / ".installed-dev").exists() and (venv / ".installed-demo").exists()
    imports = "import pytest, nbclient, nbformat, playwright, lucent, jupyterlab, ipykernel, cnnwidgets"
    assert subprocess.run([str(venv / "bin" / "python"), "-c", imports], cwd=clone.path).returncode == 0
    m = re.search(r"(\d+) passed, 2 skipped", out)
    assert m and int(m.group(1)) >= 5, out[-3000:]
    assert "no recursion" in out  # the skip reason of this module inside the clone
    # a second make test would not reinstall
    assert subprocess.run(["make", "-q", ".venv/.installed-dev"], cwd=clone.path,
                          env=_newcomer_env()).returncode == 0
    assert clone.status() == "", clone.status()
