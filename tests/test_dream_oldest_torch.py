"""The dream engine on the oldest torch and torchvision that pyproject.toml allows (torch 2.0.0 + torchvision 0.15.1,
the oldest pair on the package registry), in a throwaway venv with the project's other dependencies as pip resolves
them: the engine's unit tests must pass there as here.

The venv is built from wheels on disk, without the registry. Get them once (about 2.6 GB: torch 2.0's Linux wheel
needs the nvidia-* CUDA wheels of its time, even to run on a CPU):

    python tests/test_dream_oldest_torch.py --download   # into $CNNWIDGETS_OLDEST_WHEELS (default ~/.cache/cnnwidgets/oldest-torch/wheels)
    python tests/test_dream_oldest_torch.py              # build the venv (once) and run the tests there, without pytest here

Without the wheels the test is skipped and says so. The venv ($CNNWIDGETS_OLDEST_VENV, default
~/.cache/cnnwidgets/oldest-torch/venv) is kept for the next run; it reads this working tree (PYTHONPATH), not a copy.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cnnwidgets" / "oldest-torch"
WHEELS = Path(os.environ.get("CNNWIDGETS_OLDEST_WHEELS", CACHE / "wheels"))
VENV = Path(os.environ.get("CNNWIDGETS_OLDEST_VENV", CACHE / "venv"))
PINS = ["torch==2.0.0", "torchvision==0.15.1"]  #: the oldest pair pyproject's floors (torch>=2.0, torchvision>=0.15) allow
TESTS = ["tests/test_dream.py", "tests/test_dream_adam.py", "tests/test_dream_transforms.py",
         "tests/test_dream_public_torch.py", "tests/test_dream_jobs.py"]


def requirements() -> list[str]:
    """The pinned torch pair, the project's other dependencies as pyproject.toml lists them, and pytest."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    others = [d for d in deps if not d.replace(" ", "").lower().startswith(("torch>", "torch=", "torchvision"))]
    return PINS + others + ["pytest"]


def download() -> None:
    """The wheels of :func:`requirements` as pip resolves them for this Python, into :data:`WHEELS` (needs the registry)."""
    WHEELS.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--only-binary=:all:", "-d", str(WHEELS), *requirements()],
                   check=True)


def venv_python() -> Path | None:
    """The old-torch venv's python, built from :data:`WHEELS` offline if needed; None when the wheels are not there."""
    py = VENV / "bin" / "python"
    probe = [str(py), "-c", f"import torch, torchvision; assert torch.__version__.split('+')[0] == '{PINS[0][7:]}'"]
    if py.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    if not any(WHEELS.glob("torch-2.0.0-*.whl")):
        return None
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(WHEELS), *requirements()],
                   check=True)
    subprocess.run(probe, check=True)
    return py


def run_tests(py: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", "CNNWIDGETS_SKIP_BROWSER": "1"}
    return subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore::UserWarning", *TESTS],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)


def test_dream_engine_on_the_oldest_torch():
    import pytest

    if tomllib is None:
        pytest.skip("reads pyproject.toml with tomllib (Python 3.11+)")
    py = venv_python()
    if py is None:
        pytest.skip(f"no wheels of {' + '.join(PINS)} in {WHEELS} (nothing is downloaded during tests): get them once "
                    f"with `python tests/test_dream_oldest_torch.py --download` (~2.6 GB)")
    r = run_tests(py)
    assert r.returncode == 0, f"on {' + '.join(PINS)}:\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"


if __name__ == "__main__":
    if "--download" in sys.argv:
        download()
    py = venv_python()
    if py is None:
        sys.exit(f"No wheels in {WHEELS}: run with --download first.")
    out = run_tests(py)
    print(out.stdout[-6000:], out.stderr[-3000:])
    sys.exit(out.returncode)
