"""Every notebook in notebooks/ runs headless, top to bottom, without an error (nbclient, this venv's kernel), and
exported to HTML shows each panel's last view (tests/test_export.py)."""
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_without_error(path, monkeypatch):
    monkeypatch.setenv("CNNWIDGETS_QUICK", "1")  # notebooks that train run a shorter schedule (train_and_watch: 10 s)
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    # "python3" resolves to the interpreter running pytest (the .venv's), whatever the notebook's metadata says
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as e:
        pytest.fail(f"{path.name} failed:\n{e}", pytrace=False)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, f"{path.name}: error outputs {errors}"
    from test_export import assert_panels_exported  # exported to HTML, each panel shows its last view as an image

    assert_panels_exported(nb, path)


def test_there_are_notebooks():
    assert any(p.name == "quickstart.ipynb" for p in NOTEBOOKS)
