"""A kernel that believes it runs on Colab, for the tests marked ``colab``.

Colab imports ``google.colab`` before the first cell runs; cnnwidgets then runs long jobs in the foreground and turns
on Colab's custom widget manager (``google.colab.output.enable_custom_widget_manager``). Here ``google.colab`` is a
small package in a temporary folder whose ``output.enable_custom_widget_manager`` appends a line to the file named by
``$CNNWIDGETS_COLAB_CALLS``, so a test can count the calls. :func:`colab_env` gives a kernel's environment:

* ``PYTHONPATH``: the stub; ``IPYTHONDIR``: a startup file that imports ``google.colab``, as Colab does;
* git settings that serve ``https://github.com/cnnwidgets/cnnwidgets`` from a local clone of this repository
  (``url.<file://...>.insteadOf``, as ``GIT_CONFIG_*`` variables), so the notebooks' install cell (``!pip install "cnnwidgets @ git+https://..."``)
  really clones, builds and resolves;
* ``PIP_DRY_RUN=1``: pip resolves the install against the environment and changes nothing in it; ``PIP_REPORT``
  says what it would have installed. With ``install=True`` instead: the package alone goes into ``root/target``.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GITHUB = "https://github.com/cnnwidgets/cnnwidgets"

_OUTPUT = '''"""Stand-in for google.colab.output: records enable_custom_widget_manager() calls."""
import os


def enable_custom_widget_manager():
    path = os.environ.get("CNNWIDGETS_COLAB_CALLS")
    if path:
        with open(path, "a") as f:
            f.write("enable_custom_widget_manager\\n")
'''


def make_stub(root: Path) -> Path:
    """``root/google/colab`` (``google`` a namespace package, so other ``google.*`` packages still import); returns
    the folder to put on ``sys.path``."""
    pkg = Path(root) / "stub" / "google" / "colab"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab (tests/colab_stub.py)."""\n')
    (pkg / "output.py").write_text(_OUTPUT)
    return pkg.parent.parent


def serve_repository(root: Path) -> dict:
    """Git settings (environment variables, as a global git config would set them) that serve the GitHub repository
    from a fresh clone of this checkout's HEAD in ``root/clone``."""
    clone = Path(root) / "clone"
    if not clone.exists():
        subprocess.run(["git", "clone", "-q", f"file://{REPO}", str(clone)], check=True,
                       capture_output=True)
    return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.file://{clone}.insteadOf", "GIT_CONFIG_VALUE_0": GITHUB}


def colab_env(root: Path, python: Path, install: bool = False, env: dict | None = None) -> dict:
    """The environment of a Colab-like kernel run by ``python`` (see the module docstring)."""
    root = Path(root)
    stub = make_stub(root)
    startup = root / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-colab.py").write_text("import google.colab  # as Colab does before the first cell\n")
    env = dict(os.environ if env is None else env)
    for k in ("VIRTUAL_ENV", "PYTHONHOME", "PIP_TARGET", "PIP_REQUIRE_VIRTUALENV"):
        env.pop(k, None)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(stub)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])),
        "IPYTHONDIR": str(root / "ipython"),
        "CNNWIDGETS_COLAB_CALLS": str(root / "colab-calls.txt"),
        **serve_repository(root),
        "PATH": f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}",  # `!pip` is this environment's pip
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_REPORT": str(root / "pip-report.json"),
        # the environment's own hatchling builds the checkout: an isolated build would run a second pip, which
        # inherits these settings (a dry run or a target there loses the build backend). `0` turns isolation off.
        "PIP_NO_BUILD_ISOLATION": "0",
    })
    if install:  # the package alone, into a folder of its own: the environment itself stays as it is
        env.update({"PIP_TARGET": str(root / "target"), "PIP_NO_DEPS": "1"})
    else:
        env["PIP_DRY_RUN"] = "1"
    return env


def calls(root: Path) -> list[str]:
    """The recorded enable_custom_widget_manager() calls."""
    f = Path(root) / "colab-calls.txt"
    return f.read_text().splitlines() if f.exists() else []
