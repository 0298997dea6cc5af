"""The import graph of the product code has no cycles (docs/architecture.md, "Who imports whom").

Built from the source with `ast`, so it sees every import, including the ones inside functions
(a lazy import that dodges a loop at import time is still a loop in the design). Nodes are the
modules of kiosk/, tasks/ and periodic.py; `from kiosk.orders import store` is an edge to the
module `kiosk.orders.store`, `from kiosk.orders import X` (X not a module) an edge to the package
`kiosk.orders` itself. Two checks, no allow-list:

- no cycle between modules;
- no two packages (kiosk's sub-packages and top-level modules, `tasks`, `periodic`) importing
  each other, directly or through others: the package graph is acyclic too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.support import PROJECT_DIR

ROOTS = ("kiosk", "tasks")
EXTRA = ("periodic.py",)


def _modules(project: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for root in ROOTS:
        for path in sorted((project / root).rglob("*.py")):
            parts = list(path.relative_to(project).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    for name in EXTRA:
        found[Path(name).stem] = project / name
    return found


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def import_graph(project: Path = PROJECT_DIR) -> dict[str, set[str]]:
    """module -> the project modules it imports (anywhere in its source)."""
    modules = _modules(project)
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                # `import kiosk.orders.store` names a module; keep the longest known prefix.
                parts = target.split(".")
                while parts and ".".join(parts) not in modules:
                    parts.pop()
                if parts and ".".join(parts) != name:
                    graph[name].add(".".join(parts))
    return graph


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "kiosk" and len(parts) > 1 else parts[0]


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges = packages.setdefault(package_of(module), set())
        edges.update(package_of(t) for t in targets if package_of(t) != package_of(module))
    return packages


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _describe(component: list[str], graph: dict[str, set[str]]) -> str:
    members = set(component)
    edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
    return "; ".join(edges)


def test_the_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    (tmp_path / "kiosk" / "a").mkdir(parents=True)
    (tmp_path / "tasks").mkdir()
    (tmp_path / "kiosk" / "__init__.py").write_text("")
    (tmp_path / "kiosk" / "a" / "__init__.py").write_text("")
    (tmp_path / "kiosk" / "a" / "one.py").write_text("def f():\n    from kiosk.b import helper\n")
    (tmp_path / "kiosk" / "a" / "two.py").write_text("from . import one\n")
    (tmp_path / "kiosk" / "b.py").write_text("import kiosk.a.two\n")
    (tmp_path / "tasks" / "__init__.py").write_text("")
    (tmp_path / "periodic.py").write_text("")
    graph = import_graph(tmp_path)
    assert graph["kiosk.a.one"] == {"kiosk.b"}
    assert graph["kiosk.a.two"] == {"kiosk.a.one"}
    assert cycles(graph) == [["kiosk.a.one", "kiosk.a.two", "kiosk.b"]]
    assert cycles(package_graph(graph)) == [["kiosk.a", "kiosk.b"]]


def test_no_import_cycle_between_modules() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles between modules:\n" + "\n".join(
        _describe(c, graph) for c in found
    )


def test_no_two_packages_import_each_other() -> None:
    graph = package_graph(import_graph())
    found = cycles(graph)
    assert not found, "packages importing each other (directly or round a loop):\n" + "\n".join(
        _describe(c, graph) for c in found
    )
