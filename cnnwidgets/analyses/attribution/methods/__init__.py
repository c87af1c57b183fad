"""The attribution methods: one class per file, each registered by ``@register`` when its file is imported.

Every module in this folder is imported here, so a new method is one new file (see
``input_x_gradient.py`` for a small one and ``smoothgrad.py`` for one that streams partial maps).
"""
import importlib
import pkgutil

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    importlib.import_module(f"{__name__}.{_info.name}")
