"""The import graph of gateway/, policies/ and distill/, read with `ast`: no circle between
files, and the package direction distill -> gateway -> policies.

Every import counts, at module level or inside a function (a lazy import still ties the two
files together), except those under `if TYPE_CHECKING:`, which never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("distill", "gateway", "policies")
# A package may import those after it in this order, never those before it ...
DIRECTION = ("distill", "gateway", "policies")
# ... but the CLI, the composition root, runs the worker and the exports (lazily).
COMPOSERS = ("gateway.cli",)
# Where no circle is allowed at all ...
ACYCLIC = ("gateway.store",)
# ... and the circles the rest of the tree still has: none may be added, and one removed is
# struck from this list (when it is empty, ACYCLIC becomes the whole tree).
KNOWN_CYCLES: list[list[str]] = []  # none left: a new circle fails the test


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement in `tree`, skipping the bodies of `if TYPE_CHECKING:`."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
             known: set[str]) -> set[str]:
    """The modules of `known` that one import statement in `module` loads by name."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = module.split(".") if is_package else module.split(".")[:-1]
            anchor = anchor[:len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, *([base] if base else [])])
        # `from a.b import c`: the submodule a.b.c if there is one, else a name in a.b.
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                 for alias in node.names]
    out = set()
    for name in names:
        while name and name not in known:  # `import a.b.c.d` of a name below a module
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def import_graph(root: Path = ROOT, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of the same tree it imports."""
    files = {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    known = set(files)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _imports(tree):
            edges |= _targets(node, module, is_package, known)
        edges.discard(module)
        graph[module] = edges
    return graph


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (each a circle of
    imports), each sorted, in sorted order. Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def direction_violations(graph: Mapping[str, Iterable[str]],
                         order: tuple[str, ...] = DIRECTION,
                         exempt: tuple[str, ...] = COMPOSERS) -> list[tuple[str, str]]:
    """Imports that climb: a module of a package importing one of a package before it
    (modules under an `exempt` prefix may)."""
    rank = {pkg: i for i, pkg in enumerate(order)}
    bad = []
    for module, targets in graph.items():
        if any(module == p or module.startswith(p + ".") for p in exempt):
            continue
        here = rank.get(module.split(".")[0])
        for target in targets:
            there = rank.get(target.split(".")[0])
            if here is not None and there is not None and there < here:
                bad.append((module, target))
    return sorted(bad)


def _within(graph: Mapping[str, Iterable[str]], prefix: str) -> dict[str, set[str]]:
    inside = {m for m in graph if m == prefix or m.startswith(prefix + ".")}
    return {m: {t for t in graph[m] if t in inside} for m in inside}


# --- the tree -------------------------------------------------------------------------------

def test_no_circle_between_files_of_the_store() -> None:
    graph = import_graph()
    for prefix in ACYCLIC:
        assert cycles(_within(graph, prefix)) == [], prefix
        # nor through a file outside it: no circle in the whole tree touches the package
        touching = [c for c in cycles(graph) if any(m.startswith(prefix + ".") for m in c)]
        assert touching == [], prefix


def test_no_circle_but_the_known_ones() -> None:
    found = cycles(import_graph())
    assert [c for c in found if c not in KNOWN_CYCLES] == []  # a new circle
    assert [c for c in KNOWN_CYCLES if c not in found] == []  # gone: strike it from the list


def test_packages_import_downwards_only() -> None:
    graph = import_graph()
    assert direction_violations(graph) == []
    # nothing imports the composition root
    assert [(m, t) for m, targets in graph.items() for t in targets
            if t.startswith("gateway.cli") and not m.startswith("gateway.cli")] == []


def test_the_graph_sees_the_imports_it_must() -> None:
    graph = import_graph()
    assert "gateway.store.db" in graph["gateway.store.sqlite"]  # module level
    assert "gateway.store.pg_sync" in graph["gateway.store.db"]  # inside a function
    assert "gateway.config" not in graph["gateway.store.base"]  # only under TYPE_CHECKING


# --- the checks themselves, on toy graphs ---------------------------------------------------

def test_cycles_finds_a_circle_and_only_the_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"a"}, "x": {"y"}, "y": {"x"}}) == [["a", "b"], ["x", "y"]]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_direction_flags_a_climbing_import() -> None:
    graph = {"policies.gate": {"gateway.config"}, "gateway.app": {"distill.worker"},
             "distill.worker": {"gateway.app", "policies.gate"},
             "gateway.cli.main": {"distill.worker"}}
    assert direction_violations(graph) == [("gateway.app", "distill.worker"),
                                           ("policies.gate", "gateway.config")]
    assert direction_violations(graph, exempt=()) == [
        ("gateway.app", "distill.worker"), ("gateway.cli.main", "distill.worker"),
        ("policies.gate", "gateway.config")]


def test_import_graph_reads_lazy_relative_and_type_checking_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""Toy."""\n')
    (pkg / "sub" / "__init__.py").write_text('"""Toy."""\n')
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pkg import c\n"
        "def f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from .. import a\nimport pkg.c\n")
    (pkg / "c.py").write_text("import os\n")
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.a"] == {"pkg.sub.b"}
    assert graph["pkg.sub.b"] == {"pkg.a", "pkg.c"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b"]]
