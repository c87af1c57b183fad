"""Google Colab: the install cell every notebook starts with, and Colab's custom widget manager.

Colab renders only its built-in widgets unless its custom widget manager is on; bqplot's charts need it.
``import cnnwidgets`` turns it on (once) when it runs in Colab, and does nothing anywhere else.
"""
from __future__ import annotations

import sys
import warnings

REPOSITORY = "https://github.com/cnnwidgets/cnnwidgets"

#: The first cell of every notebook in notebooks/: on Colab it installs cnnwidgets from its repository; anywhere else
#: it does nothing (the package is installed already).
INSTALL_CELL = f"""\
# Colab only: install cnnwidgets from its repository (this cell does nothing anywhere else).
import sys
if "google.colab" in sys.modules:
    !pip install -q "cnnwidgets @ git+{REPOSITORY}\""""

_enabled = False


def in_colab() -> bool:
    """True in a Colab kernel (Colab imports ``google.colab`` before the first cell runs)."""
    return "google.colab" in sys.modules


def enable_widgets() -> bool:
    """Turn on Colab's custom widget manager (once); outside Colab do nothing. True when it is on."""
    global _enabled
    if _enabled or not in_colab():
        return _enabled
    try:
        from google.colab import output

        output.enable_custom_widget_manager()
    except Exception as e:  # an older or changed Colab: say what to run, keep working
        warnings.warn(f"cnnwidgets could not turn on Colab's custom widget manager ({type(e).__name__}: {e}); the "
                      "charts need it: run `from google.colab import output; output.enable_custom_widget_manager()`.",
                      stacklevel=2)
        return False
    _enabled = True
    return True
