"""Shared fixtures: the real-browser ``lab`` (JupyterLab + headless Chromium)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so tests can `from browser import ...`


@pytest.fixture(scope="module")
def eff():
    """The offline default model, efficientnet_lite0 with its real ImageNet weights."""
    import cnnwidgets as cw

    return cw.load_model()


@pytest.fixture(scope="module")
def probe(eff):
    """A Probe on the default model (one per test module, so caches do not leak between modules)."""
    import cnnwidgets as cw

    return cw.Probe(eff)


@pytest.fixture(scope="module")
def cat():
    """The bundled photograph of a tabby cat."""
    import cnnwidgets as cw

    return cw.sample_image("chelsea")


@pytest.fixture(scope="session")
def lab():
    """JupyterLab 4 on a free 127.0.0.1 port (temporary root, the .venv's kernel) + headless Chromium.

    ``lab.run_notebook(cells, name)`` -> :class:`browser.NotebookRun` with ``.page``, ``.run_cell(code)``,
    ``.screenshot(name)`` (artifacts/screenshots/<name>.png), ``.wait_for(selector, timeout)``, ``.close()``.
    At most a few notebooks keep their kernels at once (the least recently used is closed).
    """
    from browser import Lab

    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


def pytest_collection_modifyitems(config, items):
    """``CNNWIDGETS_SKIP_BROWSER=1`` skips the browser tests (e.g. where no Chromium can be installed)."""
    if os.environ.get("CNNWIDGETS_SKIP_BROWSER") == "1":
        skip = pytest.mark.skip(reason="CNNWIDGETS_SKIP_BROWSER=1")
        for item in items:
            if "browser" in item.keywords:
                item.add_marker(skip)
