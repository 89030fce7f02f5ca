"""revetl on a real Spark cluster (issue 16, item 6): a standalone master and two workers, each a JVM of its own
on 127.0.0.1 started from pyspark's launcher, as separate processes. Through the real CLI, as a user runs it with
REVETL_SPARK_MASTER naming the cluster: build -> plan -> audiences preview -> sync to the Braze emulator ->
plan again (nothing left), with the plan equal to DuckDB's for the same events (`audiences check` on Spark:
test_end_to_end)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import httpx
import pytest
from test_end_to_end import BRAZE_KEY, _project_copy

from revetl.emulators import create
from revetl.emulators.run import EmulatorThread
from revetl.testing.spark import SparkCluster

pytestmark = pytest.mark.slow

AS_OF = "2026-11-01T00:00:00"


def _revetl(root: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(root), *args], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"revetl {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _plan(root: Path, env: dict[str, str], sync: str) -> dict:
    plan = json.loads(_revetl(root, env, "plan", sync, "--json"))
    del plan["planned_at"]
    return plan


def test_build_plan_and_sync_on_a_standalone_cluster_equal_duckdb(tmp_path):
    root = tmp_path / "project"
    _project_copy(root)
    common = {**os.environ, "REVETL_LANDING_DIR": str(tmp_path / "events"), "BRAZE_API_KEY": BRAZE_KEY,
              "COLUMNS": "200"}
    duck = {**common, "REVETL_TARGET": "duckdb", "REVETL_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
            "REVETL_TARGET_DIR": str(tmp_path / "target-duckdb"), "REVETL_WORK_DIR": str(tmp_path / "work-duckdb")}
    _revetl(root, duck, "generate", "--users", "200", "--days", "30", "--seed", "5", "--end", AS_OF[:10])
    _revetl(root, duck, "build", "--as-of", AS_OF)
    expected = _plan(root, duck, "e2e_people")
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as warehouse:
        members = {row[0] for row in warehouse.execute(
            "select user_id from profiles where user_id is not null and email is not null").fetchall()}
    assert expected["adds"] == len(members) > 75  # more than one Braze request

    with SparkCluster(tmp_path / "cluster", workers=2) as cluster:
        spark = {**common, "REVETL_TARGET": "spark", "REVETL_SPARK_MASTER": cluster.url,
                 "REVETL_SPARK_DIR": str(tmp_path / "spark"), "REVETL_TARGET_DIR": str(tmp_path / "target-spark"),
                 "REVETL_WORK_DIR": str(tmp_path / "work-spark")}
        built = _revetl(root, spark, "build", "--as-of", AS_OF)
        assert "built " in built and "models and passed" in built, built
        assert _plan(root, spark, "e2e_people") == expected
        preview = _revetl(root, spark, "audiences", "preview", "e2e_people", "--limit", "3")
        assert f"{len(members):,} members as of " in preview and min(members) in preview, preview
        assert cluster.alive_workers() == 2

        emulator = EmulatorThread(create("braze", {"api_key": BRAZE_KEY}))
        url = emulator.start()
        try:
            _revetl(root, {**spark, "BRAZE_REST_ENDPOINT": url}, "sync", "e2e_people")
            users = httpx.get(f"{url}/_emulator/users").json()["users"]
        finally:
            emulator.stop()
        again = _plan(root, spark, "e2e_people")

    synced = {user["external_id"] for user in users if user["attributes"].get("in_e2e_people") is True}
    assert synced == members
    assert (again["adds"], again["changes"], again["removes"]) == (0, 0, 0)
