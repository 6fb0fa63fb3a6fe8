"""The package's layering: no import cycle, libraries below the pipeline, proxies on its own.

Every import counts, at module level or inside a function (an import moved into a function
still ties the two modules together); only imports for type checking are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p
        for pkg in ("automixer", "proxies")
        for p in sorted((ROOT / pkg).rglob("*.py"))
    }


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (resolved to the longest existing name)."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_lines(tree)
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            for t in targets:
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _is_package_init(graph: dict[str, set[str]], a: str, b: str) -> bool:
    """A package importing its own submodule, which imports a sibling through the package,
    is how packages re-export names: not a cycle between layers."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_there_is_no_import_cycle():
    graph = import_graph()
    pruned = {m: {t for t in ts if not _is_package_init(graph, m, t)} for m, ts in graph.items()}
    assert _cycles(pruned) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_proxies_import_nothing_from_automixer():
    graph = import_graph()
    bad = {m: sorted(t for t in ts if t.startswith("automixer")) for m, ts in graph.items()}
    assert {m: ts for m, ts in bad.items() if m.startswith("proxies") and ts} == {}


def test_only_the_cli_imports_the_pipeline():
    graph = import_graph()
    users = {
        m
        for m, ts in graph.items()
        if any(t.startswith("automixer.pipeline") for t in ts)
        and not m.startswith("automixer.pipeline")
    }
    assert users == {"automixer.cli"}
