"""The package's shape: imports point one way, the gate stays pure, nothing edits sys.path for good.

The import graph is read from the source (every import, at module level or
inside a function, and those under ``if TYPE_CHECKING:`` too), so a cycle that
only a lazy import or a type annotation makes is caught too.

    .venv/bin/pytest tests/test_structure.py
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "evalgate"


def _module(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph(typing_too: bool = False) -> dict[str, set[str]]:
    """evalgate module → the evalgate modules it imports (at run time; with ``typing_too``, for the type checker too)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = set() if typing_too else _type_checking_lines(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.split(".")
                if node.level:
                    base = base[: len(base) - node.level + 1]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                targets = [stem] + [f"{stem}.{a.name}" for a in node.names]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name and t.startswith("evalgate"):
                    graph[name].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle() -> None:
    for typing_too in (False, True):  # not even through the imports only the type checker follows
        graph = import_graph(typing_too)
        # the package's __init__ re-exports lazily; it and its submodules' "from . import x" are not a cycle
        pruned = {m: {t for t in ts if t != "evalgate"} for m, ts in graph.items()}
        assert _cycles(pruned) == [], typing_too


def test_the_gate_is_pure() -> None:
    graph = import_graph()
    assert graph["evalgate.gate"] <= {"evalgate.policy", "evalgate.results", "evalgate.errors"}
    assert graph["evalgate.policy"] <= {"evalgate.errors"}
    # the statistics are plain arithmetic: they import nothing of evalgate's but each other
    assert all(t.startswith("evalgate.stats") for m in graph if m.startswith("evalgate.stats") for t in graph[m])
    loaded = subprocess.run([sys.executable, "-c", "import sys, evalgate.gate; "
                             "print(sorted(m for m in sys.modules if m.startswith('evalgate')))"],
                            capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert not any(heavy in loaded for heavy in ("evalgate.pipeline", "evalgate.models", "evalgate.suite", "evalgate.store"))


def test_nothing_in_the_package_changes_sys_path_for_good() -> None:
    offenders = [p for p in PACKAGE.rglob("*.py") if p.name != "references.py"
                 and ("sys.path.insert" in p.read_text() or "sys.path.append" in p.read_text())]
    assert offenders == []
