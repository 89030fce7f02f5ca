"""Sync state in the warehouse: the only module that writes it (DESIGN 6).

Tables, in schema `revetl_state`, created and migrated by `migrate()` (versioned):

    migrations    version, description, applied_at
    acknowledged  per sync, the last row the destination acknowledged for each key:
                  key, row_hash, payload (JSON), dest_ref (the destination's own id, if any)
    journal       acknowledgements of the run in progress, appended batch by batch
    runs          one row per `revetl sync` run: counts, timing, status, message
    failures      rows the destination rejected, with its reason, per run

Why a journal: a run acknowledges thousands of small batches. Appending each to `journal` is
cheap and durable at once; rewriting `acknowledged` per batch would rescan it every time. The
journal is folded into `acknowledged` in one set-based statement at the end of the run, and at
the start of the next one if the process died. Readers (`current_state_sql`) see both, so an
acknowledged batch counts from the moment its journal insert commits.

Keys are text: the audience's key column cast to VARCHAR, compared exactly (case matters).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import duckdb
import pyarrow as pa

from revetl.errors import WarehouseError

__all__ = [
    "SCHEMA",
    "Ack",
    "Failure",
    "RunRecord",
    "current_state_sql",
    "acknowledged_rows",
    "failures",
    "fold",
    "finish_run",
    "has_state",
    "last_sizes",
    "mark_crashed",
    "migrate",
    "record_acks",
    "record_failures",
    "reset",
    "runs",
    "start_run",
    "state_version",
]

SCHEMA = "revetl_state"

# Append-only: a released version is never edited, a change is a new version.
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "acknowledged rows, journal, runs and failures",
        [
            f"""create table {SCHEMA}.acknowledged (
                sync varchar not null, key varchar not null, row_hash varchar not null,
                payload json, dest_ref varchar, run_id varchar, acknowledged_at timestamptz)""",
            f"create sequence {SCHEMA}.journal_seq",
            f"""create table {SCHEMA}.journal (
                seq bigint not null, sync varchar not null, run_id varchar not null,
                op varchar not null, key varchar not null, row_hash varchar,
                payload json, dest_ref varchar, acknowledged_at timestamptz)""",
            f"""create table {SCHEMA}.runs (
                run_id varchar primary key, sync varchar not null, audience varchar,
                started_at timestamptz not null, finished_at timestamptz, status varchar not null,
                members bigint, planned_adds bigint, planned_changes bigint, planned_removes bigint,
                acked_adds bigint default 0, acked_changes bigint default 0, acked_removes bigint default 0,
                failed bigint default 0, message varchar)""",
            f"""create table {SCHEMA}.failures (
                run_id varchar not null, sync varchar not null, key varchar not null, op varchar not null,
                reason varchar not null, payload json, failed_at timestamptz not null)""",
        ],
    ),
]
LATEST = MIGRATIONS[-1][0]

OPS = ("add", "change", "remove")


class Ack(NamedTuple):
    """One row the destination acknowledged. `payload`/`row_hash` are None for removes."""

    op: str
    key: str
    row_hash: str | None = None
    payload: str | None = None  # JSON text, as planned
    dest_ref: str | None = None


class Failure(NamedTuple):
    """One row the destination rejected, with its reason (never a secret)."""

    op: str
    key: str
    reason: str
    payload: str | None = None


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    sync: str
    audience: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    status: str
    members: int | None
    planned: tuple[int, int, int]
    acked: tuple[int, int, int]
    failed: int
    message: str | None

    @property
    def duration(self) -> float | None:
        return (self.finished_at - self.started_at).total_seconds() if self.finished_at else None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def state_version(connection: duckdb.DuckDBPyConnection) -> int:
    """The migration version the warehouse is at; 0 when revetl never wrote state there."""
    exists = connection.execute(
        "select count(*) from information_schema.tables where table_schema = ? and table_name = 'migrations'",
        [SCHEMA],
    ).fetchone()[0]
    if not exists:
        return 0
    return connection.execute(f"select coalesce(max(version), 0) from {SCHEMA}.migrations").fetchone()[0]


def has_state(connection: duckdb.DuckDBPyConnection) -> bool:
    return state_version(connection) > 0


def migrate(connection: duckdb.DuckDBPyConnection) -> int:
    """Create or upgrade the state tables; each version applies in one transaction. Returns the version."""
    version = state_version(connection)
    if version > LATEST:
        raise WarehouseError(
            f"the warehouse's sync state is at version {version}, newer than this revetl knows ({LATEST}); upgrade revetl"
        )
    if version == 0:
        connection.execute(f"create schema if not exists {SCHEMA}")
        connection.execute(
            f"create table if not exists {SCHEMA}.migrations "
            "(version integer primary key, description varchar, applied_at timestamptz)"
        )
    for number, description, statements in MIGRATIONS:
        if number <= version:
            continue
        connection.execute("begin transaction")
        try:
            for statement in statements:
                connection.execute(statement)
            connection.execute(f"insert into {SCHEMA}.migrations values (?, ?, ?)", [number, description, _now()])
            connection.execute("commit")
        except Exception:
            connection.execute("rollback")
            raise
    return LATEST


def current_state_sql(connection: duckdb.DuckDBPyConnection, sync: str) -> str:
    """A SELECT of (key, row_hash, payload, dest_ref) acknowledged for the sync bound to `$sync`.

    Sees the folded rows and any journal not folded yet (a run in progress, or one that died).
    When revetl never wrote state to this warehouse, it is an empty relation: reading writes nothing.
    """
    if not has_state(connection):
        return (
            "select null::varchar as key, null::varchar as row_hash, null::json as payload, "
            "null::varchar as dest_ref where $sync is null"
        )
    folded = f"select key, row_hash, payload, dest_ref from {SCHEMA}.acknowledged where sync = $sync"
    pending = connection.execute(f"select count(*) from {SCHEMA}.journal where sync = ?", [sync]).fetchone()[0]
    if not pending:  # the usual case: no run in progress, a plain scan
        return folded
    return f"""
        with latest as (
            select key, op, row_hash, payload, dest_ref,
                   row_number() over (partition by key order by seq desc) as newest
            from {SCHEMA}.journal where sync = $sync
        )
        select key, row_hash, payload, dest_ref from {SCHEMA}.acknowledged a
        where sync = $sync and not exists (select 1 from latest j where j.key = a.key)
        union all
        select key, row_hash, payload, dest_ref from latest where newest = 1 and op <> 'remove'
    """


def record_acks(connection: duckdb.DuckDBPyConnection, sync: str, run_id: str, acks: Sequence[Ack]) -> None:
    """Durably note acknowledged rows. Call only after the destination said yes.

    Any objects with the attributes of `Ack` will do (the engine passes planned rows as they are).
    """
    if not acks:
        return
    now = _now()
    table = pa.table(
        {
            "op": [a.op for a in acks],
            "key": [a.key for a in acks],
            "row_hash": [a.row_hash for a in acks],
            "payload": [a.payload for a in acks],
            "dest_ref": [a.dest_ref for a in acks],
        }
    )
    connection.register("revetl_acks", table)
    try:
        connection.execute(
            f"""insert into {SCHEMA}.journal
                select nextval('{SCHEMA}.journal_seq'), ?, ?, op, key, row_hash, payload::json, dest_ref, ?
                from revetl_acks""",
            [sync, run_id, now],
        )
    finally:
        connection.unregister("revetl_acks")


def record_failures(
    connection: duckdb.DuckDBPyConnection, sync: str, run_id: str, rejected: Sequence[Failure]
) -> None:
    """Note rows the destination rejected; they stay out of `acknowledged`, so the next plan retries them."""
    if not rejected:
        return
    table = pa.table(
        {
            "key": [f.key for f in rejected],
            "op": [f.op for f in rejected],
            "reason": [f.reason for f in rejected],
            "payload": [f.payload for f in rejected],
        }
    )
    connection.register("revetl_failures", table)
    try:
        connection.execute(
            f"insert into {SCHEMA}.failures select ?, ?, key, op, reason, payload::json, ? from revetl_failures",
            [run_id, sync, _now()],
        )
    finally:
        connection.unregister("revetl_failures")


def mark_crashed(connection: duckdb.DuckDBPyConnection, sync: str) -> int:
    """Close runs of `sync` left 'running' by a killed process. Call while holding the sync's lock."""
    return connection.execute(
        f"""update {SCHEMA}.runs set status = 'crashed', message = 'the process stopped before the run ended'
            where sync = ? and status = 'running' returning run_id""",
        [sync],
    ).fetchall().__len__()


def fold(connection: duckdb.DuckDBPyConnection, sync: str) -> int:
    """Move the sync's journal into `acknowledged` in one transaction; returns the rows folded."""
    pending = connection.execute(f"select count(*) from {SCHEMA}.journal where sync = ?", [sync]).fetchone()[0]
    if not pending:
        return 0
    connection.execute("begin transaction")
    try:
        connection.execute(
            f"""create temp table revetl_fold as
                select * from (
                    select *, row_number() over (partition by key order by seq desc) as newest
                    from {SCHEMA}.journal where sync = $sync
                ) where newest = 1""",
            {"sync": sync},
        )
        connection.execute(
            f"delete from {SCHEMA}.acknowledged where sync = $sync and key in (select key from revetl_fold)",
            {"sync": sync},
        )
        connection.execute(
            f"""insert into {SCHEMA}.acknowledged
                select sync, key, row_hash, payload, dest_ref, run_id, acknowledged_at
                from revetl_fold where op <> 'remove'"""
        )
        connection.execute(f"delete from {SCHEMA}.journal where sync = ?", [sync])
        connection.execute("drop table revetl_fold")
        connection.execute("commit")
    except Exception:
        connection.execute("rollback")
        raise
    return pending


def start_run(connection: duckdb.DuckDBPyConnection, sync: str, audience: str, members: int,
              planned: tuple[int, int, int], status: str = "running", message: str | None = None) -> str:
    """Open a run record and return its id. Runs left 'running' by a killed process read as 'crashed'."""
    run_id = uuid.uuid4().hex[:16]
    finished = _now() if status != "running" else None
    connection.execute(
        f"""insert into {SCHEMA}.runs (run_id, sync, audience, started_at, finished_at, status, members,
                planned_adds, planned_changes, planned_removes, message)
            values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [run_id, sync, audience, _now(), finished, status, members, *planned, message],
    )
    return run_id


def finish_run(connection: duckdb.DuckDBPyConnection, run_id: str, status: str,
               acked: tuple[int, int, int], failed: int, message: str | None = None) -> None:
    """Close a run record with its outcome."""
    connection.execute(
        f"""update {SCHEMA}.runs set finished_at = ?, status = ?, acked_adds = ?, acked_changes = ?,
                acked_removes = ?, failed = ?, message = ? where run_id = ?""",
        [_now(), status, *acked, failed, message, run_id],
    )


def _run(row: tuple[Any, ...]) -> RunRecord:
    (run_id, sync, audience, started, finished, status, members, pa_, pc, pr, aa, ac, ar, failed, message) = row
    return RunRecord(run_id, sync, audience, started, finished, status, members, (pa_, pc, pr), (aa, ac, ar),
                     failed, message)


def runs(connection: duckdb.DuckDBPyConnection, sync: str | None = None, limit: int = 20) -> list[RunRecord]:
    """Past runs, newest first (of one sync, or of all)."""
    if not has_state(connection):
        return []
    where = "where sync = $sync" if sync else ""
    rows = connection.execute(
        f"""select run_id, sync, audience, started_at, finished_at, status, members,
                   planned_adds, planned_changes, planned_removes, acked_adds, acked_changes, acked_removes,
                   failed, message
            from {SCHEMA}.runs {where} order by started_at desc limit $limit""",
        {"limit": limit, **({"sync": sync} if sync else {})},
    ).fetchall()
    return [_run(row) for row in rows]


def failures(connection: duckdb.DuckDBPyConnection, sync: str, run_id: str | None = None,
             limit: int = 100) -> list[tuple[str, str, str, str, dt.datetime]]:
    """Rejected rows of a run (default: the sync's latest run that has any): (run_id, key, op, reason, at)."""
    if not has_state(connection):
        return []
    if run_id is None:
        found = connection.execute(
            f"select run_id from {SCHEMA}.failures where sync = ? order by failed_at desc limit 1", [sync]
        ).fetchone()
        if not found:
            return []
        run_id = found[0]
    return connection.execute(
        f"""select run_id, key, op, reason, failed_at from {SCHEMA}.failures
            where sync = ? and run_id = ? order by failed_at, key limit ?""",
        [sync, run_id, limit],
    ).fetchall()


def last_sizes(connection: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Audience name -> member count at its latest run (any sync), for `revetl audiences list`."""
    if not has_state(connection):
        return {}
    rows = connection.execute(
        f"""select audience, arg_max(members, started_at) from {SCHEMA}.runs
            where members is not null group by audience"""
    ).fetchall()
    return {name: size for name, size in rows}


def reset(connection: duckdb.DuckDBPyConnection, sync: str) -> int:
    """Forget everything the sync's destination acknowledged (the next run is a full resync).

    Runs and failures are history and stay. Returns the number of acknowledged rows forgotten.
    """
    if not has_state(connection):
        return 0
    connection.execute("begin transaction")
    try:
        count = connection.execute(f"select count(*) from {SCHEMA}.acknowledged where sync = ?", [sync]).fetchone()[0]
        connection.execute(f"delete from {SCHEMA}.acknowledged where sync = ?", [sync])
        connection.execute(f"delete from {SCHEMA}.journal where sync = ?", [sync])
        connection.execute("commit")
    except Exception:
        connection.execute("rollback")
        raise
    return count


def acknowledged_rows(connection: duckdb.DuckDBPyConnection, sync: str) -> Iterable[tuple[str, str, str]]:
    """(key, row_hash, payload) as currently acknowledged: for tests and `revetl state show`."""
    if not has_state(connection):
        return []
    sql = current_state_sql(connection, sync)
    return connection.execute(f"select * from ({sql}) order by key", {"sync": sync}).fetchall()
