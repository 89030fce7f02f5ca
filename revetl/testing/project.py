"""The small project the contract suite syncs from: one audience over one warehouse table.

No dbt run and no repository files: a `dbt_project.yml` and a `profiles.yml` pointing at a DuckDB file
in the test's directory, a placeholder model `contract_members` (a plain table the suite fills), and the
audience `contract` reading it. Also the helpers tests use to change the audience and read the state.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from revetl.config import Project, SyncConfig, load_project, load_sync
from revetl.sync.apply import acknowledged_rows
from revetl.testing.case import Case
from revetl.warehouse.connection import connect, warehouse_type

__all__ = ["AUDIENCE", "acknowledged", "contract_project", "expected", "people", "set_members", "write_sync"]

AUDIENCE = """-- description: people the contract suite syncs
-- key: user_id

select user_id, email, name, plan from {{ ref('contract_members') }}
"""
SYNC = "contract"
TABLE = "contract_members"


def contract_project(base: Path) -> Project:
    """A project under `base`: its warehouse is `base/warehouse.duckdb`, its root `base/project`."""
    root = base / "project"
    for folder in ("audiences", "syncs", "models"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "dbt_project.yml").write_text(yaml.safe_dump(
        {"name": "revetl_contract", "version": "1.0.0", "config-version": 2, "profile": "revetl_contract",
         "model-paths": ["models"]}, sort_keys=False))
    output = {"type": "duckdb", "path": str(base / "warehouse.duckdb"), "threads": 1, "settings": {"TimeZone": "UTC"}}
    (root / "profiles.yml").write_text(yaml.safe_dump(
        {"revetl_contract": {"target": "dev", "outputs": {"dev": output}}}, sort_keys=False))
    (root / "models" / f"{TABLE}.sql").write_text(f"-- placeholder: the suite creates table {TABLE} itself\n")
    (root / "audiences" / f"{SYNC}.sql").write_text(AUDIENCE)
    return load_project(root)


def people(n: int, start: int = 0, plan: str = "pro") -> list[tuple[str, str, str, str]]:
    """`n` audience rows (user_id, email, name, plan), keys `user-0000`, ... from `start`."""
    return [(f"user-{i:04d}", f"person{i}@example.com", f"Person {i}", plan) for i in range(start, start + n)]


def set_members(project: Project, rows: list[tuple[str, str, str, str]]) -> None:
    """Make `rows` the audience's whole result."""
    if warehouse_type(project) == "spark":
        from revetl.testing.spark import write_table

        write_table(project, TABLE, "user_id string, email string, name string, plan string", rows)
        return
    import pyarrow as pa

    columns = ("user_id", "email", "name", "plan")
    table = pa.table({name: pa.array([row[i] for row in rows], pa.string()) for i, name in enumerate(columns)})
    with contextlib.closing(connect(project)) as connection:
        connection.execute(f"drop table if exists {TABLE}")
        connection.ingest(TABLE, table, temporary=False)  # Arrow in bulk: 6,000 rows inserted one by one took 3-6 s


def write_sync(project: Project, case: Case, url: str, monkeypatch: pytest.MonkeyPatch,
               env: dict[str, str] | None = None, **destination: Any) -> SyncConfig:
    """Write `syncs/contract.yml` for `case` against the emulator at `url` (`destination` overrides keys of
    its block), with the case's credentials (or `env`) in the environment; the loaded sync."""
    for name, value in (env or case.env).items():
        monkeypatch.setenv(name, value)
    raw = {
        "audience": SYNC,
        "destination": {**case.destination(url), **destination},
        "identity": {"from": "user_id", "to": case.identity_to},
        "fields": case.fields,
        "membership": case.membership,
    }
    (project.syncs_dir / f"{SYNC}.yml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_sync(project, SYNC)


def expected(rows: list[tuple[str, str, str, str]], case: Case) -> dict[str, dict[str, Any]]:
    """What `case.members` should read once `rows` are synced: key -> {destination field: value}."""
    columns = {"email": 1, "name": 2, "plan": 3}
    return {r[0]: {dest: r[columns[col]] for col, dest in case.fields.items()} for r in rows}


def acknowledged(project: Project) -> list[str]:
    """Keys the destination acknowledged: folded into the state, or still in a killed run's journal."""
    return [row[0] for row in acknowledged_rows(project, SYNC)]
