"""tgad's import graph has no circle, and ``tgad.assets`` (the bottom layer) imports nothing else of tgad.

Why: a circle between modules makes their order of import matter and hides which layer owns what (issue 25:
the benchmark orchestrator and its row functions imported each other). The graph is read from the source with
``ast``: every import statement, at the top of a module or inside a function, relative imports resolved, and
``from pkg import name`` counted as an import of ``pkg.name`` when that is a submodule. A package imports
its ``__init__`` too, so ``__init__`` re-exports are edges like any other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import tgad

PACKAGE = Path(tgad.__file__).parent


def module_names() -> dict[str, Path]:
    """Every module of tgad: dotted name -> file (a package is its ``__init__.py``)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The tgad modules ``name`` imports anywhere in its file, and the packages above each of them (importing
    ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__`` first)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package upwards
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            found.update(
                f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in modules
            )
    edges = set()
    for target in found:
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in modules and prefix != name and not name.startswith(prefix + "."):
                edges.add(prefix)  # a module's own packages are already running when it is imported
    return edges


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of ``graph`` as [a, b, ..., a], or None (depth-first search, white/grey/black)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_graph_reader_sees_function_level_and_relative_imports(tmp_path):
    """The reader itself: a function-level import, a relative one and ``from pkg import submodule``."""
    modules = {"tgad": tmp_path, "tgad.a": tmp_path, "tgad.a.b": tmp_path, "tgad.c": tmp_path}
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from . import c\n\nfrom tgad.a import b\n")
    assert imports_of("tgad.x", source, modules) == {"tgad.c", "tgad.a", "tgad.a.b"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle():
    graph = import_graph()
    assert "tgad.benchmark.row_task" in graph and "tgad.cli.main" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_assets_import_nothing_else_of_tgad():
    graph = import_graph()
    bad = {
        f"{name} -> {target}"
        for name, targets in graph.items()
        if name.startswith("tgad.assets")
        for target in targets
        if not target.startswith("tgad.assets") and target != "tgad"
    }
    assert not bad, "tgad.assets must import nothing else of tgad: " + ", ".join(sorted(bad))
