"""The notebooks' first cell installs cnnwidgets on Colab and does nothing elsewhere; ``import cnnwidgets`` turns on
Colab's custom widget manager there (once), and nothing elsewhere.

The install cell runs as IPython runs it (an ``.ipy`` file: ``!pip`` inside an indented block), under Colab's
IPython 7.34 (``.venv-colab``) and the current IPython (``.venv``). "On Colab" is a ``google.colab`` package that the
kernel imports at startup (tests/colab_stub.py); the cell's ``git+https://github.com/cnnwidgets/cnnwidgets`` is
served by a fresh clone of this checkout (a git ``insteadOf`` setting), so pip really clones, builds and resolves.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from cnnwidgets.colab import INSTALL_CELL, REPOSITORY
from colab_stub import GITHUB, calls, colab_env

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
VENV_PY = Path(sys.executable)


def _colab_py() -> Path:
    from browser_classic import colab_python

    return colab_python()


def _run_cell(python: Path, root: Path, on_colab: bool, install: bool = False):
    """Run the install cell with ``python``'s IPython, as a kernel would; returns (CompletedProcess, pip's report)."""
    env = colab_env(root, python, install=install)
    if not on_colab:
        env["PYTHONPATH"] = ""  # no google.colab to import: the startup file fails quietly, as a cell would not
        (root / "ipython" / "profile_default" / "startup" / "00-colab.py").unlink()
    cell = root / "cell.ipy"
    cell.write_text(INSTALL_CELL + "\nprint('google.colab' in sys.modules, 'cell ran')\n")
    r = subprocess.run([str(python), "-m", "IPython", "--no-banner", "--colors=NoColor", str(cell)], env=env, cwd=root,
                       capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    report = root / "pip-report.json"
    return r, (json.loads(report.read_text()) if report.exists() else None)


def test_every_notebook_starts_with_the_install_cell():
    assert NOTEBOOKS
    wrong = []
    for path in NOTEBOOKS:
        first = nbformat.read(path, as_version=4).cells[0]
        if first.cell_type != "code" or first.source.strip() != INSTALL_CELL:
            wrong.append(f"{path.name}: {first.cell_type} cell {first.source[:120]!r}")
    assert not wrong, "the first cell of every notebook must be cnnwidgets.colab.INSTALL_CELL:\n" + "\n".join(wrong)
    assert f'"cnnwidgets @ git+{REPOSITORY}"' in INSTALL_CELL and REPOSITORY == GITHUB
    urls = __import__("tomllib").loads((REPO / "pyproject.toml").read_text())["project"]["urls"]
    assert REPOSITORY in urls.values(), urls


@pytest.mark.parametrize("which", [pytest.param("ipython-7.34", marks=pytest.mark.colab), "current"])
def test_the_install_cell_does_nothing_outside_colab(which, tmp_path):
    python = _colab_py() if which == "ipython-7.34" else VENV_PY
    r, report = _run_cell(python, tmp_path, on_colab=False)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().endswith("False cell ran"), r.stdout[-2000:]
    assert report is None, f"pip ran outside Colab: {report}"
    assert "Error" not in r.stderr and "pip" not in r.stdout.replace("cell ran", ""), (r.stdout, r.stderr)


@pytest.mark.colab
@pytest.mark.parametrize("which", ["ipython-7.34", "current"])
def test_on_colab_the_install_cell_clones_the_repository_and_changes_nothing_else(which, tmp_path):
    """pip (dry run) resolves the cell's requirement against the environment: it would install cnnwidgets from the
    repository's current commit and nothing else (no other ipywidgets, bqplot or torch than the ones there)."""
    python = _colab_py() if which == "ipython-7.34" else VENV_PY
    r, report = _run_cell(python, tmp_path, on_colab=True)
    assert r.returncode == 0 and r.stdout.strip().endswith("True cell ran"), (r.stdout[-2000:], r.stderr[-3000:])
    assert report is not None, f"pip did not run on Colab:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    installs = [(i["metadata"]["name"], i["download_info"]) for i in report["install"]]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path / "clone", capture_output=True, text=True).stdout
    assert [name for name, _ in installs] == ["cnnwidgets"], installs
    info = installs[0][1]
    assert info["url"] == GITHUB and info["vcs_info"]["commit_id"] == head.strip(), info


@pytest.mark.colab
def test_on_colab_the_install_cell_installs_a_package_that_imports_and_turns_on_the_widget_manager(tmp_path):
    """The cell for real (the package alone into a folder of its own, so .venv-colab stays as it is), then a kernel
    with that folder first on its path: ``import cnnwidgets`` is the installed one, on Colab's ipywidgets 7.7.1, and
    asks Colab for its custom widget manager once."""
    python = _colab_py()
    r, _ = _run_cell(python, tmp_path, on_colab=True, install=True)
    assert r.returncode == 0, r.stderr[-3000:]
    target = tmp_path / "target"
    assert (target / "cnnwidgets" / "colab.py").exists(), (r.stdout[-2000:], r.stderr[-3000:])
    env = colab_env(tmp_path, python)
    env["PYTHONPATH"] = f"{target}:{env['PYTHONPATH']}"
    code = ("import google.colab, ipywidgets, cnnwidgets as cw, cnnwidgets.colab\n"
            "from cnnwidgets.runner import default_mode\n"
            "again = cnnwidgets.colab.enable_widgets()\n"
            "print(cw.__file__, ipywidgets.__version__, default_mode(), again, cw.load_model().__class__.__name__)")
    r = subprocess.run([str(python), "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    file, ipyw, mode, again, model = r.stdout.split()
    assert file.startswith(str(target)) and ipyw == "7.7.1" and mode == "foreground" and again == "True", r.stdout
    assert model == "EfficientNet", r.stdout  # the offline default model came with the install
    assert calls(tmp_path) == ["enable_custom_widget_manager"]


# --- import cnnwidgets and Colab's custom widget manager ------------------------------------------------------------
_IMPORT = """
import importlib, sys, warnings
{before}
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import cnnwidgets, cnnwidgets.colab
    importlib.reload(cnnwidgets)  # a second `import` (or a reload) asks no second time
    second = cnnwidgets.colab.enable_widgets()
print(repr(second), [str(w.message) for w in caught])
"""


@pytest.mark.parametrize("case", ["colab", "elsewhere", "stub-on-path-not-imported", "colab-without-output"])
def test_import_turns_on_colabs_widget_manager_once_in_colab_and_does_nothing_elsewhere(case, tmp_path):
    env = colab_env(tmp_path, VENV_PY)
    before = {"colab": "import google.colab",
              "elsewhere": "",
              "stub-on-path-not-imported": "",
              # an older Colab without output.enable_custom_widget_manager
              "colab-without-output": "import types; sys.modules['google.colab'] = types.ModuleType('google.colab')"}[case]
    if case == "elsewhere":
        env["PYTHONPATH"] = ""
    r = subprocess.run([sys.executable, "-c", _IMPORT.format(before=before)], env=env, capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    second, warned = r.stdout.strip().split(" ", 1)
    if case == "colab":
        assert calls(tmp_path) == ["enable_custom_widget_manager"] and second == "True" and warned == "[]", r.stdout
    elif case == "colab-without-output":
        assert second == "False" and "output.enable_custom_widget_manager()" in warned, r.stdout
    else:
        assert calls(tmp_path) == [] and second == "False" and warned == "[]", r.stdout
