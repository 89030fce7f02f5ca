"""The dbt models on Apache Spark (issue 16, items 1-3): `--target spark` builds the shipped project in a local
Spark session reading the landed Parquet files in place, and every public model has the same rows as on
DuckDB, for generated events and for the identity cases of the reference resolver (blank and blocked values,
values that are not JSON strings, code point order, chains, conflicts, a message landed twice).

One Spark session serves every test of this module (its JVM takes 10-40 s to start; the module is one xdist
group, so one worker runs them all): the tests share its directory (metastore and tables, REVETL_SPARK_DIR)
and each builds into a schema of its own."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from engines import JSON_COLUMNS, PUBLIC_MODELS, _normal, _sorted, judge_against_the_shipped_plan, rows
from identity_reference import resolve, wire
from test_dbt_postgres import END, AS_OF, _identity_cases, _landed_payloads
from test_portable import CASTS
from wh import build, empty_project, land, redirect

from revetl.audiences.portable import macros, transpile
from revetl.config import Project
from revetl.landing.generate import GenerateOptions, generate_events

UTC = dt.timezone.utc
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("spark")]


@pytest.fixture(scope="session")
def spark_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    yield tmp_path_factory.mktemp("spark")
    from revetl.warehouse.spark import stop_session

    stop_session()


def on_duckdb_and_spark(base: Path, monkeypatch: pytest.MonkeyPatch, spark_home: Path,
                        copy: bool = False) -> tuple[Project, Project]:
    """(the shipped project on DuckDB, the same on Spark `local[2]` in a schema of its own), writing into `base`;
    `copy`: a copy of the project the test may change."""
    monkeypatch.setenv("REVETL_SPARK_DIR", str(spark_home))
    monkeypatch.setenv("REVETL_SPARK_MASTER", "local[2]")
    monkeypatch.setenv("REVETL_SPARK_SCHEMA", f"t_{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("REVETL_WORK_DIR", str(base / "work"))
    project = empty_project(base, monkeypatch) if copy else redirect(base, monkeypatch)
    return dataclasses.replace(project, target="duckdb"), dataclasses.replace(project, target="spark")


def spark_rows(project: Project, model: str) -> tuple[list[str], list[tuple]]:
    """(column names, rows sorted) of one model in the Spark schema, normalized as engines.rows does."""
    import os

    from revetl.warehouse.connection import spark_session

    table = spark_session(project).sql(f"select * from `{os.environ['REVETL_SPARK_SCHEMA']}`.`{model}`")._collect_as_arrow()
    columns = list(table[0].schema.names) if table else []
    normal = []
    for batch in table:
        for row in batch.to_pylist():
            values = [_normal(row[name]) for name in columns]
            for index, name in enumerate(columns):
                if (model, name) in JSON_COLUMNS:  # as engines.rows: NULL becomes JSON null too
                    parsed = None if values[index] is None else json.loads(values[index])
                    values[index] = json.dumps(parsed, sort_keys=True)
            normal.append(tuple(values))
    return columns, _sorted(normal)


def assert_same_rows(duck: Project, spark: Project,
                     models: list[str] = PUBLIC_MODELS) -> dict[str, tuple[list[str], list[tuple]]]:
    expected = {}
    for model in models:
        expected[model] = rows(duck, None, model)
        got = spark_rows(spark, model)
        if expected[model][1]:  # Spark's Arrow batches are empty for an empty table: no column names
            assert got[0] == expected[model][0], model
        assert got[1] == expected[model][1], model
    assert [row[:1] for row in spark_rows(spark, "build_info")[1]] == [row[:1] for row in rows(duck, None, "build_info")[1]]
    return expected


def test_every_public_model_has_duckdbs_rows_and_identity_is_the_reference_resolvers(tmp_path, monkeypatch,
                                                                                        spark_home):
    """One build on each engine (a Spark build costs minutes here) of generated events, the identity cases of
    the reference resolver beside them, and events the shipped tracking plan flags or blocks."""
    duck, spark = on_duckdb_and_spark(tmp_path, monkeypatch, spark_home)
    generate_events(duck, GenerateOptions(users=150, days=20, seed=11, end=END))
    first, later = wire("identify", "d-1", anonymousId="d_a1", userId="d_u1"), wire("identify", "d-1", anonymousId="d_a2")
    land(duck, _identity_cases() + [later], received_at=dt.datetime(2026, 1, 2, tzinfo=UTC))
    land(duck, [first], received_at=dt.datetime(2026, 1, 1, tzinfo=UTC))
    for anonymous_id in ("t_a1", "t_a2"):  # two copies received at once in two files: the first file by name wins
        land(duck, [wire("identify", "t-1", anonymousId=anonymous_id)], received_at=dt.datetime(2026, 1, 3, tzinfo=UTC))
    blocked = judge_against_the_shipped_plan(duck)

    duck_result = build(duck, as_of=AS_OF)
    spark_result = build(spark, as_of=AS_OF)

    assert {(node.kind, node.name) for node in spark_result.nodes} == {(n.kind, n.name) for n in duck_result.nodes}
    expected = assert_same_rows(duck, spark, PUBLIC_MODELS + ["quarantined_events", "violations"])
    assert len(expected["events"][1]) > 3_000 and len(expected["profiles"][1]) > 150
    assert len(expected["quarantined_events"][1]) == blocked > 0
    assert {row[expected["violations"][0].index("blocked")] for row in expected["violations"][1]} == {True, False}
    columns, graph = expected["identity_graph"]
    kind, value, profile = (columns.index(name) for name in ("identifier_type", "identifier_value", "profile_id"))
    groups: dict[str, set] = {}
    for row in graph:
        groups.setdefault(row[profile], set()).add((row[kind], row[value]))
    columns, found = expected["identity_conflicts"]
    conflicts = {(row[columns.index("identifier_type")], row[columns.index("identifier_value")]) for row in found}
    assert ({frozenset(group) for group in groups.values()}, conflicts) == resolve(_landed_payloads(duck.landing_dir))


def test_a_failed_model_keeps_its_previous_table_and_those_downstream_keep_theirs(tmp_path, monkeypatch, spark_home):
    _, spark = on_duckdb_and_spark(tmp_path, monkeypatch, spark_home, copy=True)
    land(spark, [wire("identify", f"f-{i}", userId=f"u{i}", traits={"email": f"u{i}@x.com"},
                      timestamp="2026-02-20T12:00:00Z") for i in range(5)],  # in the 30 days before AS_OF
         received_at=dt.datetime(2026, 2, 20, 12, tzinfo=UTC))
    build(spark, select="@trait_active_days", as_of=AS_OF)  # the model, those downstream, what they read
    before = {model: spark_rows(spark, model) for model in ("trait_active_days", "profile_traits", "build_info")}
    assert len(before["trait_active_days"][1]) == 5
    model = spark.root / "models" / "traits" / "custom" / "trait_active_days.sql"
    model.write_text("select profile_id, no_such_column as active_days_30d from {{ ref('profiled_events') }}\n")

    from revetl.warehouse.dbt import build_project

    result = build_project(spark, select="trait_active_days+", as_of=AS_OF)

    assert not result.ok and [node.name for node in result.failures] == ["trait_active_days"]
    assert {node.name for node in result.skipped} >= {"profile_traits", "build_info"}
    assert {model: spark_rows(spark, model) for model in before} == before


@pytest.fixture
def spark_warehouse(tmp_path, monkeypatch, spark_home):
    """The Spark session as the seam's read connection (the state file's `source`)."""
    from revetl.warehouse.connection import connect

    _, spark = on_duckdb_and_spark(tmp_path, monkeypatch, spark_home)
    with connect(spark) as state:
        yield state.source


def _duckdb_literal(text: str | None) -> str:
    return "cast(null as varchar)" if text is None else "'" + text.replace("'", "''") + "'"


@pytest.mark.parametrize("kind", CASTS)
def test_safe_cast_translated_to_spark_gives_duckdbs_values(spark_warehouse, kind):
    """An audience reaches Spark translated from DuckDB's dialect: safe_cast reads each text as DuckDB does."""
    cases = CASTS[kind]
    rows = ", ".join(f"({n}, {_duckdb_literal(text)})" for n, (text, _) in enumerate(cases))
    marked = f"select n, {macros(None)['safe_cast']('v', kind)} as value from (values {rows}) as inputs(n, v)"
    found = [value for _, value in sorted(spark_warehouse.fetchall(transpile(marked, "duckdb", "spark")))]
    assert found == [value for _, value in cases]


def test_days_between_translated_to_spark_counts_calendar_days(spark_warehouse):
    pairs = [("2025-12-31 23:00", "2026-01-01 01:00", 1), ("2026-01-01 01:00", "2026-03-31 23:00", 89),
             ("2026-03-01 10:00", "2026-01-01 11:00", -59), ("2026-01-05 00:00", "2026-01-05 23:59", 0)]
    for start, end, days in pairs:
        for kind in ("timestamp", "timestamptz", "date"):
            a, b = f"cast('{start}' as {kind})", f"cast('{end}' as {kind})"
            assert spark_warehouse.scalar(transpile(f"select {macros(None)['days_between'](a, b)}", "duckdb", "spark")) == days
