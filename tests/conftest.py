"""Shared fixtures: every test gets its own landing directory, warehouse file and dbt target dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from wh import redirect

from revetl.config import Project


@pytest.fixture(scope="session", autouse=True)
def sql_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The suite keeps rendered SQL (revetl/warehouse/rendered.py) in a store of its own, shared by the
    processes it starts, not in the user's cache."""
    os.environ["REVETL_CACHE_DIR"] = str(tmp_path_factory.mktemp("sql-store"))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The repository's dbt project, writing only into tmp_path."""
    return redirect(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def module_project(tmp_path_factory: pytest.TempPathFactory):
    """Like `project`, shared by a module's tests (one dbt build for many assertions)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield redirect(tmp_path_factory.mktemp("project"), monkeypatch)


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL cluster for this test process (initdb + pg_ctl on a free loopback port).
    Never skipped: without the server binaries it fails, saying what to install (.ci/run installs them)."""
    from revetl.testing.postgres import PostgresCluster

    with PostgresCluster.start() as cluster:
        yield cluster


@pytest.fixture
def postgres_database(postgres_cluster, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A new empty database in the session's cluster, its libpq variables (PG*) set for the test."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:8]
    database = postgres_cluster.database(name)
    for key, value in database.env.items():
        monkeypatch.setenv(key, value)
    return database


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`--dist loadgroup` (make test) sends the tests of one `xdist_group` to one worker: pytest-xdist appends
    `@GROUP` to their node ids by setting `item._nodeid`, which pytest 9 no longer reads (it keeps the id in
    `item._id`). Without this every group was split across the workers, and each worker built a group's
    session fixtures again (the end-to-end pipelines on all three warehouses, test_spark's Spark session).
    Does nothing when the id already has the suffix (an xdist that sets it itself) or without loadgroup."""
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:  # a pytest before 9, whose `_nodeid` xdist sets: the groups already work
        return

    for item in items:
        names = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                        for mark in item.iter_markers("xdist_group")})
        if names and item.nodeid.rfind("@") <= item.nodeid.rfind("]"):
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")
