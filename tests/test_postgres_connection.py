"""The warehouse seam on a real PostgreSQL server (revetl/warehouse/postgres.py), and the lock on both engines."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal

import pyarrow as pa
import pytest
from sqlglot import exp
from wh import audience_project, land

from revetl.config import load_project
from revetl.errors import QueryError, SyncRefused, WarehouseError
from revetl.warehouse.connection import connect, dialect, lock, locked
from revetl.warehouse.dialect import Template, drop_table, temp_table
from revetl.warehouse.placeholders import numbered

UTC = dt.timezone.utc


@pytest.fixture
def project(tmp_path, monkeypatch, postgres_database):
    audience_project(tmp_path, monkeypatch, {})
    monkeypatch.setenv("REVETL_WORK_DIR", str(tmp_path / "work"))
    return load_project(tmp_path / "project", "postgres")


@pytest.fixture
def pg(project):
    with connect(project) as connection:
        yield connection


def test_the_postgres_target_opens_a_postgres_session_in_utc(project, pg, postgres_database):
    assert dialect(project) == "postgres" == pg.dialect
    name, zone, path = pg.fetchall("select current_database(), current_setting('TimeZone'), "
                                   "current_setting('search_path')")[0]
    assert (name, zone, path) == (postgres_database.name, "UTC", "public")


def test_parameters_positional_and_named_in_text_and_in_expressions(pg):
    assert pg.fetchall("select ? as a, ? as b, '?' as c, $$ ? $$ as d -- ?\n", [1, "x"]) == [(1, "x", "?", " ? ")]
    assert pg.fetchall("select $a as a, $b as b, $a + 1 as c", {"a": 41, "b": "it's"}) == [(41, "it's", 42)]
    assert pg.fetchall(Template("select $n * 2 as twice, '$n' as text"), {"n": 21}) == [(42, "$n")]
    query = exp.select(exp.Placeholder(this="v").as_("v")).where(exp.column("x").eq(exp.Placeholder()))
    assert "%" in query.sql(dialect="postgres")  # sqlglot's own rendering, which libpq cannot bind
    assert pg.fetchall(exp.select(exp.Placeholder(this="v").as_("v")), {"v": "named"}) == [("named",)]
    assert pg.scalar("select $1::int + $2::int", [2, 3]) == 5
    with pytest.raises(QueryError, match=r"no value given for parameter\(s\) \$b"):
        pg.execute("select $a, $b", {"a": 1})
    with pytest.raises(QueryError, match="takes 2 parameter"):
        pg.execute("select ?, ?", [1])


def test_numbering_skips_quotes_comments_and_dollar_bodies():
    text, values = numbered("select '?', \"$x\", E'\\'?', /* ? /* $y */ */ $x -- ?\n, $t$ ? $t$", {"x": 1})
    assert text == "select '?', \"$x\", E'\\'?', /* ? /* $y */ */ $1 -- ?\n, $t$ ? $t$"
    assert values == [1]


def test_arrow_types_round_trip_through_ingest_and_stream(pg):
    data = pa.table({
        "at": pa.array([dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), None], pa.timestamp("us", "UTC")),
        "text": pa.array(["héllo 'x'", None]),
        "big": pa.array([2**62, None], pa.int64()),
        "real": pa.array([1.25, None], pa.float64()),
        "flag": pa.array([True, None]),
        "day": pa.array([dt.date(2026, 1, 2), None], pa.date32()),
    })
    pg.ingest("round_trip", data)
    back = pg.stream("select * from round_trip order by big nulls last").read_all()
    assert back.schema.names == data.schema.names
    assert [field.type for field in back.schema] == [field.type for field in data.schema]
    assert back.to_pylist() == data.to_pylist()
    assert pg.fetchall("select * from round_trip where big = ?", [2**62]) == [tuple(data.to_pylist()[0].values())]
    assert pg.columns("select * from round_trip") == [
        ("at", "TIMESTAMP WITH TIME ZONE"), ("text", "VARCHAR"), ("big", "BIGINT"), ("real", "DOUBLE"),
        ("flag", "BOOLEAN"), ("day", "DATE")]


def test_columns_name_types_as_duckdb_does_and_read_no_rows(pg):
    pg.execute("create table big_rows as select g from generate_series(1, 10) g")
    assert pg.columns("select g::int8 as a, g::float8 as b, g::text as c, g > 1 as d, "
                      "now()::timestamp as e, g::numeric(10, 2) as f, g::float4 as h from big_rows") == [
        ("a", "BIGINT"), ("b", "DOUBLE"), ("c", "VARCHAR"), ("d", "BOOLEAN"), ("e", "TIMESTAMP"),
        ("f", "DECIMAL(10,2)"), ("h", "FLOAT")]
    assert pg.columns("select sum(g::int8) as total from big_rows;") == [("total", "DECIMAL")]
    with pytest.raises(QueryError, match="division by zero") as raised:  # a statement that ran would fail
        pg.execute("select 1 / (g - g) from big_rows")
    assert pg.columns("select 1 / (g - g) as boom from big_rows") == [("boom", "INTEGER")]
    assert raised.value.line is None


def test_sums_and_averages_come_back_as_numbers(pg):
    (total, mean, count), = pg.fetchall("select sum(x), avg(x), count(*) from (values (1::int8), (2)) v(x)")
    assert (total, mean, count) == (3, Decimal("1.5"), 2)
    assert isinstance(total, int)


def test_executemany_binds_each_row(pg):
    pg.execute("create table many (k bigint, v text, at timestamptz)")
    pg.executemany("insert into many values (?, ?, ?)", [(1, "a", dt.datetime(2026, 1, 1, tzinfo=UTC)),
                                                        (2, None, None), (3, "c", None)])
    pg.executemany("insert into many values (?, ?, ?)", [])
    assert pg.fetchall("select k, v from many order by k") == [(1, "a"), (2, None), (3, "c")]


def test_a_transaction_takes_effect_whole_or_not_at_all(pg):
    pg.execute("create table ledger (n int, at timestamptz)")
    with pg.transaction():
        pg.execute("insert into ledger values (1)")
        pg.execute("insert into ledger values (2)")
    with pytest.raises(RuntimeError):
        with pg.transaction():
            pg.execute("insert into ledger values (3)")
            # a bound timestamp: in autocommit mode the driver wraps it in a BEGIN/COMMIT of its own
            pg.execute("insert into ledger values (?, ?)", [5, dt.datetime(2026, 1, 1, tzinfo=UTC)])
            pg.append("ledger", pa.table({"n": pa.array([6], pa.int32())}))
            raise RuntimeError("stop")
    with pytest.raises(QueryError, match="duplicate key|division"):
        with pg.transaction():
            pg.execute("insert into ledger values (4)")
            pg.execute("select 1 / 0")
    assert pg.fetchall("select n from ledger order by n") == [(1,), (2,)]


def test_scratch_data_is_readable_in_the_block_and_gone_after(pg):
    with pg.scratch("revetl_rows", pa.table({"k": ["a", "b"]})) as name:
        assert pg.fetchall(f"select count(*) from {name}") == [(2,)]
    assert pg.fetchall("select to_regclass('revetl_rows') is null") == [(True,)]
    pg.execute(temp_table("made", columns={"k": "TEXT"}))
    pg.execute(drop_table("made"))


def test_a_large_result_streams_in_bounded_batches(pg):
    reader = pg.stream("select g, repeat('x', 100) as pad from generate_series(1, 300000) g", rows=10_000)
    sizes, largest = [], 0
    for batch in reader:
        sizes.append(batch.num_rows)
        largest = max(largest, batch.nbytes)
    assert sum(sizes) == 300_000 and max(sizes) == 10_000
    assert largest < 3 << 20  # one batch of ~10k rows in memory, not the 30+ MB result
    reader = pg.stream("select g from generate_series(1, 10) g where g > ? and ? = 'it''s'", [7, "it's"])
    assert reader.read_all().column("g").to_pylist() == [8, 9, 10]


def test_engine_errors_are_query_errors_without_the_password(pg, postgres_database):
    with pytest.raises(QueryError) as raised:
        pg.execute("select *\nfrom no_such_table")
    assert raised.value.missing and raised.value.line == 2
    assert str(raised.value) == 'relation "no_such_table" does not exist'
    assert type(raised.value.__cause__).__module__.startswith("adbc_driver_manager")
    with pytest.raises(QueryError) as raised:
        pg.execute(f"select '{postgres_database.password}'::int")
    assert postgres_database.password not in str(raised.value)


def test_an_unreachable_server_or_bad_password_is_one_sentence_without_the_password(project, monkeypatch,
                                                                                    postgres_database):
    monkeypatch.setenv("PGPASSWORD", "not-the-password-42")
    with pytest.raises(WarehouseError) as raised:
        connect(project)
    message = str(raised.value)
    assert message.startswith(f"cannot connect to PostgreSQL at 127.0.0.1:{postgres_database.port}, "
                              f"database {postgres_database.name}: password authentication failed")
    assert "not-the-password-42" not in message and "\n" not in message
    monkeypatch.setenv("PGPORT", "1")
    with pytest.raises(WarehouseError, match=r"^cannot connect to PostgreSQL at 127.0.0.1:1, database .*: "
                                             r"Connection refused$") as raised:
        connect(project)
    process = subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(project.root), "--target",
                              "postgres", "runs"], capture_output=True, text=True)
    assert process.returncode == 1
    assert "cannot connect to PostgreSQL at 127.0.0.1:1" in process.stderr
    assert "not-the-password-42" not in process.stderr + process.stdout and "Traceback" not in process.stderr


def test_a_read_only_session_writes_nothing_but_its_own_temporary_tables(project, pg):
    pg.execute("create table kept (n int)")
    with connect(project, read_only=True) as reader:
        for statement in ("insert into kept values (1)", "create table other (n int)", "drop table kept",
                          "drop table if exists kept"):
            with pytest.raises(QueryError, match="read-only transaction"):
                reader.execute(statement)
        reader.execute("create temp table mine as select 1 as n")
        reader.execute("insert into mine values (2)")
        reader.ingest("arrow_in", pa.table({"n": [1]}))
        assert reader.fetchall("select count(*) from mine") == [(2,)]
        reader.execute(drop_table("mine"))
        reader.execute(drop_table("never_made"))
    assert pg.fetchall("select count(*) from kept") == [(0,)]


def test_a_sandbox_reaches_no_server_file_and_times_out(project, monkeypatch):
    monkeypatch.setenv("REVETL_PG_STATEMENT_TIMEOUT", "0.5")
    with connect(project, read_only=True, sandbox=True) as sandbox:
        assert sandbox.scalar("select current_setting('statement_timeout')") == "500ms"
        for statement in ("select pg_read_file('/etc/hostname')", "select pg_ls_dir('.')",
                          "copy (select 1) to '/tmp/revetl-escape'", "select lo_import('/etc/hostname')"):
            with pytest.raises(QueryError, match="permission denied|must be superuser|read-only"):
                sandbox.execute(statement)
        with pytest.raises(QueryError, match="statement timeout"):
            sandbox.execute("select pg_sleep(5)")
        sandbox.execute("create temp table audience_rows as select 1 as k")  # a plan's own scratch tables
    assert not os.path.exists("/tmp/revetl-escape")


HOLDER = """
import sys
from revetl.config import load_project
from revetl.errors import SyncRefused
from revetl.warehouse.connection import lock
project = load_project(sys.argv[1], sys.argv[2])
with lock(project, sys.argv[3], lambda holder: SyncRefused(holder)):
    print("holding", flush=True)
    sys.stdin.readline()
"""


def _hold(project, target, name="sync-braze"):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(project.root), target, name], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def _refused(project):
    with pytest.raises(SyncRefused) as raised, lock(project, "sync-braze", lambda holder: SyncRefused(holder)):
        pass
    return str(raised.value)


@pytest.mark.parametrize("target", ["postgres", "duckdb"])
def test_a_lock_held_by_another_process_is_refused_and_freed_when_it_is_killed(project, target):
    project = load_project(project.root, target)
    assert not locked(project, "sync-braze")
    holder = _hold(project, target)
    try:
        assert locked(project, "sync-braze")
        holder_words = _refused(project)
        assert f"{holder.pid}" in holder_words
        assert not locked(project, "sync-other")
        with lock(project, "sync-other", SyncRefused):
            assert locked(project, "sync-other")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 10
    while locked(project, "sync-braze") and time.monotonic() < deadline:
        time.sleep(0.05)
    with lock(project, "sync-braze", SyncRefused):
        assert locked(project, "sync-braze")
    assert not locked(project, "sync-braze")


def test_the_postgres_lock_names_the_host_and_process_and_is_released_by_the_block(project):
    holder = _hold(project, "postgres")
    try:
        words = _refused(project)
        assert words.startswith(f"process {holder.pid} on ") and "server pid " in words and "127.0.0.1" in words
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=20) == 0
    assert not locked(project, "sync-braze")


@pytest.mark.parametrize("target", ["postgres", "duckdb"])
def test_a_build_stops_at_once_while_another_process_builds_the_same_warehouse(project, target):
    from revetl.errors import BuildError
    from revetl.warehouse.dbt import build_project
    from revetl.warehouse.load import load_landed

    project = load_project(project.root, target)
    land(project, [{"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m1",
                    "timestamp": "2026-01-05T10:00:00Z"}])
    if target == "postgres":
        load_landed(project)
    holder = _hold(project, target, "build")
    try:
        with pytest.raises(BuildError, match=rf"a build is already running \(.*{holder.pid}.*\); not starting"):
            build_project(project)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()


def test_the_duckdb_lock_is_the_flock_in_the_work_dir(project, tmp_path):
    duck = load_project(project.root, "duckdb")
    with lock(duck, "build", SyncRefused):
        assert (tmp_path / "work" / "locks" / "build.lock").read_text() == str(os.getpid())
