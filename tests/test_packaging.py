"""The wheel a user installs elsewhere (Colab: `make wheel`, upload, `pip install`) holds every module of the package."""
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_every_module(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps", "-w",
                    str(tmp_path), str(REPO)], check=True, timeout=600)
    (wheel,) = tmp_path.glob("cnnwidgets-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "cnnwidgets").rglob("*.py")}
    assert modules and modules <= names, sorted(modules - names)
    meta = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Requires-Dist: torch>=" in text and "Requires-Dist: jupyter-ui-poll" in text
