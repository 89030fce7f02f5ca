"""DuckDB's staging copy: `revetl build` on DuckDB builds into a copy of the warehouse and publishes it.

dbt builds into a staging copy of the warehouse (`<work_dir>/build/<warehouse file name>`, same
settings, same catalog name), not into the warehouse itself, and only a build whose every model and
test passed is published: its tables and views replace the warehouse's in one transaction,
`build_info` with them. So a build that fails (a bad model, a failing test, a corrupt landing file)
leaves every public model and the "as of" time as they were, and audiences never see half a build.
And the warehouse is held only while publishing (seconds), not for the whole build: syncs, plans and
previews run meanwhile (an embedded DuckDB file admits one writing process at a time). The staging
copy is kept between builds (disk: about the size of the models) so that `--select` rebuilds only
what it names.

A server warehouse needs none of this (dbt.py): PostgreSQL's table materialization replaces each
table in a transaction, and concurrent readers keep reading.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from revetl.config import PROJECT_FILE, Project, read_yaml
from revetl.errors import BuildError, QueryError

__all__ = ["publish", "seed_staging", "staging_path", "staging_profile"]


def staging_path(project: Project) -> Path:
    """The staging copy dbt builds into: same file name (so the same catalog name) in the work dir."""
    from revetl.warehouse.connection import duckdb_path, work_dir

    directory = work_dir(project) / "build"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / duckdb_path(project).name


@contextlib.contextmanager
def staging_profile(project: Project, staging: Path) -> Iterator[Path]:
    """A profiles directory whose only target is the project's, pointed at the staging copy.

    Written with the rendered settings of the project's DuckDB target (no secrets live there), readable
    by its owner only, and removed after the run."""
    from revetl.warehouse.connection import target_config

    config = {**target_config(project), "path": str(staging)}
    profile = read_yaml(project.root / PROJECT_FILE).get("profile")
    directory = staging.parent / f"profile-{os.getpid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / "profiles.yml"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({profile: {"target": "revetl_build", "outputs": {"revetl_build": config}}}, handle)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def seed_staging(project: Project, staging: Path) -> None:
    """Before a `--select` build without a staging copy yet (a first build by this revetl), copy the
    warehouse into it, so that the models the selection does not rebuild are there to read."""
    from revetl.warehouse.connection import connect, duckdb_path

    main = duckdb_path(project)
    if staging.exists() or not main.exists():
        return
    # A reader holds the file: no process writes it (or its WAL) while it is copied.
    with contextlib.closing(connect(project, read_only=True)):
        for suffix in ("", ".wal"):
            source = main.with_name(main.name + suffix)
            if source.exists():
                shutil.copyfile(source, staging.with_name(staging.name + suffix))


_SKIPPED_SCHEMAS = ("revetl_state", "information_schema", "pg_catalog")


def publish(project: Project, staging: Path) -> int:
    """Replace the warehouse's models by the staging copy's, in one transaction; returns the relations
    published. Tables are copied; views are recreated from their definitions, which name their tables
    without a catalog, so they read the warehouse's own."""
    from revetl.warehouse.connection import connect

    connection = connect(project)  # waits for syncs and plans to finish their short steps
    try:
        connection.execute(f"attach '{_sql_text(str(staging))}' as revetl_build (read_only)")
        relations = connection.execute(
            """select schema_name, table_name, 'table', null from duckdb_tables()
               where database_name = 'revetl_build' and not temporary
               union all
               select schema_name, view_name, 'view', sql from duckdb_views()
               where database_name = 'revetl_build' and not internal and not temporary""",
        ).fetchall()
        existing = {
            (schema, name): kind for schema, name, kind in connection.execute(
                """select schema_name, table_name, 'table' from duckdb_tables()
                   where database_name = current_database()
                   union all
                   select schema_name, view_name, 'view' from duckdb_views()
                   where database_name = current_database() and not internal"""
            ).fetchall()
        }
        published = [r for r in relations if r[0] not in _SKIPPED_SCHEMAS]
        with connection.transaction():
            for schema in sorted({r[0] for r in published}):
                connection.execute(f"create schema if not exists {_quote(schema)}")
            for schema, name, kind, sql in sorted(published, key=lambda r: r[2] == "view"):
                target = f"{_quote(schema)}.{_quote(name)}"
                was = existing.get((schema, name))
                if was is not None and was != kind:
                    connection.execute(f"drop {was} {target}")
                if kind == "table":
                    connection.execute(f"create or replace table {target} as select * from revetl_build.{target}")
                else:
                    connection.execute("create or replace view" + sql.strip()[len("create view"):])
        connection.execute("detach revetl_build")
    except QueryError as exc:
        reason = " ".join(str(exc.__cause__ or exc).split())  # the engine's whole message, on one line
        raise BuildError(f"the build passed but could not be published into the warehouse: {reason}") from exc
    finally:
        connection.close()
    return len(published)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_text(text: str) -> str:
    return text.replace("'", "''")
