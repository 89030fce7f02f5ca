"""The shape of the package, asserted: which modules may import what."""

from __future__ import annotations

import ast
from pathlib import Path

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


def test_only_the_warehouse_package_imports_duckdb():
    importers = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if any(name == "duckdb" or name.startswith("duckdb.") for name in imported_modules(path))
    }
    assert importers, "no module imports duckdb: the walk found nothing"
    outside = sorted(name for name in importers if not name.startswith("warehouse/"))
    assert outside == [], f"only revetl/warehouse/ may import duckdb; also imported by {outside}"
