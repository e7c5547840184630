"""No module-level import cycles in the checked packages.

grimp records every import of a module: top-level, function-local and under
``TYPE_CHECKING``, so a cycle hidden in a function body or a type annotation counts
too. The check is Tarjan's strongly connected components over the direct imports
between the modules of :data:`CHECKED`; any component of more than one module (or a
module importing itself) is a cycle.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

import grimp
import pytest

# Every package of the tree: no module may import another in a cycle.
CHECKED = ("storage", "protocol", "broker")

_ROOTS = ("broker", "storage", "protocol")


def _in_checked(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in CHECKED)


def strongly_connected(
    nodes: Iterable[str], edges: Callable[[str], Iterable[str]]
) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the cyclic components of the graph, sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    work: list[tuple[str, list[str]]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        work.append((v, sorted(edges(v))))

    for root in sorted(nodes):
        if root in index:
            continue
        visit(root)
        while work:
            v, pending = work[-1]
            if pending:
                w = pending.pop()
                if w not in index:
                    visit(w)
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[v])
            if low[v] == index[v]:
                component: list[str] = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1 or v in edges(v):
                    found.append(sorted(component))
    return sorted(found)


def test_tarjan_finds_cycles_and_only_cycles() -> None:
    graph = {
        "a": {"b"},
        "b": {"c"},
        "c": {"a", "d"},
        "d": set(),
        "e": {"e"},
        "f": {"d"},
    }
    assert strongly_connected(graph, graph.__getitem__) == [["a", "b", "c"], ["e"]]
    acyclic = {"a": {"b"}, "b": {"c"}, "c": set()}
    assert strongly_connected(acyclic, acyclic.__getitem__) == []


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*_ROOTS, include_external_packages=False)


def test_checked_packages_exist(graph: grimp.ImportGraph) -> None:
    for prefix in CHECKED:
        assert prefix in graph.modules, f"{prefix} is not a module of {_ROOTS}"


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    modules = {m for m in graph.modules if _in_checked(m)}

    def imports(module: str) -> set[str]:
        return {
            m for m in graph.find_modules_directly_imported_by(module) if _in_checked(m)
        }

    cycles = strongly_connected(modules, imports)
    for members in cycles:
        print(f"import cycle: {' <-> '.join(members)}", file=sys.stderr)
        for importer in members:
            for imported in sorted(imports(importer) & set(members)):
                for detail in graph.get_import_details(
                    importer=importer, imported=imported
                ):
                    print(
                        f"  {importer} -> {imported} line {detail['line_number']}: "
                        f"{detail['line_contents']}",
                        file=sys.stderr,
                    )
    assert cycles == [], f"import cycles among {CHECKED}: {cycles}"
