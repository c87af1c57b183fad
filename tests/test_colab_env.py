"""The Colab-like environment (``.venv-colab``: ipywidgets 7.7.1, bqplot 0.12.47, ipykernel 6; ``make install-colab``,
made on demand, once) and what runs in it:

* ``make test-colab``: the unit tests that construct and drive every panel, run under ipywidgets 7.7.1 and
  bqplot 0.12.47 (one pytest run there), with ipywidgets 7's "Passing unrecognized arguments" warning made an error:
  ipywidgets 7 ignores an argument it does not know (``IntSlider(tooltip=...)``, an ipywidgets 8 trait) with only a
  DeprecationWarning, which pytest would hide.
* a static check of every widget call in cnnwidgets/: each keyword argument (and ``style={...}`` key, and attribute
  set on a widget made in the same file) is known to both majors: ipywidgets 7.7.1 and 8, bqplot 0.12.47 and 0.13.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from browser_classic import COLAB_VENV, colab_python

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.colab


# --- make test-colab: panels built and driven under ipywidgets 7.7.1 / bqplot 0.12.47 -----------------------------------
def test_make_test_colab_passes_under_ipywidgets_7():
    python = colab_python()
    versions = subprocess.run([str(python), "-c", "import ipywidgets, bqplot, ipykernel, traitlets, notebook; print("
                               "ipywidgets.__version__, bqplot.__version__, ipykernel.__version__, notebook.__version__)"],
                              capture_output=True, text=True, cwd=REPO)
    assert versions.stdout.split()[:2] == ["7.7.1", "0.12.47"], versions.stdout + versions.stderr
    assert versions.stdout.split()[2].startswith("6.") and versions.stdout.split()[3].startswith("6."), versions.stdout
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "VIRTUAL_ENV",
                                                             "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST")}
    t0 = time.monotonic()
    r = subprocess.run(["make", "--no-print-directory", "test-colab", f"COLAB_VENV={COLAB_VENV}",
                        "PYTEST_ARGS=-q -rfEs --no-header -p no:randomly"], cwd=REPO, env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=1200)
    out = r.stdout + r.stderr
    print(out[-3000:], f"\nmake test-colab: {time.monotonic() - t0:.0f} s")
    assert r.returncode == 0, out[-8000:]
    assert " passed" in out and " failed" not in out, out[-3000:]


# --- every widget argument is one both majors know ---------------------------------------------------------------------
_DUMP = r"""
import inspect, json, ipywidgets, bqplot
out = {"versions": [ipywidgets.__version__, bqplot.__version__]}
for modname, mod in (("ipywidgets", ipywidgets), ("bqplot", bqplot)):
    classes = {}
    for name in dir(mod):
        cls = getattr(mod, name)
        if not (isinstance(cls, type) and issubclass(cls, ipywidgets.Widget)):
            continue
        args = set(cls.class_trait_names())
        try:
            args |= {p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs")}
        except (TypeError, ValueError):
            pass
        style = cls.class_traits().get("style")
        klass = getattr(style, "klass", None)
        args |= {n for n in dir(cls) if isinstance(getattr(cls, n, None), property)}  # bqplot 0.13's Axis.orientation
        classes[name] = {"args": sorted(args), "attrs": sorted(dir(cls)),
                         "style": sorted(klass.class_trait_names()) if isinstance(klass, type) else None}
    out[modname] = classes
print(json.dumps(out))
"""


def _known(python) -> dict:
    r = subprocess.run([str(python), "-c", _DUMP], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def _widget_calls(path: Path):
    """(line, module, class, [keyword names], {style keys} or None, [attributes set later on the result]) for every
    ``W.Class(...)`` / ``bq.Class(...)`` / imported ``Class(...)`` call of ipywidgets or bqplot in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    aliases, names = {}, {}  # W -> ipywidgets; Button -> (ipywidgets, Button)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in ("ipywidgets", "bqplot"):
                    aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module in ("ipywidgets", "bqplot"):
            for a in node.names:
                names[a.asname or a.name] = (node.module, a.name)

    def target(call):
        f = call.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in aliases:
            return aliases[f.value.id], f.attr
        if isinstance(f, ast.Name) and f.id in names:
            return names[f.id]
        return None

    # code under a version test (`if fig.has_trait("display_toolbar"):`, `if IPYW8:`) is meant for one version only
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.If, ast.IfExp)) and any(
                w in ast.unparse(node.test) for w in ("has_trait", "trait_names", "hasattr", "IPYW8", "__version__")):
            for child in ast.walk(node):
                guarded.add(id(child))
    # attributes set on a widget made in the same class (or function, or module level): `self.canvas = W.Image()`, then
    # `self.canvas.foo = ...`
    scopes = [n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
              and n in tree.body] + [ast.Module(body=[n for n in tree.body if not isinstance(
                  n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))], type_ignores=[])]
    for scope in scopes:
        made = {}
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and target(node.value):
                for t in node.targets:
                    made[ast.unparse(t)] = target(node.value)
        for node in ast.walk(scope):
            if id(node) in guarded or not isinstance(node, (ast.Assign, ast.AugAssign)):
                continue
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                if isinstance(t, ast.Attribute) and ast.unparse(t.value) in made and not t.attr.startswith("_"):
                    module, cls = made[ast.unparse(t.value)]
                    yield node.lineno, module, cls, [], None, t.attr
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and target(node) and id(node) not in guarded:
            module, cls = target(node)
            style = None
            for kw in node.keywords:
                if kw.arg == "style" and isinstance(kw.value, ast.Dict):
                    style = {k.value for k in kw.value.keys if isinstance(k, ast.Constant)}
            yield node.lineno, module, cls, [kw.arg for kw in node.keywords if kw.arg], style


def _offences(known_by_version: list[dict]) -> list[str]:
    found = []
    for path in sorted((REPO / "cnnwidgets").rglob("*.py")):
        rel = path.relative_to(REPO)
        for item in _widget_calls(path):
            line, module, cls, kwargs, style = item[:5]
            attr = item[5] if len(item) > 5 else None
            for known in known_by_version:
                v = dict(zip(("ipywidgets", "bqplot"), known["versions"]))[module]
                spec = known[module].get(cls)
                if spec is None:
                    if any(cls in k[module] for k in known_by_version):  # a widget class of another version only
                        found.append(f"{rel}:{line}: {module}.{cls} does not exist in {module} {v}")
                    continue  # not a widget class (a function, a trait type)
                bad = [k for k in kwargs if k not in spec["args"]]
                if bad:
                    found.append(f"{rel}:{line}: {module}.{cls}({', '.join(f'{k}=' for k in bad)}...): unknown to {module} {v}")
                if style and spec["style"] is not None:
                    bad = sorted(style - set(spec["style"]))
                    if bad:
                        found.append(f"{rel}:{line}: {module}.{cls}(style={{{', '.join(map(repr, bad))}: ...}}): "
                                     f"unknown to {module} {v}'s style")
                if attr and attr not in spec["attrs"]:
                    found.append(f"{rel}:{line}: .{attr} = ... on a {module}.{cls}: unknown to {module} {v}")
    return sorted(set(found))


def test_every_widget_argument_is_known_to_ipywidgets_7_and_8_and_bqplot_012_and_013():
    colab, ours = _known(colab_python()), _known(sys.executable)
    assert colab["versions"] == ["7.7.1", "0.12.47"] and ours["versions"][0].startswith("8."), (colab["versions"],
                                                                                             ours["versions"])
    # the check itself: it knows the arguments that differ
    assert "tooltip" not in colab["ipywidgets"]["IntSlider"]["args"] and "tooltip" in ours["ipywidgets"]["IntSlider"]["args"]
    assert "tooltip" in colab["ipywidgets"]["Button"]["args"]  # a Button's tooltip is in both
    found = _offences([colab, ours])
    assert not found, "widget arguments one of Colab's ipywidgets 7.7.1 / bqplot 0.12.47 or ipywidgets 8 / bqplot " \
                      "0.13 does not know (7 ignores them with a DeprecationWarning only):\n" + "\n".join(found)


def test_the_static_check_finds_an_ipywidgets_8_only_argument(tmp_path, monkeypatch):
    """The check above on a file with known offences: it reports each, and nothing else."""
    pkg = tmp_path / "cnnwidgets"
    pkg.mkdir()
    (pkg / "bad.py").write_text(
        "import ipywidgets as W\nimport bqplot as bq\nfrom ipywidgets import IntSlider as S\n"
        "a = W.IntSlider(1, tooltip='x', description='ok')\n"
        "b = S(2, description_allow_html=True)\n"
        "c = W.Button(description='go', tooltip='fine in both', style={'button_color': 'red', 'font_size': '9px'})\n"
        "c.tooltip = 'fine'\nd = W.IntSlider()\nd.tooltip = 'not in 7'\n"
        "e = bq.Figure(display_toolbar=False)\nf = W.Stack([])\ng = bq.Axis(orientation='vertical')\n"
        "if e.has_trait('display_toolbar'):\n    e.display_toolbar = False\n"
        "if d.has_trait('description_allow_html'):\n    d.description_allow_html = True\n"
        "class A:\n    def __init__(self):\n        self.m = W.Image()\n        self.m.value = b''\n"
        "class B:\n    def __init__(self):\n        self.m = bq.Image()\n        self.m.image = W.Image()\n")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    found = _offences([_known(colab_python()), _known(sys.executable)])
    text = "\n".join(found)
    assert "bad.py:4: ipywidgets.IntSlider(tooltip=...): unknown to ipywidgets 7.7.1" in text, text
    assert "bad.py:5: ipywidgets.IntSlider(description_allow_html=...): unknown to ipywidgets 7.7.1" in text, text
    assert "bad.py:6: ipywidgets.Button(style={'font_size': ...}): unknown to ipywidgets 7.7.1's style" in text, text
    assert "bad.py:9: .tooltip = ... on a ipywidgets.IntSlider: unknown to ipywidgets 7.7.1" in text, text
    assert "bad.py:10: bqplot.Figure(display_toolbar=...): unknown to bqplot 0.12.47" in text, text
    assert "bad.py:11: ipywidgets.Stack does not exist in ipywidgets 7.7.1" in text, text
    assert "orientation" not in text  # bqplot 0.13 takes an Axis' orientation as a property, 0.12 as a trait
    assert len(found) == 6, text
