"""The shape of the package, asserted: which modules may import what."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import revetl

PACKAGE = Path(revetl.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code (function-level imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("driver", ["duckdb", "_duckdb", "adbc_driver_postgresql", "adbc_driver_manager", "psycopg2"])
def test_only_the_warehouse_package_imports_a_driver(driver):
    importers = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if any(name == driver or name.startswith(driver + ".") for name in imported_modules(path))
    }
    outside = sorted(name for name in importers if not name.startswith("warehouse/"))
    assert outside == [], f"only revetl/warehouse/ may import {driver}; also imported by {outside}"
    if driver in ("duckdb", "_duckdb", "adbc_driver_postgresql"):
        assert importers, f"no module imports {driver}: the walk found nothing"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """revetl module -> the revetl modules it imports (a `from package import module` counts as the module)."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                edges.add(node.module)
                edges.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[name] = {edge for edge in edges if edge in modules and edge != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for edge in edges:
                if edge not in index:
                    index[edge] = low[edge] = len(index)
                    stack.append(edge)
                    on_stack.add(edge)
                    work.append((edge, iter(sorted(graph[edge]))))
                    break
                if edge in on_stack:
                    low[node] = min(low[node], index[edge])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert graph["revetl.sync.apply"] >= {"revetl.sync.plan", "revetl.sync.state"}, "the walk misses imports"
    assert cycles(graph) == []


def test_cycles_are_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_is_over_400_lines():
    sizes = {path.relative_to(PACKAGE).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
             for path in PACKAGE.rglob("*.py")}
    assert {name: size for name, size in sizes.items() if size > 400} == {}


def loaded_by(code: str) -> set[str]:
    """The top-level packages and revetl modules a fresh interpreter has loaded after running `code`."""
    script = f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    return set(result.stdout.split())


HEAVY = {"duckdb", "pyarrow", "aiohttp", "dbt", "sqlglot", "jinja2", "uvicorn", "revetl.emulators"}


def test_the_command_line_loads_what_a_command_needs_when_it_runs():
    loaded = loaded_by("import revetl.cli")
    assert loaded & (HEAVY | {"pydantic", "httpx", "yaml"}) == set()


def test_a_sync_loads_no_transport_arrow_or_dbt_until_it_has_rows_to_send():
    # `revetl sync` with nothing to send (a cron line firing every minute): duckdb, sqlglot and jinja2 it needs
    loaded = loaded_by("import revetl.sync.apply, revetl.cli, revetl.destinations.braze, revetl.destinations.salesforce, "
                       "revetl.destinations.intercom")
    assert loaded & {"pyarrow", "aiohttp", "httpx", "dbt", "uvloop", "uvicorn", "revetl.emulators", "revetl.sync.transport"} \
        == set()


def test_a_plain_sync_loads_neither_typer_nor_the_duckdb_package():
    # the launcher's path (revetl/launch.py): DuckDB's extension alone until rows go to or from Arrow
    loaded = loaded_by("import revetl.launch, revetl.sync.batch, revetl.sync.apply, revetl.warehouse.embedded, "
                       "revetl.alerts.hooks, revetl.sync.report")
    assert "_duckdb" in loaded
    assert loaded & {"typer", "click", "duckdb"} == set()
