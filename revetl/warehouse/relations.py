"""What dbt built, and where: the relation each model's `ref()` reads, for audiences and previews.

On DuckDB a relation is `"catalog"."schema"."alias"` (the catalog is the warehouse's own: DuckDB names it after
the file, so a manifest left by another warehouse still works); on a server warehouse `"schema"."alias"` (the
database connected to). Schema and alias come from dbt's manifest.json when it names the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from revetl.warehouse.connection import dbt_target_path, duckdb_path, target_config, warehouse_type
from revetl.warehouse.rendered import remember

if TYPE_CHECKING:
    from revetl.config import Project

__all__ = ["quoted", "relations"]


def relations(project: Project) -> dict[str, str]:
    """Model name -> its relation as SQL; a model the manifest does not name (or no manifest yet) is in the
    target's schema under its own name."""
    embedded = warehouse_type(project) == "duckdb"
    catalog = duckdb_path(project).name.lstrip(".").split(".")[0] if embedded else None
    schema = str(target_config(project).get("schema") or ("main" if embedded else "public"))
    found = {name: (schema, name) for name in _model_files(project)}
    for name, (db, alias) in _built(dbt_target_path(project) / "manifest.json").items():
        found[name] = (db or schema, alias or name)
    return {
        name: ".".join(quoted(part) for part in (catalog, db, alias) if part) for name, (db, alias) in found.items()
    }


def _built(manifest: Path) -> dict[str, list[str | None]]:
    """Model (seed, snapshot) name -> [schema, alias] as dbt's manifest.json has them (None: not set); none
    without a manifest (no build yet) or with a broken one: the defaults still work. Kept by the file's size and
    time (rendered.py): a manifest is megabytes of JSON, and dbt writes a new one with every build."""
    try:
        stat = manifest.stat()
    except OSError:
        return {}

    def read() -> str:
        try:
            nodes = json.loads(manifest.read_text(encoding="utf-8"))["nodes"].values()
            return json.dumps({
                node["name"]: [node.get("schema"), node.get("alias")] for node in nodes
                if node.get("resource_type") in ("model", "seed", "snapshot") and node.get("name")
            })
        except (OSError, ValueError, KeyError, AttributeError, TypeError):
            return "{}"

    return json.loads(remember("manifest", "", (str(manifest), stat.st_size, stat.st_mtime_ns), read))


def quoted(identifier: str) -> str:
    """An identifier quoted as DuckDB (and sqlglot) write it."""
    return '"' + identifier.replace('"', '""') + '"'


def _model_files(project: Project) -> list[str]:
    from revetl.warehouse.package import model_dirs  # revetl's own models too, in a project made by `init`

    return [sql.stem for folder in model_dirs(project) for sql in sorted(folder.rglob("*.sql"))]
