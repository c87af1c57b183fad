"""The package's shape, as DESIGN.md states it: hooks are registered only in hooks.py (always on the Probe's
private view), analyses never import widgets, and no two modules import each other (directly or in a ring)."""
import ast
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "cnnwidgets"
HOOK_CALL = re.compile(r"\.register_(forward_hook|forward_pre_hook|full_backward_hook|full_backward_pre_hook|"
                       r"backward_hook|hook)\(")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The cnnwidgets modules a file imports (relative imports resolved; ``from x import y`` counts ``x.y`` when
    that is a module)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("cnnwidgets")}


def test_hooks_are_registered_only_in_hooks_py():
    found = [f"{p.relative_to(PKG.parent)}:{i}" for p in PKG.rglob("*.py") if p.name != "hooks.py"
             for i, line in enumerate(p.read_text().splitlines(), 1) if HOOK_CALL.search(line)]
    assert not found, f"hooks registered outside cnnwidgets/hooks.py: {found}"


def test_analyses_do_not_import_widgets():
    bad = {_module_name(p): sorted(m for m in _imports(p) if m.startswith("cnnwidgets.widgets"))
           for p in (PKG / "analyses").rglob("*.py")}
    assert not {k: v for k, v in bad.items() if v}, bad


def _cycles(pkg: Path) -> tuple[dict, list]:
    """The import graph among ``pkg``'s modules (package ``__init__`` files, which re-export their modules, left
    out) and every ring in it."""
    files = {_module_name(p): p for p in pkg.rglob("*.py") if p.name != "__init__.py"}
    graph = {m: {i for i in _imports(p) if i in files and i != m} for m, p in files.items()}
    state, cycles = {}, []

    def visit(m, path):
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycles.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n, path + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return graph, cycles


def test_no_import_cycle_between_modules():
    graph, cycles = _cycles(PKG)
    assert len(graph) > 20 and any(graph.values()), "the check must see the package's modules and their imports"
    assert not cycles, f"modules that import each other: {[' -> '.join(c) for c in cycles]}"


def test_the_cycle_check_sees_a_cycle(tmp_path, monkeypatch):
    """The check above can fail: two modules importing each other are found."""
    pkg = tmp_path / "cnnwidgets"
    pkg.mkdir()
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("from .a import thing\n")
    (pkg / "c.py").write_text("from . import a\n")
    monkeypatch.setattr(__import__(__name__), "PKG", pkg)
    graph, cycles = _cycles(pkg)
    assert cycles == [["cnnwidgets.a", "cnnwidgets.b", "cnnwidgets.a"]], cycles
