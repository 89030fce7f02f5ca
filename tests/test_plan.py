"""Plan correctness against hand-computed diffs, and the state tables behind it, on DuckDB and on PostgreSQL
(the same tests, parametrized by engine)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from revetl.config import SyncConfig
from revetl.errors import WarehouseError
from revetl.sync import state
from revetl.sync.journal import JournalWriter
from revetl.sync.plan import make_plan
from revetl.warehouse.base import Connection
from revetl.warehouse.embedded import DuckDBConnection
from revetl.warehouse.postgres import Server, open_server

AUDIENCE = "select * from audience_rows"


def sync_config(**overrides) -> SyncConfig:
    raw = {
        "name": "churn_to_braze",
        "path": "syncs/churn_to_braze.yml",
        "audience": "churn_risk",
        "destination": {"type": "braze"},
        "identity": {"from": "user_id", "to": "external_id"},
        "fields": {"email": "email", "plan": "plan"},
    }
    return SyncConfig.model_validate({**raw, **overrides})


def server(database) -> Server:
    """The revetl `Server` of a test database (the postgres_database fixture)."""
    return Server(database.host, database.port, database.user, database.password, database.name)


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Connection:
    if request.param == "duckdb":
        connection = DuckDBConnection(duckdb.connect(str(tmp_path / "warehouse.duckdb")))
    else:
        connection = open_server(server(request.getfixturevalue("postgres_database")))
    connection.execute(
        "create table audience_rows (user_id varchar, email varchar, plan varchar, reports integer)"
    )
    yield connection
    connection.close()


def reopened(tmp_path: Path, connection: Connection) -> str:
    """Python code opening, in a new process, the warehouse `connection` reaches, as `c`."""
    if connection.dialect == "duckdb":
        return ("import duckdb; from revetl.warehouse.embedded import DuckDBConnection; "
                f"c = DuckDBConnection(duckdb.connect({str(tmp_path / 'warehouse.duckdb')!r}, read_only=True))")
    where = connection.server  # type: ignore[attr-defined]
    fields = (where.host, where.port, where.user, where.password, where.dbname)
    return f"from revetl.warehouse.postgres import Server, open_server; c = open_server(Server(*{fields!r}), read_only=True)"


def members(connection, rows) -> None:
    connection.execute("delete from audience_rows")
    if rows:
        connection.executemany("insert into audience_rows values (?, ?, ?, ?)", rows)


def journal_of(rows, path: Path) -> Path:
    """A run's journal file that acknowledged `rows` (op, key, row_hash, payload, dest_ref)."""
    path.unlink(missing_ok=True)
    writer = JournalWriter(path, "churn_to_braze", "run-1", durable=False)
    asyncio.run(writer.write([tuple(row) for row in rows]))
    writer.close()
    return path


def acknowledge_all(connection, sync: SyncConfig, folder: Path) -> None:
    """What a successful run does: every diff row acknowledged in its journal (in `folder`), then folded."""
    state.migrate(connection)
    rows = connection.execute("select op, key, row_hash, payload, dest_ref from revetl_diff").fetchall()
    state.apply_journal(connection, sync.name, journal_of(rows, folder / "run.journal"))


def diff(connection) -> set[tuple[str, str]]:
    return set(connection.execute("select op, key from revetl_diff").fetchall())


BASE = [("u1", "a@x.io", "pro", 3), ("u2", "b@x.io", "pro", 5), ("u3", "c@x.io", "enterprise", 9)]


def test_first_run_adds_every_member(warehouse):
    members(warehouse, BASE)
    plan = make_plan(warehouse, sync_config(), AUDIENCE)
    assert (plan.adds, plan.changes, plan.removes, plan.members, plan.previous) == (3, 0, 0, 3, 0)
    assert plan.samples["add"][0] == {"key": "u1", "fields": {"email": "a@x.io", "plan": "pro"}}


def test_planning_writes_nothing(warehouse):
    members(warehouse, BASE)
    make_plan(warehouse, sync_config(), AUDIENCE)
    assert not state.has_state(warehouse)
    schemas = warehouse.execute("select schema_name from information_schema.schemata").fetchall()
    assert ("revetl_state",) not in schemas


def test_no_change_plans_nothing(warehouse, tmp_path):
    sync = sync_config()
    members(warehouse, BASE)
    make_plan(warehouse, sync, AUDIENCE)
    acknowledge_all(warehouse, sync, tmp_path)
    plan = make_plan(warehouse, sync, AUDIENCE)
    assert (plan.adds, plan.changes, plan.removes, plan.previous) == (0, 0, 0, 3)
    assert plan.total == 0


def test_members_leaving_are_removes(warehouse, tmp_path):
    sync = sync_config()
    members(warehouse, BASE)
    make_plan(warehouse, sync, AUDIENCE)
    acknowledge_all(warehouse, sync, tmp_path)
    members(warehouse, BASE[:2] + [("u4", "d@x.io", "pro", 1)])
    plan = make_plan(warehouse, sync, AUDIENCE)
    assert diff(warehouse) == {("remove", "u3"), ("add", "u4")}
    # A remove carries the fields last acknowledged, for destinations that need them.
    assert plan.samples["remove"] == ({"key": "u3", "fields": {"email": "c@x.io", "plan": "enterprise"}},)


def test_upsert_mode_never_removes(warehouse, tmp_path):
    sync = sync_config(mode="upsert")
    members(warehouse, BASE)
    make_plan(warehouse, sync, AUDIENCE)
    acknowledge_all(warehouse, sync, tmp_path)
    members(warehouse, BASE[:1])
    plan = make_plan(warehouse, sync, AUDIENCE)
    assert (plan.adds, plan.changes, plan.removes) == (0, 0, 0)


def test_only_mapped_fields_make_a_change(warehouse, tmp_path):
    sync = sync_config()
    members(warehouse, BASE)
    make_plan(warehouse, sync, AUDIENCE)
    acknowledge_all(warehouse, sync, tmp_path)
    # `reports` is not mapped: it changing must not resend u1; `plan` is mapped: u2 changes.
    members(warehouse, [("u1", "a@x.io", "pro", 300), ("u2", "b@x.io", "enterprise", 5), BASE[2]])
    plan = make_plan(warehouse, sync, AUDIENCE)
    assert diff(warehouse) == {("change", "u2")}
    assert plan.samples["change"] == ({"key": "u2", "fields": {"email": "b@x.io", "plan": "enterprise"}},)


def test_key_changing_case_is_a_different_member(warehouse, tmp_path):
    sync = sync_config()
    members(warehouse, BASE)
    make_plan(warehouse, sync, AUDIENCE)
    acknowledge_all(warehouse, sync, tmp_path)
    members(warehouse, [("U1", "a@x.io", "pro", 3), *BASE[1:]])
    make_plan(warehouse, sync, AUDIENCE)
    assert diff(warehouse) == {("remove", "u1"), ("add", "U1")}


def test_key_changing_type_is_the_same_member(warehouse, tmp_path):
    sync = sync_config(identity={"from": "account", "to": "external_id"}, fields={"plan": "plan"})
    warehouse.execute("create table typed as select 42 as account, 'pro' as plan")
    make_plan(warehouse, sync, "select * from typed")
    acknowledge_all(warehouse, sync, tmp_path)
    warehouse.execute("drop table typed")
    warehouse.execute("create table typed as select '42' as account, 'pro' as plan")
    plan = make_plan(warehouse, sync, "select * from typed")
    assert plan.total == 0


def test_null_and_duplicate_keys_are_reported_and_left_out(warehouse, tmp_path):
    sync = sync_config()
    members(warehouse, BASE)
    make_plan(warehouse, sync, AUDIENCE)
    acknowledge_all(warehouse, sync, tmp_path)
    members(
        warehouse,
        [*BASE, (None, "n@x.io", "pro", 1), (None, "m@x.io", "pro", 1), ("u2", "b2@x.io", "pro", 5),
         ("u5", "e@x.io", "pro", 1), ("u5", "e@x.io", "pro", 1)],
    )
    plan = make_plan(warehouse, sync, AUDIENCE)
    assert (plan.null_keys, plan.duplicate_keys) == (2, 2)
    assert set(plan.duplicate_examples) == {"u2", "u5"}
    # u2 was synced before: a duplicate is neither sent nor removed until the audience is fixed.
    assert diff(warehouse) == set()
    assert plan.members == 2


def test_partially_applied_run_plans_only_the_rest(warehouse, tmp_path):
    sync = sync_config()
    members(warehouse, [(f"u{i}", f"{i}@x.io", "pro", i) for i in range(10)])
    make_plan(warehouse, sync, AUDIENCE)
    state.migrate(warehouse)
    rows = warehouse.execute("select op, key, row_hash, payload, dest_ref from revetl_diff order by key").fetchall()
    # A run acknowledged four rows, then died before folding its journal.
    pending = journal_of(rows[:4], tmp_path / "killed.journal")
    plan = make_plan(warehouse, sync, AUDIENCE, pending=[pending])
    assert (plan.adds, plan.previous) == (6, 4)
    assert {key for _, key in diff(warehouse)} == {row[1] for row in rows[4:]}
    state.apply_journal(warehouse, sync.name, pending)
    assert make_plan(warehouse, sync, AUDIENCE).adds == 6


def test_state_survives_a_new_process(tmp_path, warehouse):
    sync = sync_config()
    members(warehouse, BASE)
    make_plan(warehouse, sync, AUDIENCE)
    acknowledge_all(warehouse, sync, tmp_path)
    warehouse.close()
    script = (reopened(tmp_path, warehouse) + "; from revetl.sync import state; "
              "print(sorted(row[0] for row in state.acknowledged_rows(c, 'churn_to_braze')))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['u1', 'u2', 'u3']"


def test_guard_refuses_mass_removes_and_emptying(warehouse, tmp_path):
    sync = sync_config()
    members(warehouse, [(f"u{i}", f"{i}@x.io", "pro", i) for i in range(10)])
    make_plan(warehouse, sync, AUDIENCE)
    acknowledge_all(warehouse, sync, tmp_path)
    members(warehouse, [(f"u{i}", f"{i}@x.io", "pro", i) for i in range(5)])
    assert make_plan(warehouse, sync, AUDIENCE).guard.ok  # exactly half: allowed
    members(warehouse, [(f"u{i}", f"{i}@x.io", "pro", i) for i in range(4)])
    guard = make_plan(warehouse, sync, AUDIENCE).guard
    assert not guard.ok and "remove 6 of 10 members" in guard.reason
    members(warehouse, [])
    guard = make_plan(warehouse, sync, AUDIENCE).guard
    assert not guard.ok and "empty" in guard.reason
    assert make_plan(warehouse, sync_config(max_remove_share=1.0), AUDIENCE).guard.ok is False  # emptying still


def test_reset_forgets_acknowledged_rows_only(warehouse, tmp_path):
    sync = sync_config()
    members(warehouse, BASE)
    make_plan(warehouse, sync, AUDIENCE)
    acknowledge_all(warehouse, sync, tmp_path)
    state.start_run(warehouse, sync.name, sync.audience, 3, (3, 0, 0), status="succeeded")
    assert state.reset(warehouse, sync.name) == 3
    assert make_plan(warehouse, sync, AUDIENCE).adds == 3
    assert len(state.runs(warehouse, sync.name)) == 1


def test_migrations_are_versioned_and_idempotent(warehouse):
    assert state.schema_version(warehouse) == 0
    assert state.migrate(warehouse) == state.LATEST
    assert state.migrate(warehouse) == state.LATEST
    warehouse.execute("insert into revetl_state.migrations values (999, 'from the future', now())")
    with pytest.raises(WarehouseError, match="newer than this revetl"):
        state.migrate(warehouse)


def test_to_json_has_the_counts(warehouse):
    members(warehouse, BASE)
    data = make_plan(warehouse, sync_config(), AUDIENCE).to_json()
    assert {k: data[k] for k in ("sync", "adds", "changes", "removes")} == {
        "sync": "churn_to_braze", "adds": 3, "changes": 0, "removes": 0,
    }


def test_float_noise_is_not_a_change(warehouse, tmp_path):
    """Summation order moves the last digits of a double (194.06 vs 194.06000000000003): not a change."""
    sync = sync_config(fields={"revenue": "revenue", "score": "score"})
    warehouse.execute("create table money (user_id varchar, revenue double precision, score real)")
    warehouse.execute("insert into money values ('u1', 194.06, 0.1), ('u2', 10.5, 2.5)")
    make_plan(warehouse, sync, "select * from money")
    acknowledge_all(warehouse, sync, tmp_path)
    warehouse.execute("update money set revenue = 194.06000000000003 where user_id = 'u1'")
    warehouse.execute("update money set revenue = 10.500000000000002, score = 2.5000002 where user_id = 'u2'")
    plan = make_plan(warehouse, sync, "select * from money")
    assert (plan.adds, plan.changes, plan.removes) == (0, 0, 0)
    warehouse.execute("update money set revenue = 194.07 where user_id = 'u1'")
    plan = make_plan(warehouse, sync, "select * from money")
    assert plan.changes == 1 and plan.samples["change"][0]["fields"] == {"revenue": 194.07, "score": 0.1}


def test_payload_floats_are_json_numbers_and_not_nan(warehouse):
    sync = sync_config(fields={"revenue": "revenue"})
    warehouse.execute("create table odd (user_id varchar, revenue double precision)")
    warehouse.execute("insert into odd values ('u1', 'NaN'), ('u2', 'Infinity'), ('u3', 1e300)")
    plan = make_plan(warehouse, sync, "select * from odd")
    assert [row["fields"] for row in plan.samples["add"]] == [{"revenue": None}, {"revenue": None}, {"revenue": 1e300}]


def test_every_change_of_the_acknowledged_rows_moves_the_state_version(warehouse, tmp_path):
    sync = sync_config()
    members(warehouse, BASE)
    assert make_plan(warehouse, sync, AUDIENCE).state_version == 0  # no state yet
    acknowledge_all(warehouse, sync, tmp_path)  # one fold of one chunk
    assert make_plan(warehouse, sync, AUDIENCE).state_version == 1
    assert state.reset(warehouse, sync.name) == 3
    assert make_plan(warehouse, sync, AUDIENCE).state_version == 2
    assert state.version(warehouse, "another_sync") == 0  # each sync has its own
