"""Audiences on any warehouse (revetl/audiences/portable.py): revetl's macros give the same values on DuckDB
and PostgreSQL, whether the audience is written for the target or translated to it; constructs that drift
between engines written raw are warnings with file and line; the sandbox holds on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from test_plan import server
from wh import audience_project, on_target, replace_table

from revetl.audiences.check import check_project
from revetl.audiences.compile import compile_audience, inspect_audience, load_audience
from revetl.audiences.portable import macros, transpile
from revetl.audiences.preview import preview_audience
from revetl.config import Project, SyncConfig
from revetl.errors import ConfigError, WarehouseError
from revetl.sync.plan import make_plan
from revetl.warehouse.base import Connection
from revetl.warehouse.embedded import DuckDBConnection
from revetl.warehouse.postgres import open_server

T = dt.datetime
# type -> [(text, what safe_cast gives on every engine)]
CASTS = {
    "timestamp": [
        ("2026-01-05T10:00:00.123Z", T(2026, 1, 5, 10, 0, 0, 123000)), ("2026-01-05", T(2026, 1, 5)),
        ("2026-01-05 10:00", T(2026, 1, 5, 10)), ("2026-01-05T10:00:00+02:00", T(2026, 1, 5, 8)),
        ("2026-01-05T10:00:00-0530", T(2026, 1, 5, 15, 30)), ("2026-01-05 10:00:00 UTC", T(2026, 1, 5, 10)),
        ("2024-02-29", T(2024, 2, 29)), ("2023-02-29", None), ("2026-02-30", None), ("2026-13-01", None),
        ("2026-01-05T25:00:00", None), ("0000-01-01", None), ("2026-01-05T10:00:00.1234567", None),
        ("now", None), ("Jan 5 2026", None), (" 2026-01-05", None), ("", None), (None, None),
    ],
    "date": [("2026-01-05T23:30:00-02:00", dt.date(2026, 1, 6)), ("1900-02-29", None), ("2000-02-29", dt.date(2000, 2, 29))],
    "integer": [("42", 42), ("-7", -7), ("+3", 3), ("999999999", 999999999), ("1000000000", None), ("1.5", None),
                ("1e3", None), ("0x10", None), ("1_000", None), ("", None)],
    "bigint": [("999999999999999999", 999999999999999999), ("9223372036854775807", None), ("12a", None)],
    "double": [("1.5", 1.5), ("-.5", -0.5), ("1e-3", 0.001), ("1e99", 1e99), ("1e400", None), ("nan", None),
               ("inf", None), ("1,5", None), ("9" * 101, None)],
    "boolean": [("true", True), ("F", False), ("yes", True), ("0", False), ("on", None), ("2", None)],
}


@pytest.fixture
def engines(tmp_path: Path, postgres_database) -> dict[str, Connection]:
    connections = {"duckdb": DuckDBConnection(duckdb.connect(str(tmp_path / "w.duckdb"))),
                   "postgres": open_server(server(postgres_database))}
    connections["duckdb"].execute("set TimeZone = 'UTC'")
    for connection in connections.values():
        connection.execute("create table inputs (n integer, v varchar)")
    yield connections
    for connection in connections.values():
        connection.close()


@pytest.mark.parametrize("kind", CASTS)
def test_safe_cast_gives_the_same_value_or_null_on_every_engine(engines, kind):
    cases = CASTS[kind]
    expected = [value for _, value in cases]
    marked = f"select n, {macros(None)['safe_cast']('v', kind)} as value from inputs"
    for name, connection in engines.items():
        connection.executemany("insert into inputs values (?, ?)", [(n, text) for n, (text, _) in enumerate(cases)])
        written = f"select n, {macros(name)['safe_cast']('v', kind)} as value from inputs"
        for source in ("duckdb", "postgres"):  # written for each engine, translated by sqlglot when needed
            sql = written if source == name else transpile(marked, source, name)
            found = [value for _, value in sorted(connection.fetchall(sql))]
            assert found == expected, (name, source)


def test_days_between_counts_calendar_days_on_every_engine(engines):
    pairs = [("2025-12-31 23:00", "2026-01-01 01:00", 1), ("2026-01-01 01:00", "2026-03-31 23:00", 89),
             ("2026-03-01 10:00", "2026-01-01 11:00", -59), ("2026-01-05 00:00", "2026-01-05 23:59", 0)]
    for name, connection in engines.items():
        for start, end, days in pairs:
            for kind in ("timestamp", "timestamptz", "date"):
                a, b = f"cast('{start}' as {kind})", f"cast('{end}' as {kind})"
                assert connection.scalar(f"select {macros(name)['days_between'](a, b)}") == days
                translated = transpile(f"select {macros(None)['days_between'](a, b)}", "duckdb", name)
                assert connection.scalar(translated) == days


HEADER = "-- description: Test audience.\n-- key: user_id\n"


def write(project: Project, name: str, body: str, header: str = HEADER) -> Path:
    path = project.audiences_dir / f"{name}.sql"
    path.write_text(header + body)
    return path


@pytest.fixture
def proj(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return audience_project(tmp_path, monkeypatch, {}, tables=("members", "build_info"))


def test_check_warns_where_a_drifting_construct_is_written_raw(proj):
    write(proj, "raw", (
        "select user_id,\n"                                                            # 3
        "       try_cast(created_at as timestamp) as signed_up_at,\n"                  # 4
        "       date_diff('day', seen_at, {{ as_of() }}) as days_inactive,\n"          # 5
        "       datediff('week', seen_at, {{ as_of() }}) as weeks_inactive\n"          # 6
        "from {{ ref('members') }}\n"
    ))
    write(proj, "portable", (
        "select user_id, {{ safe_cast('created_at', 'timestamp') }} as signed_up_at,\n"
        "       {{ days_between('seen_at', as_of()) }} as days_inactive\n"
        "from {{ ref('members') }}\n"
    ))
    write(proj, "pg", "select user_id, to_char(seen_at, 'Dy DD Mon') as seen\nfrom {{ ref('members') }}\n",
          header=HEADER + "-- dialect: postgres\n")

    found = [(p.path.stem, p.line, p.warning, p.message.split(";")[0]) for p in check_project(proj)]

    assert found == [
        ("pg", 4, True, "`to_char` formats are translated for other warehouses only in part (day and month names "
                        "are not)"),
        ("raw", 4, True, "`try_cast` becomes a plain CAST on PostgreSQL, where one bad value fails the whole audience"),
        ("raw", 5, True, "a difference in days counts calendar days on DuckDB and PostgreSQL but whole 24-hour "
                         "periods on Spark"),
        ("raw", 6, True, "a difference in weeks is rounded on PostgreSQL and truncated on DuckDB"),
    ]
    advice = [p.message.split("; ")[1] for p in check_project(proj) if p.path.stem == "raw"]
    assert advice[0] == "`{{ safe_cast('created_at', 'timestamp') }}` gives NULL on every warehouse"
    run = subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(proj.root), "audiences", "check"],
                         capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert run.returncode == 0, run.stdout + run.stderr  # warnings alone do not fail the check
    assert "audiences/raw.sql:4: warning: `try_cast` becomes a plain CAST" in run.stdout
    assert "4 warning(s)" in run.stdout


def test_a_macro_given_a_type_it_does_not_know_names_the_line(proj):
    path = write(proj, "typo", "select user_id,\n  {{ safe_cast('created_at', 'timestamps') }} as t\nfrom {{ ref('members') }}\n")
    with pytest.raises(ConfigError) as caught:
        compile_audience(proj, load_audience(proj, "typo"))
    assert str(caught.value).startswith(f"{path}, line 4: the Jinja fails: safe_cast() casts to timestamp, date, ")


MEMBERS = """select 'u' || i as user_id, case when i = 3 then 'not a date' else '2026-01-0' || i || 'T12:00:00Z' end
                    as created_at, cast('2026-01-0' || i || ' 08:00:00' as timestamp) as seen_at
             from generate_series(1, 5) as t(i)"""
AUDIENCE = ("select user_id, {{ safe_cast('created_at', 'timestamp') }} as signed_up_at,\n"
            "       {{ days_between('seen_at', as_of()) }} as days_inactive\n"
            "from {{ ref('members') }}\n")


@pytest.mark.parametrize("target", ["duckdb", "postgres"])
@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
def test_an_audience_runs_alike_on_either_warehouse_whichever_dialect_it_is_written_in(
        proj, request, monkeypatch, target, dialect):
    project = on_target(proj, target, request, monkeypatch)
    replace_table(project, "members", MEMBERS)
    replace_table(project, "build_info", "select cast('2026-01-09 00:00:00' as timestamp) as as_of")
    write(project, "signups", AUDIENCE, header=HEADER + f"-- dialect: {dialect}\n")

    preview = preview_audience(project, "signups", limit=10)

    assert [p for p in check_project(project) if not p.warning] == []
    assert preview.rows == [("u1", T(2026, 1, 1, 12), 8), ("u2", T(2026, 1, 2, 12), 7), ("u3", None, 6),
                            ("u4", T(2026, 1, 4, 12), 5), ("u5", T(2026, 1, 5, 12), 4)]


# A PostgreSQL audience reaching past its models: (body after the header, line, words of the problem)
PG_REFUSED = {
    "pg_read_file": ("select user_id,\n  pg_read_file('/etc/passwd') as f\nfrom {{ ref('members') }}\n", 5,
                     "`pg_read_file()` reads the engine's settings"),
    "current_setting": ("select user_id, current_setting('data_directory') as d\nfrom {{ ref('members') }}\n", 4,
                        "`current_setting()` reads the engine's settings"),
    "set_config": ("select user_id\nfrom {{ ref('members') }}\nwhere set_config('role', 'postgres', false) <> ''\n",
                   6, "`set_config()` is not a function an audience may call"),
    "dblink": ("select m.user_id\nfrom {{ ref('members') }} as m\n"
               "join dblink('dbname=x', 'select 1') as d on true\n", 6, "`dblink()`"),
    "lo_import": ("select user_id, lo_import('/etc/passwd') as o\nfrom {{ ref('members') }}\n", 4, "`lo_import()`"),
    "pg_sleep": ("select user_id\nfrom {{ ref('members') }}, pg_sleep(60)\n", 5, "`pg_sleep()`"),
    "query_to_xml": ("select user_id, query_to_xml('select 1', true, true, '') as x\nfrom {{ ref('members') }}\n", 4,
                     "`query_to_xml()`"),
    "catalog": ("select usename as user_id\nfrom pg_catalog.pg_shadow\n", 5, "`pg_catalog.pg_shadow` is not read through ref()"),
    "state": ("select key as user_id\nfrom revetl_state.acknowledged\n", 5, "`revetl_state.acknowledged` is not read through"),
    "select into": ("select user_id\ninto stolen\nfrom {{ ref('members') }}\n", 5, "`INTO` is not allowed"),
    "for update": ("select user_id\nfrom {{ ref('members') }}\nfor update\n", 6, "`FOR UPDATE`/`FOR SHARE` is not"),
}


@pytest.mark.parametrize("case", PG_REFUSED, ids=list(PG_REFUSED))
def test_the_sandbox_refuses_what_a_postgresql_audience_reaches_past_its_models(proj, request, monkeypatch, case):
    project = on_target(proj, "postgres", request, monkeypatch)
    replace_table(project, "members", MEMBERS)
    body, line, words = PG_REFUSED[case]
    path = write(project, "bad", body, header=HEADER + "-- dialect: postgres\n")

    problems = [p for p in check_project(project) if not p.warning]

    assert [(p.path, p.line) for p in problems if words in p.message] == [(path, line)], problems
    with pytest.raises(ConfigError, match=f"{path}, line"):
        preview_audience(project, "bad")


def test_postgresql_runs_analyst_sql_read_only_even_on_a_writable_connection(postgres_database):
    """The audience check keeps writing functions out; should one get past it, PostgreSQL refuses the write."""
    sync = SyncConfig.model_validate({"name": "s", "path": "syncs/s.yml", "audience": "a", "destination": {"type": "braze"},
                                      "identity": {"from": "user_id", "to": "external_id"}, "fields": {"n": "n"}})
    with open_server(server(postgres_database)) as connection:
        connection.execute("create sequence counter")
        with pytest.raises(WarehouseError, match="read-only transaction"):
            make_plan(connection, sync, "select 'u1' as user_id, nextval('counter') as n")
        assert connection.scalar("select last_value from counter") == 1 and connection.scalar(
            "select is_called from counter") is False


def test_the_probe_of_audiences_check_runs_on_the_chosen_warehouse(proj, request, monkeypatch):
    project = on_target(proj, "postgres", request, monkeypatch)
    replace_table(project, "members", MEMBERS)
    path = write(project, "typo", "select user_id\nfrom {{ ref('members') }}\nwhere seen_att is null\n")

    problems = check_project(project)

    assert [(p.path, p.line) for p in problems] == [(path, 5)]  # translated SQL: the line that names the column
    assert 'column "seen_att" does not exist' in problems[0].message
    assert inspect_audience(project, load_audience(project, "typo")).sql.startswith("SELECT user_id FROM \"public\".")
