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
