"""Helpers for tests that land events and build the real dbt models (imported by name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from revetl.config import Project, load_project

REPO = Path(__file__).resolve().parents[1]


def redirect(base: Path, monkeypatch: pytest.MonkeyPatch, root: Path = REPO) -> Project:
    """The project at `root`, with every path it writes redirected into `base`.

    Subprocesses started by a test inherit the same redirection through the environment.
    """
    monkeypatch.setenv("REVETL_LANDING_DIR", str(base / "events"))
    monkeypatch.setenv("REVETL_WAREHOUSE", str(base / "warehouse.duckdb"))
    monkeypatch.setenv("REVETL_TARGET_DIR", str(base / "target"))
    monkeypatch.setenv("REVETL_COLLECTOR_DIR", str(base / "collector"))
    return load_project(root)


def empty_project(base: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A copy of the repository's project with empty audiences/ and syncs/ and no warehouse yet,
    redirected into `base`."""
    import shutil

    root = base / "project"
    root.mkdir()
    for name in ("dbt_project.yml", "profiles.yml", "revetl.yml", "traits.yml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "models", root / "models")
    shutil.copytree(REPO / "macros", root / "macros")
    (root / "audiences").mkdir()
    (root / "syncs").mkdir()
    return redirect(base, monkeypatch, root)


def audience_project(
    base: Path, monkeypatch: pytest.MonkeyPatch, audiences: dict[str, str], tables: tuple[str, ...] = ()
) -> Project:
    """A minimal project redirected into `base`: the repo's dbt settings, the given audience files
    (name -> text) and an empty syncs/.

    An audience reads only what `ref()` renders, so the plain tables a test creates itself in the
    warehouse's main schema (`create table members ...`) are named in `tables`: each gets a
    placeholder model file `models/NAME.sql` (never built), and the audiences read it as
    `{{ ref('NAME') }}`."""
    root = base / "project"
    (root / "audiences").mkdir(parents=True)
    (root / "syncs").mkdir()
    (root / "models").mkdir()
    for name in ("dbt_project.yml", "profiles.yml"):
        (root / name).write_text((REPO / name).read_text())
    for name in tables:
        (root / "models" / f"{name}.sql").write_text(f"-- placeholder: the test creates table {name} itself\n")
    for name, text in audiences.items():
        (root / "audiences" / f"{name}.sql").write_text(text)
    return redirect(base, monkeypatch, root=root)


TARGETS = ("duckdb", "postgres")  # the warehouses tests run on: `@pytest.fixture(params=TARGETS)`


def on_target(project: Project, target: str, request: pytest.FixtureRequest,
              monkeypatch: pytest.MonkeyPatch) -> Project:
    """`project` on the warehouse `target`: on `postgres`, a new database of the test cluster (its PG*
    variables set); on `spark`, a local session with its warehouse and metastore in a directory of the test's;
    revetl's work files in a directory of the test's, and REVETL_TARGET set so that the commands a test runs
    in subprocesses reach the same warehouse."""
    if target == "duckdb":
        return project
    if target == "spark":
        monkeypatch.setenv("REVETL_SPARK_DIR", str(project.root.parent / "spark"))
        monkeypatch.setenv("REVETL_SPARK_MASTER", "local[2]")
    else:
        request.getfixturevalue("postgres_database")
    work = project.root.parent / "work"
    work.mkdir(exist_ok=True)
    monkeypatch.setenv("REVETL_WORK_DIR", str(work))
    monkeypatch.setenv("REVETL_TARGET", target)
    return load_project(project.root, target)


def replace_table(project: Project, name: str, query: str, parameters: list | None = None) -> None:
    """Make `name` a table of `query`'s rows in the project's warehouse (SQL both engines read alike)."""
    from revetl.warehouse.connection import connect

    with connect(project) as connection:
        connection.execute(f"drop table if exists {name}")
        connection.execute(f"create table {name} as {query}", parameters)


def land(project: Project, payloads: list[dict], received_at=None) -> None:
    """Normalize wire payloads and land them as one batch (received now unless given)."""
    import datetime as dt

    from revetl.landing.events import normalize
    from revetl.landing.parquet import write_rows

    when = received_at or dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)
    write_rows(project.landing_dir, [normalize(p, when) for p in payloads])


def build(project: Project, select: str | None = None, **kwargs):
    """`revetl build` in-process; fails the test with dbt's messages if anything failed."""
    from revetl.warehouse.dbt import build_project

    result = build_project(project, select=select, **kwargs)
    assert result.ok, [(n.name, n.message) for n in result.failures] or result.error
    return result


def query(project: Project, sql: str) -> list[tuple]:
    """Run one query against the project's warehouse."""
    from revetl.warehouse.connection import connect

    connection = connect(project)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def partition(project: Project) -> tuple[set[frozenset], set[tuple[str, str]]]:
    """(profiles as sets of (type, value), conflicts) as the warehouse has them."""
    groups: dict[str, set] = {}
    for kind, value, profile_id in query(
        project, "select identifier_type, identifier_value, profile_id from identity_graph"
    ):
        groups.setdefault(profile_id, set()).add((kind, value))
    conflicts = set(query(project, "select identifier_type, identifier_value from identity_conflicts"))
    return {frozenset(g) for g in groups.values()}, conflicts
