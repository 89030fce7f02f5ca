"""One project built on DuckDB and on PostgreSQL, and the rows of its public models read from each,
normalized so that equal data compares equal (imported by name, like wh)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import adbc_driver_postgresql.dbapi as adbc
import pytest
from pg_landing import load_landed
from wh import REPO, redirect

from revetl.config import Project
from revetl.testing.postgres import PostgresCluster, PostgresDatabase

# The public models (DESIGN 3, models/schema.yml) and the free-SQL trait model the shipped project has.
PUBLIC_MODELS = ["events", "identity_graph", "identity_conflicts", "profiles", "profile_traits", "profile_events",
                 "profiled_events", "trait_active_days"]
JSON_COLUMNS = {("profiles", "traits")}  # built by each engine's JSON functions: key order and spacing differ


def on_both(base: Path, monkeypatch: pytest.MonkeyPatch, database: PostgresDatabase,
            root: Path = REPO) -> tuple[Project, Project]:
    """(the project on DuckDB, the same project on PostgreSQL `database`), writing only into `base`."""
    for key, value in database.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REVETL_WORK_DIR", str(base / "work"))
    project = redirect(base, monkeypatch, root)
    return dataclasses.replace(project, target="duckdb"), dataclasses.replace(project, target="postgres")


def icu_database(cluster: PostgresCluster, name: str) -> PostgresDatabase:
    """A new database whose default collation is ICU's en-US, where `a-b` sorts between `ab` and `a_c`:
    text the models order by must compare by code point there too."""
    cluster.sql(f"create database \"{name}\" template template0 encoding 'UTF8' locale_provider icu "
                "icu_locale 'en-US'")
    return PostgresDatabase(cluster.host, cluster.port, cluster.user, cluster.password, name)


def load(project: Project, database: PostgresDatabase) -> int:
    """What `revetl load` does for the tests: the landed files into landing.events."""
    return load_landed(project.landing_dir, database.uri)


def _normal(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if isinstance(value, float):
        return float(f"{value:.12g}")  # sums of decimals become doubles: equal to 12 digits, whatever the engine
    if isinstance(value, (list, tuple)):
        return tuple(_normal(item) for item in value)
    return value


def _sorted(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=lambda row: tuple((item is None, repr(item)) for item in row))


def rows(project: Project, database: PostgresDatabase | None, model: str) -> tuple[list[str], list[tuple]]:
    """(column names, rows sorted) of one relation: from DuckDB's file, or from `database`."""
    if database is None:
        from revetl.warehouse.connection import connect

        with connect(project, read_only=True) as connection:
            result = connection.execute(f"select * from {model}")
            columns = result.columns
            found = result.fetchall()
    else:
        with adbc.connect(database.uri) as connection, connection.cursor() as cursor:
            cursor.execute(f"select * from {model}")
            found = cursor.fetchall()
            columns = [column[0] for column in cursor.description]
    parsed = [index for index, name in enumerate(columns) if (model, name) in JSON_COLUMNS]
    normal = []
    for row in found:
        values = [_normal(value) for value in row]
        for index in parsed:
            values[index] = None if values[index] is None else json.loads(values[index])
            values[index] = json.dumps(values[index], sort_keys=True)
        normal.append(tuple(values))
    return columns, _sorted(normal)


def public_rows(project: Project, database: PostgresDatabase | None = None) -> dict[str, tuple[list[str], list[tuple]]]:
    """Every public model's columns and rows, and build_info's `as_of` (its `built_at` is the clock's)."""
    found = {model: rows(project, database, model) for model in PUBLIC_MODELS}
    columns, info = rows(project, database, "build_info")
    found["build_info"] = (columns, [row[:1] for row in info])
    return found


def judge_against_the_shipped_plan(project: Project) -> int:
    """Events of the `app` source judged by the shipped tracking plan, as `revetl ingest --source app` does:
    the flagged ones landed with their violations, the blocked ones written to the quarantine; how many
    were blocked."""
    from revetl.governance import project_gate
    from revetl.governance.gate import BLOCKED
    from revetl.governance.quarantine import quarantine_rows
    from revetl.landing.events import normalize
    from revetl.landing.parquet import write_rows

    from identity_reference import wire

    gate = project_gate(project)
    payloads = [
        wire("track", "q-1", userId="q_u1", event="Report Genrated", properties={"report_type": "funnel"}),
        wire("track", "q-2", userId="q_u2", event="Order Completed", properties={"revenue": "12.50"}),
        wire("track", "q-3", userId="q_u1", event="Logged In", properties={"method": "carrier pigeon"}),
        wire("track", "q-4", userId="q_u3", event="Signed Up", properties={"method": "email"}),
    ]
    landed, quarantined = [], []
    for payload in payloads:
        row = normalize(payload, dt.datetime(2026, 1, 3, 9, tzinfo=dt.timezone.utc))
        (quarantined if gate.judge(row, "app") == BLOCKED else landed).append(row)
    write_rows(project.landing_dir, landed)
    quarantine_rows(project.landing_dir, quarantined, prefix="test")
    return len(quarantined)


def pg_query(database: PostgresDatabase, sql: str) -> list[tuple]:
    with adbc.connect(database.uri) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()
