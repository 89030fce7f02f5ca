"""The warehouse seam: commands wait their turn for the embedded file, and analyst SQL is sandboxed."""

from __future__ import annotations

import subprocess
import sys
import time

import duckdb
import pytest
from wh import audience_project

from revetl.errors import QueryError, WarehouseError
from revetl.warehouse.connection import connect

HOLD = """
import duckdb, sys, time
c = duckdb.connect(sys.argv[1])
c.execute("create table if not exists t as select 42 as answer")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    return audience_project(tmp_path, monkeypatch, {})


def hold(project, seconds: float) -> subprocess.Popen:
    """Another process holding the warehouse file read-write for `seconds`."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(project.root.parent / "warehouse.duckdb"), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
    return holder


def test_a_command_waits_for_the_warehouse_another_process_holds(project, capfd):
    holder = hold(project, 1.5)
    try:
        started = time.monotonic()
        connection = connect(project, read_only=True, wait=30)
        waited = time.monotonic() - started
        assert connection.execute("select answer from t").fetchall() == [(42,)]
        connection.close()
    finally:
        holder.wait()
    assert waited > 0.5  # it did wait for the holder, and then got in
    assert f"process {holder.pid} is using it" in capfd.readouterr().err


def test_waiting_gives_up_with_one_sentence_naming_the_holder(project):
    holder = hold(project, 30)
    try:
        with pytest.raises(WarehouseError) as caught:
            connect(project, wait=0.3)
    finally:
        holder.kill()
        holder.wait()
    message = str(caught.value)
    assert f"is still in use by process {holder.pid} after 0.3 s" in message and "REVETL_LOCK_WAIT" in message
    assert "\n" not in message


def test_a_sandboxed_connection_reaches_no_file_and_changes_no_setting(project, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    connection = connect(project, sandbox=True)
    try:
        for sql in (f"select * from read_text('{secret}')", f"select * from '{secret}'",
                    f"attach '{tmp_path / 'other.duckdb'}' as other", f"copy (select 1) to '{tmp_path / 'out.csv'}'",
                    "install spatial", "set memory_limit = '10GB'", "set enable_external_access = true"):
            with pytest.raises(QueryError) as caught:
                connection.execute(sql)
            assert isinstance(caught.value.__cause__, duckdb.Error)  # DuckDB itself refused it
        assert connection.execute("select 1 + 1").fetchall() == [(2,)]  # the warehouse itself still works
    finally:
        connection.close()
    assert not (tmp_path / "out.csv").exists()


def test_an_unknown_target_is_one_sentence_naming_the_targets_there_are(project):
    for args, env in ((["--target", "snowflake"], {}), ([], {"REVETL_TARGET": "snowflake"})):
        process = subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(project.root), *args,
                                  "audiences", "list"], capture_output=True, text=True,
                                 env={**__import__("os").environ, **env})
        assert process.returncode == 1
        assert "has no target 'snowflake' (its targets: duckdb, postgres, spark)" in process.stderr + process.stdout
        assert "Traceback" not in process.stderr


def test_each_target_has_its_own_dbt_target_directory(project, monkeypatch):
    from revetl.config import load_project
    from revetl.warehouse.connection import dbt_target_path, warehouse_type

    assert dbt_target_path(project) == project.target_dir / "duckdb"
    postgres = load_project(project.root, "postgres")
    assert (dbt_target_path(postgres), warehouse_type(postgres)) == (project.target_dir / "postgres", "postgres")
    monkeypatch.setenv("REVETL_TARGET", "postgres")
    assert load_project(project.root).target == "postgres"


def test_a_spark_connect_master_is_refused_with_one_sentence(tmp_path, monkeypatch):
    """Spark Connect (`sc://`) has no driver in revetl's process, which dbt-spark's session method needs: the
    command says so before starting anything, and names the masters that work."""
    import os

    audience = "-- description: people\n-- key: user_id\n\nselect 'u1' as user_id\n"
    project = audience_project(tmp_path, monkeypatch, {"people": audience})
    env = {**os.environ, "REVETL_SPARK_MASTER": "sc://spark.example.com:15002", "REVETL_SPARK_DIR": str(tmp_path),
           "REVETL_WORK_DIR": str(tmp_path / "work"), "COLUMNS": "200"}
    process = subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(project.root), "--target", "spark",
                              "audiences", "preview", "people"], capture_output=True, text=True, env=env, timeout=120)
    assert process.returncode == 1, process.stdout + process.stderr
    errors = [line for line in process.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'sc://spark.example.com:15002' is a Spark Connect server" in errors[0], process.stderr
    assert "name a spark://, yarn or k8s:// master" in errors[0]
    assert "Traceback" not in process.stderr
