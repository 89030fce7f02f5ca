"""Landed Parquet into PostgreSQL exactly once per file (revetl/warehouse/load.py, `revetl load`)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from wh import audience_project, land

from revetl.config import load_project
from revetl.landing.events import LANDING_SCHEMA
from revetl.warehouse.connection import connect
from revetl.warehouse.load import load_landed

UTC = dt.timezone.utc
COLUMNS = [("message_id", "text"), ("type", "text"), ("event", "text"), ("anonymous_id", "text"),
           ("user_id", "text"), ("group_id", "text"), ("previous_id", "text"),
           ("timestamp", "timestamp with time zone"), ("received_at", "timestamp with time zone"),
           ("properties", "text"), ("traits", "text"), ("context", "text"), ("received_date", "date"),
           ("filename", "text"), ("file_row_number", "bigint")]


@pytest.fixture
def project(tmp_path, monkeypatch, postgres_database):
    audience_project(tmp_path, monkeypatch, {})
    monkeypatch.setenv("REVETL_WORK_DIR", str(tmp_path / "work"))
    return load_project(tmp_path / "project", "postgres")


def events(count: int, start: int = 0, day: str = "2026-01-01") -> pa.Table:
    """`count` landing rows received on `day`."""
    at = dt.datetime.fromisoformat(day).replace(hour=12, tzinfo=UTC)
    ids = [f"m-{day}-{i}" for i in range(start, start + count)]
    return pa.table({
        "message_id": ids, "type": ["track"] * count, "event": ["Signed Up"] * count,
        "anonymous_id": [None] * count, "user_id": [f"u{i % 97}" for i in range(start, start + count)],
        "group_id": [None] * count, "previous_id": [None] * count,
        "timestamp": pa.array([at] * count, LANDING_SCHEMA.field("timestamp").type),
        "received_at": pa.array([at] * count, LANDING_SCHEMA.field("received_at").type),
        "properties": ['{"plan":"pro"}'] * count, "traits": [None] * count, "context": ["{}"] * count,
    }, schema=LANDING_SCHEMA)


def write(project, relative: str, table: pa.Table) -> None:
    path = project.landing_dir / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def revetl(project, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(project.root), "--target", "postgres",
                           *args], capture_output=True, text=True, timeout=300)


def test_landed_files_load_once_into_the_contract_table_and_ledger(project):
    land(project, [{"type": "track", "event": "A", "userId": "u1", "messageId": "one"},
                   {"type": "identify", "userId": "u2", "messageId": "two", "traits": {"email": "X@Y.z"}}])
    write(project, "received_date=2026-01-02/extra.parquet", events(3, day="2026-01-02").append_column(
        "unknown_column", pa.array([1, 2, 3])))
    naive = events(2, day="2026-01-03").drop_columns(["traits", "group_id"])  # missing columns are null
    naive = naive.set_column(naive.schema.get_field_index("timestamp"), "timestamp",
                             naive["timestamp"].cast(pa.timestamp("us")))  # a naive time is UTC
    write(project, "elsewhere/naive.parquet", naive)

    report = load_landed(project)
    assert report.ok and (report.files, report.events, report.already) == (3, 7, 0)
    assert report.summary() == "3 files, 7 events loaded (0 files already loaded)"
    with connect(project, read_only=True) as pg:
        assert pg.fetchall("select column_name, data_type from information_schema.columns "
                           "where table_schema = 'landing' and table_name = 'events' order by ordinal_position") \
            == COLUMNS
        rows = pg.fetchall("select filename, file_row_number, received_date, message_id, \"timestamp\", traits "
                           "from landing.events order by filename, file_row_number")
        ledger = pg.fetchall("select filename, bytes, rows from landing.loaded_files order by filename")
    landed = next(iter(project.landing_dir.glob("received_date=2026-01-01/*.parquet")))
    first = landed.relative_to(project.landing_dir).as_posix()
    assert [row[:4] for row in rows] == [
        ("elsewhere/naive.parquet", 0, None, "m-2026-01-03-0"), ("elsewhere/naive.parquet", 1, None, "m-2026-01-03-1"),
        (first, 0, dt.date(2026, 1, 1), "one"), (first, 1, dt.date(2026, 1, 1), "two"),
        *[("received_date=2026-01-02/extra.parquet", i, dt.date(2026, 1, 2), f"m-2026-01-02-{i}") for i in range(3)]]
    assert rows[0][4] == dt.datetime(2026, 1, 3, 12, tzinfo=UTC) and rows[0][5] is None
    assert rows[3][5] == '{"email":"X@Y.z"}'
    assert ledger == sorted([(name, (project.landing_dir / name).stat().st_size, count) for name, count in
                             [(first, 2), ("received_date=2026-01-02/extra.parquet", 3), ("elsewhere/naive.parquet", 2)]])

    again = load_landed(project)
    assert (again.files, again.events, again.already) == (0, 0, 3)
    land(project, [{"type": "track", "event": "B", "userId": "u3", "messageId": "three"}],
         received_at=dt.datetime(2026, 1, 4, tzinfo=UTC))
    assert load_landed(project).summary() == "1 files, 1 events loaded (3 files already loaded)"


def test_a_corrupt_file_is_named_in_one_sentence_and_the_others_still_load(project):
    write(project, "received_date=2026-01-01/good.parquet", events(5))
    broken = project.landing_dir / "received_date=2026-01-01/broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    bad_column = events(4, day="2026-01-02")
    bad_column = bad_column.set_column(bad_column.schema.get_field_index("received_at"), "received_at",
                                       pa.array(["yesterday"] * 4))  # fails mid-stream: the file's rows roll back
    write(project, "received_date=2026-01-02/bad_column.parquet", bad_column)
    write(project, "received_date=2026-01-03/later.parquet", events(6, day="2026-01-03"))

    process = revetl(project, "load")
    assert process.returncode == 1, process.stderr
    assert "2 files, 11 events loaded (0 files already loaded)" in process.stdout
    errors = process.stderr.strip().splitlines()
    assert len(errors) == 2 and "Traceback" not in process.stderr
    assert errors[0].startswith(f"error: the landing file {broken} cannot be loaded (")
    assert errors[1].startswith("error: the landing file ") and "bad_column.parquet cannot be loaded (" in errors[1]
    assert "column received_at" in errors[1]
    assert errors[1].endswith(f"move it out of {project.landing_dir} and load again (the other files were loaded)")
    with connect(project, read_only=True) as pg:
        assert pg.fetchall("select filename, count(*) from landing.events group by filename order by filename") == [
            ("received_date=2026-01-01/good.parquet", 5), ("received_date=2026-01-03/later.parquet", 6)]
        assert pg.scalar("select count(*) from landing.loaded_files") == 2

    process = revetl(project, "build")  # stops before dbt, as on DuckDB
    assert process.returncode == 1
    assert "0 files, 0 events loaded (2 files already loaded)" in process.stdout
    assert process.stderr.strip().splitlines()[-1].endswith("and build again (the other files were loaded); "
                                                            "nothing was built")
    broken.unlink()
    (project.landing_dir / "received_date=2026-01-02/bad_column.parquet").unlink()
    process = revetl(project, "load")
    assert process.returncode == 0 and "0 files, 0 events loaded (2 files already loaded)" in process.stdout


def _copying(pg, pid: int) -> bool:
    """Whether the loader process `pid` has a COPY running on the server now."""
    return bool(pg.fetchall("select 1 from pg_stat_activity where application_name like $1 "
                            "and state = 'active' and query ilike 'copy%'", [f"revetl %:{pid}"]))


def test_a_load_killed_mid_copy_neither_loses_nor_doubles_a_file(project):
    files = 8
    for index in range(files):
        write(project, f"received_date=2026-01-0{index + 1}/part-{index}.parquet",
              events(60_000, day=f"2026-01-0{index + 1}"))
    loader = subprocess.Popen([sys.executable, "-m", "revetl", "--project-dir", str(project.root), "--target",
                               "postgres", "load"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed_while_copying = False
    try:
        with connect(project) as pg:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and loader.poll() is None:
                ledger = pg.scalar("select count(*) from landing.loaded_files") \
                    if pg.scalar("select to_regclass('landing.loaded_files') is not null") else 0
                if ledger >= 2 and _copying(pg, loader.pid):
                    loader.send_signal(signal.SIGKILL)
                    killed_while_copying = True
                    break
                time.sleep(0.005)
    finally:
        if loader.poll() is None:
            loader.send_signal(signal.SIGKILL)
        loader.wait()
    assert killed_while_copying, "the load ended before a COPY could be caught: make the files larger"

    with connect(project) as pg:
        deadline = time.monotonic() + 10  # the server notices the dropped session and rolls it back
        while time.monotonic() < deadline and pg.scalar(
                "select count(*) from pg_stat_activity where application_name like $1", [f"revetl %:{loader.pid}"]):
            time.sleep(0.05)
        per_file = dict(pg.fetchall("select filename, count(*) from landing.events group by filename"))
        ledger = dict(pg.fetchall("select filename, rows from landing.loaded_files"))
    assert 2 <= len(ledger) < files
    assert per_file == ledger  # every file recorded is there whole, nothing else is there

    process = revetl(project, "load")
    assert process.returncode == 0, process.stderr
    assert f"{files - len(ledger)} files, {(files - len(ledger)) * 60_000:,} events loaded " \
           f"({len(ledger)} files already loaded)" in process.stdout
    with connect(project) as pg:
        (total, distinct), = pg.fetchall("select count(*), count(distinct (filename, file_row_number)) "
                                         "from landing.events")
        assert total == distinct == files * 60_000
        assert pg.scalar("select count(*) from landing.loaded_files") == files


def test_two_loaders_at_once_load_each_file_once(project):
    for index in range(6):
        write(project, f"received_date=2026-02-0{index + 1}/part.parquet", events(20_000, day=f"2026-02-0{index + 1}"))
    loaders = [subprocess.Popen([sys.executable, "-m", "revetl", "--project-dir", str(project.root), "--target",
                                 "postgres", "load"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    outputs = [loader.communicate(timeout=300) for loader in loaders]
    assert [loader.returncode for loader in loaders] == [0, 0], outputs
    loaded = [int(out.split(" files, ")[0].split()[-1]) for out, _ in outputs]
    assert sum(loaded) == 6
    with connect(project) as pg:
        assert pg.fetchall("select count(*), count(distinct (filename, file_row_number)) from landing.events") \
            == [(120_000, 120_000)]


def test_on_duckdb_there_is_nothing_to_load(project):
    process = subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(project.root), "load"],
                             capture_output=True, text=True, env={**os.environ, "REVETL_TARGET": "duckdb"})
    assert process.returncode == 0 and "nothing to load" in process.stdout


def test_the_number_of_load_sessions_is_a_whole_number(monkeypatch):
    from revetl.errors import ConfigError
    from revetl.warehouse.load import load_sessions

    assert load_sessions() == 2
    monkeypatch.setenv("REVETL_LOAD_SESSIONS", "1")
    assert load_sessions() == 1
    monkeypatch.setenv("REVETL_LOAD_SESSIONS", "two")
    with pytest.raises(ConfigError, match="REVETL_LOAD_SESSIONS must be a whole number from 1, not 'two'"):
        load_sessions()


def test_one_session_loads_the_same_rows(project):
    for index in range(3):
        write(project, f"received_date=2026-03-0{index + 1}/part.parquet", events(10, day=f"2026-03-0{index + 1}"))
    report = load_landed(project, sessions=1)
    assert (report.files, report.events) == (3, 30)
    with connect(project) as pg:
        assert pg.scalar("select count(distinct (filename, file_row_number)) from landing.events") == 30


def test_a_nul_character_in_a_text_column_loads_as_the_replacement_character(project):
    # PostgreSQL text cannot hold U+0000; the landed Parquet can (an app sent "\u0000" in a JSON string).
    table = events(3)
    nul = ["a\x00b", None, "\x00"]
    table = table.set_column(table.schema.get_field_index("user_id"), "user_id", pa.array(nul, pa.string()))
    table = table.set_column(table.schema.get_field_index("event"), "event", pa.array(["E\x00", "F", "G"], pa.string()))
    write(project, "received_date=2026-01-01/nul.parquet", table)
    load_landed(project)
    with connect(project, read_only=True) as connection:
        rows = connection.fetchall("select user_id, event from landing.events order by message_id")
    assert rows == [("a\ufffdb", "E\ufffd"), (None, "F"), ("\ufffd", "G")]
