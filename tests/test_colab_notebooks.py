"""Every notebook as shipped, as on Colab: executed headless top to bottom by a kernel of the Colab-like environment
(``.venv-colab``: ipywidgets 7.7.1, widgetsnbextension 3.6.10, notebook 6.5.7, ipykernel 6.17.1, traitlets 5.7.1,
bqplot 0.12.47, IPython 7.34), which imports ``google.colab`` at startup as Colab does (tests/colab_stub.py): the
install cell runs pip (a dry run against the environment, the repository served from a local clone), ``import
cnnwidgets`` asks for Colab's custom widget manager, and every long job runs in the foreground, Colab's mode.
nbclient runs in .venv-colab too (it comes with notebook 6.5). ``CNNWIDGETS_QUICK=1`` as in tests/test_notebooks.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import nbformat
import pytest

from colab_stub import calls, colab_env

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
pytestmark = [pytest.mark.colab, pytest.mark.notebook]

#: Colab's pins (googlecolab/backend-info, 2026-08), as the Makefile's COLAB_PKGS installs them
COLAB_PINS = {"ipywidgets": "7.7.1", "widgetsnbextension": "3.6.10", "notebook": "6.5.7", "ipykernel": "6.17.1",
              "traitlets": "5.7.1", "bqplot": "0.12.47", "ipython": "7.34.0"}


def test_the_colab_environment_has_colabs_pins_and_is_consistent():
    from browser_classic import colab_python

    python = colab_python()
    r = subprocess.run([str(python), "-c", "import json, importlib.metadata as m; print(json.dumps("
                        f"{{n: m.version(n) for n in {sorted(COLAB_PINS)!r}}}))"], capture_output=True, text=True)
    assert json.loads(r.stdout) == COLAB_PINS, r.stdout + r.stderr
    check = subprocess.run([str(python), "-m", "pip", "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


_EXECUTE = r"""
import sys, nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
path, out = sys.argv[1], sys.argv[2]
nb = nbformat.read(path, as_version=4)
nb.cells.append(nbformat.v4.new_code_cell(
    "import sys, ipywidgets, bqplot\nfrom cnnwidgets.runner import default_mode\n"
    "print('COLAB-CHECK', 'google.colab' in sys.modules, default_mode(), ipywidgets.__version__, bqplot.__version__, "
    "sys.executable)"))
client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": sys.argv[3]}})
try:
    client.execute()
except CellExecutionError as e:
    print(e)
    sys.exit(1)
nbformat.write(nb, out)
"""


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_as_on_colab(path, tmp_path):
    from browser_classic import colab_python

    python = colab_python()
    env = colab_env(tmp_path, python)
    env["CNNWIDGETS_QUICK"] = "1"
    t0 = time.monotonic()
    r = subprocess.run([str(python), "-c", _EXECUTE, str(path), str(tmp_path / "out.ipynb"), str(path.parent)],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    assert r.returncode == 0, f"{path.name} failed as on Colab:\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{path.name}: error outputs {errors}"
    check = "".join(o.get("text", "") for o in nb.cells[-1].outputs).split()
    assert check[:5] == ["COLAB-CHECK", "True", "foreground", "7.7.1", "0.12.47"], check
    assert Path(check[5]).parent == python.parent, check  # the kernel is .venv-colab's python
    # the install cell ran pip on the repository; import cnnwidgets asked for the widget manager once
    report = json.loads((tmp_path / "pip-report.json").read_text())
    assert [i["metadata"]["name"] for i in report["install"]] == ["cnnwidgets"], report["install"]
    assert calls(tmp_path) == ["enable_custom_widget_manager"]
    print(f"{path.name} as on Colab: {took:.0f} s")
