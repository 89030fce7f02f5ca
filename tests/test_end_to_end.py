"""The whole product on each warehouse, from the same test code: ingest -> load -> build -> identity
equals the reference resolver -> audiences -> plan -> sync to the Braze emulator -> SIGKILL mid-sync ->
resume exactly. Every step is the real CLI in a subprocess, as a user runs it; only the reads that check
the results go through revetl's warehouse seam in this process.

DuckDB is the embedded default; PostgreSQL runs on the session's throwaway cluster (tests/conftest.py),
never skipped; Spark runs on a real standalone cluster (issue 16, item 6): a master and two workers, each a JVM
of its own on 127.0.0.1 (revetl.testing.spark.SparkCluster), with each command's driver in its own process, as
a user runs it with REVETL_SPARK_MASTER naming the cluster; its sync state in a DuckDB file. (A local session,
`local[2]`, is run through the CLI by tests/contract/test_stops.py and in-process by tests/test_spark.py.)
Every warehouse gets the same generated events, so their audiences and plans are compared with each other as
well.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from identity_reference import resolve
from wh import REPO

from revetl.config import load_project
from revetl.emulators import create
from revetl.emulators.run import EmulatorThread
from revetl.sync.apply import acknowledged_rows
from revetl.testing.spark import SparkCluster
from revetl.warehouse.connection import connect

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("end_to_end")]

TARGETS = ["duckdb", "postgres", "spark"]
AS_OF = "2026-11-01T00:00:00"
BRAZE_KEY = "e2e-braze-key-0123"
# Every known person with an email, so that the sync is several batches long (Braze takes 75 a call).
PEOPLE = """-- description: everyone the warehouse knows by user_id and email (end-to-end test)
-- key: user_id

select user_id, email, plan from {{ ref('profiles') }} where user_id is not null and email is not null
"""
PEOPLE_SYNC = {
    "audience": "e2e_people",
    "destination": {"type": "braze", "base_url": "${BRAZE_REST_ENDPOINT:-http://127.0.0.1:8091}", "api_key": "${BRAZE_API_KEY}",
                    "concurrency": 2},
    "identity": {"from": "user_id", "to": "external_id"},
    "fields": {"email": "email", "plan": "plan"},
    "membership": {"attribute": "in_e2e_people"},
}
GRAPH = "select identifier_type, identifier_value, profile_id from identity_graph"
CONFLICTS = "select identifier_type, identifier_value from identity_conflicts"
MEMBERS = "select user_id, email, plan from profiles where user_id is not null and email is not null"


@dataclass
class Pipeline:
    target: str
    root: Path
    env: dict[str, str]
    payloads: list[dict[str, Any]]
    read: dict[str, list[tuple]]  # GRAPH, CONFLICTS and MEMBERS, read once the build is done
    cluster: SparkCluster | None = None

    def revetl(self, *args: str, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
        process = subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(self.root), *args],
                                 env={**self.env, **(env or {})}, capture_output=True, text=True, timeout=900)
        if check:
            assert process.returncode == 0, f"revetl {' '.join(args)}:\n{process.stdout}\n{process.stderr}"
        return process

    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        with mock.patch.dict(os.environ, self.env):
            yield

    def rows(self, *queries: str) -> list[list[tuple]] | list[tuple]:
        """Queries of the models: the rows of each (of the one query, when only one is given). Spark's are run
        by a process of its own (one session for them all): this one must not start a session that would hold
        the metastore while the commands run."""
        if self.target == "spark":
            script = ("import json, sys; from revetl.config import load_project; "
                      "from revetl.warehouse.connection import connect; "
                      "c = connect(load_project(sys.argv[1]), read_only=True); "
                      "print(json.dumps([c.source.fetchall(sql) for sql in sys.argv[2:]], default=str))")
            done = subprocess.run([sys.executable, "-c", script, str(self.root), *queries], env=self.env,
                                  capture_output=True, text=True, timeout=600, check=True)
            found = [[tuple(row) for row in rows] for rows in json.loads(done.stdout.splitlines()[-1])]
        else:
            with self.environment(), contextlib.closing(connect(load_project(self.root), read_only=True)) as connection:
                found = [connection.source.fetchall(sql) for sql in queries]
        return found[0] if len(queries) == 1 else found

    def plan(self, sync: str) -> dict[str, Any]:
        """`revetl plan SYNC --json`, without the time it was made."""
        plan = json.loads(self.revetl("plan", sync, "--json").stdout)
        del plan["planned_at"]
        return plan

    def plans(self) -> dict[str, dict[str, Any]]:
        """`revetl plan --all --json` (one process, one Spark session), without the times they were made."""
        plans = json.loads(self.revetl("plan", "--all", "--json").stdout)
        for plan in plans.values():
            del plan["planned_at"]
        return plans

    def acknowledged(self, sync: str) -> set[str]:
        """Keys the destination acknowledged: in the state, or in a killed run's journal."""
        with self.environment():
            return {row[0] for row in acknowledged_rows(load_project(self.root), sync)}


def _project_copy(root: Path) -> None:
    root.mkdir(parents=True)
    for name in ("dbt_project.yml", "profiles.yml", "revetl.yml", "traits.yml"):
        shutil.copy(REPO / name, root / name)
    for name in ("models", "macros", "audiences", "syncs"):
        shutil.copytree(REPO / name, root / name)
    (root / "audiences" / "e2e_people.sql").write_text(PEOPLE)
    (root / "syncs" / "e2e_people.yml").write_text(json.dumps(PEOPLE_SYNC))


@pytest.fixture(scope="session")
def pipelines(tmp_path_factory: pytest.TempPathFactory, postgres_cluster) -> Iterator[Any]:
    """`pipelines(target)`: the project generated, ingested, loaded and built on `target` (once each per test
    process: session-scoped, as other tests may run between this module's on the same xdist worker); Spark's
    cluster runs until the session ends."""
    built: dict[str, Pipeline] = {}
    events = tmp_path_factory.mktemp("events") / "events.jsonl.gz"
    clusters = contextlib.ExitStack()

    def pipeline(target: str) -> Pipeline:
        if target in built:
            return built[target]
        base = tmp_path_factory.mktemp(target)
        _project_copy(base / "project")
        env = {**os.environ, "REVETL_TARGET": target, "REVETL_LANDING_DIR": str(base / "events"),
               "REVETL_WAREHOUSE": str(base / "warehouse.duckdb"), "REVETL_TARGET_DIR": str(base / "target"),
               "REVETL_WORK_DIR": str(base / "work"), "BRAZE_API_KEY": BRAZE_KEY, "COLUMNS": "200"}
        if target == "postgres":
            env.update(postgres_cluster.database(f"e2e_{len(built)}").env)
        cluster = None
        if target == "spark":
            cluster = clusters.enter_context(SparkCluster(base / "cluster", workers=2))
            env.update(REVETL_SPARK_DIR=str(base / "spark"), REVETL_SPARK_MASTER=cluster.url)
        step = Pipeline(target, base / "project", env, [], {}, cluster)
        if not events.exists():
            step.revetl("generate", "--users", "800", "--days", "60", "--seed", "11", "--end", AS_OF[:10],
                        "--jsonl", str(events))
        step.revetl("ingest", str(events))
        if target == "postgres":
            loaded = step.revetl("load").stdout
            assert "loaded" in loaded, loaded
        done = step.revetl("build", "--as-of", AS_OF).stdout
        assert "built " in done and "models and passed" in done, done
        step.read = dict(zip((GRAPH, CONFLICTS, MEMBERS), step.rows(GRAPH, CONFLICTS, MEMBERS)))
        with gzip.open(events, "rt", encoding="utf-8") as lines:
            step.payloads = [json.loads(line) for line in lines if line.strip()]
        built[target] = step
        return step

    with clusters:
        yield pipeline


@pytest.mark.parametrize("target", TARGETS)
def test_identity_equals_the_reference_resolver(pipelines, target):
    step = pipelines(target)
    arrival = sorted(step.payloads, key=lambda p: p.get("receivedAt") or "")
    expected_profiles, expected_conflicts = resolve(arrival)
    graph, conflicted = step.read[GRAPH], step.read[CONFLICTS]
    groups: dict[str, set] = {}
    for kind, value, profile_id in graph:
        groups.setdefault(profile_id, set()).add((kind, value))
    conflicts = set(conflicted)
    assert {frozenset(group) for group in groups.values()} == expected_profiles
    assert conflicts == expected_conflicts


def test_every_shipped_audience_and_plan_is_the_same_on_every_warehouse(pipelines):
    first, *others = [pipelines(target) for target in TARGETS]
    syncs = sorted(path.stem for path in (first.root / "syncs").glob("*.yml"))
    assert len(syncs) >= 5
    expected = first.plans()
    assert sorted(expected) == syncs
    for other in others:
        got = other.plans()
        for sync in syncs:
            assert expected[sync]["adds"] > 0, sync
            assert got[sync] == expected[sync], f"{sync}: {other.target} plans differently from {first.target}"


@pytest.mark.parametrize("target", TARGETS)
def test_a_sync_killed_mid_run_resumes_without_resending_and_ends_exact(pipelines, target):
    step = pipelines(target)
    assert step.revetl("audiences", "check").returncode == 0
    members = {user_id: (email, plan) for user_id, email, plan in step.read[MEMBERS]}
    assert len(members) > 4 * 75
    preview = step.revetl("audiences", "preview", "e2e_people", "--limit", "3").stdout
    assert f"{len(members):,} members as of " in preview and min(members) in preview, preview
    emulator = EmulatorThread(create("braze", {"api_key": BRAZE_KEY, "record_requests": 20_000}))
    url = emulator.start()
    try:
        env = {"BRAZE_REST_ENDPOINT": url}
        crashed = step.revetl("sync", "e2e_people", env={**env, "REVETL_FAILPOINT": "after_send:2"}, check=False)
        assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr
        seen = len(httpx.get(f"{url}/_emulator/requests", params={"limit": 20_000}).json()["requests"])
        acknowledged_before = step.acknowledged("e2e_people")
        assert 0 < len(acknowledged_before) < len(members)
        step.revetl("sync", "e2e_people", env=env)
        log = httpx.get(f"{url}/_emulator/requests", params={"limit": 20_000}).json()["requests"]
        users = httpx.get(f"{url}/_emulator/users").json()["users"]
    finally:
        emulator.stop()
    if step.cluster is not None:  # a driver killed mid-run takes no worker with it
        assert step.cluster.alive_workers() == 2
    resent = {obj["external_id"] for request in log[seen:] if request["path"] == "/users/track"
              for obj in request["body"].get("attributes", [])}
    assert not acknowledged_before & resent  # nothing acknowledged before the kill was sent again
    synced = {u["external_id"]: (u["attributes"].get("email"), u["attributes"].get("plan"))
              for u in users if u["attributes"].get("in_e2e_people") is True}
    assert synced == members
    assert step.acknowledged("e2e_people") == set(members)
    again = step.plan("e2e_people")
    assert (again["adds"], again["changes"], again["removes"]) == (0, 0, 0)
