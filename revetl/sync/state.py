"""Sync state in the warehouse: the only module that writes it (DESIGN 6).

Tables, in schema `revetl_state`, created and migrated by `migrate()` (versioned):

    migrations    version, description, applied_at
    acknowledged  per sync, the last row the destination acknowledged for each key:
                  key, row_hash, payload (JSON), dest_ref (the destination's own id, if any)
    runs          one row per `revetl sync` run: counts, timing, status, message
    failures      rows the destination rejected, with its reason, per run

While a run sends, its acknowledgements go to a journal file beside the warehouse (`journal.py`),
not to the warehouse: an embedded warehouse admits one writing process, and a run takes minutes.
`apply_journal` folds a journal into `acknowledged`, `failures` and the run's record in one
transaction, at the end of the run, or at the start of the next one if the process died. Readers
(`current_state_sql`) also see journals not folded yet, loaded into the temp table
`revetl_pending` by `load_pending`, so an acknowledged batch counts from the moment its journal
write returned.

Keys are text: the audience's key column cast to VARCHAR, compared exactly (case matters).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from revetl.errors import WarehouseError
from revetl.sync.journal import ACK_SCHEMA, JournalContents, ack_chunks, journal_run, scan

__all__ = [
    "PENDING",
    "SCHEMA",
    "RunRecord",
    "acknowledged_rows",
    "apply_journal",
    "close_dead_runs",
    "current_state_sql",
    "failures",
    "finish_run",
    "has_state",
    "last_sizes",
    "migrate",
    "new_run_id",
    "load_pending",
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
    (
        2,
        "acknowledgements of a run in progress move to a journal file beside the warehouse",
        [
            # Fold what a run of an older revetl left in the table journal, then drop it.
            f"""create temp table revetl_fold_v2 as
                select * from (
                    select *, row_number() over (partition by sync, key order by seq desc) as newest
                    from {SCHEMA}.journal
                ) where newest = 1""",
            f"""delete from {SCHEMA}.acknowledged a using revetl_fold_v2 f
                where a.sync = f.sync and a.key = f.key""",
            f"""insert into {SCHEMA}.acknowledged
                select sync, key, row_hash, payload, dest_ref, run_id, acknowledged_at
                from revetl_fold_v2 where op <> 'remove'""",
            "drop table revetl_fold_v2",
            f"drop table {SCHEMA}.journal",
            f"drop sequence {SCHEMA}.journal_seq",
        ],
    ),
]
LATEST = MIGRATIONS[-1][0]
PENDING = "revetl_pending"  # journals not folded yet, loaded into a temp table by `load_pending`

OPS = ("add", "change", "remove")


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
    ).fetchall()[0][0]
    if not exists:
        return 0
    return connection.execute(f"select coalesce(max(version), 0) from {SCHEMA}.migrations").fetchall()[0][0]


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
            with contextlib.suppress(duckdb.Error):  # a failed commit has already ended the transaction
                connection.execute("rollback")
            raise
    return LATEST


def current_state_sql(connection: duckdb.DuckDBPyConnection, pending: bool = False) -> str:
    """A SELECT of (key, row_hash, payload, dest_ref) acknowledged for the sync bound to `$sync`.

    With `pending`, journals not folded yet (loaded into `revetl_pending` by `load_pending`)
    override the folded rows, key by key. When revetl never wrote state to this warehouse, the folded
    part is an empty relation: reading writes nothing.
    """
    if has_state(connection):
        folded = f"select key, row_hash, payload, dest_ref from {SCHEMA}.acknowledged where sync = $sync"
    else:
        folded = (
            "select null::varchar as key, null::varchar as row_hash, null::json as payload, "
            "null::varchar as dest_ref where $sync is null"
        )
    if not pending:  # the usual case: no run in progress, a plain scan
        return folded
    return f"""
        with latest as (
            select key, op, row_hash, payload, dest_ref,
                   row_number() over (partition by key order by seq desc) as newest
            from {PENDING}
        )
        select key, row_hash, payload, dest_ref from ({folded}) a
        where not exists (select 1 from latest j where j.key = a.key)
        union all
        select key, row_hash, payload::json, dest_ref from latest where newest = 1 and op <> 'remove'
    """


def _load_acks(connection: duckdb.DuckDBPyConnection, table: str, journals: Sequence[Path]) -> int:
    """Stream the acknowledged rows of `journals` into a new temp table; returns how many there were."""
    columns = ", ".join(f"{field.name} {'bigint' if field.name == 'seq' else 'varchar'}" for field in ACK_SCHEMA)
    connection.execute(f"create or replace temp table {table} ({columns})")
    loaded = 0
    for chunk in ack_chunks(journals):
        connection.register("revetl_chunk", chunk)
        try:
            connection.execute(f"insert into {table} select * from revetl_chunk")
        finally:
            connection.unregister("revetl_chunk")
        loaded += chunk.num_rows
    return loaded


def load_pending(connection: duckdb.DuckDBPyConnection, journals: Sequence[Path]) -> bool:
    """Load the acknowledgements of unfolded `journals` (oldest first) into the temp table `revetl_pending`.

    Returns whether there were any; `current_state_sql(connection, pending=True)` then reads them.
    The caller drops the table (`drop table revetl_pending`) when done."""
    if not journals:
        return False
    if _load_acks(connection, PENDING, journals):
        return True
    connection.execute(f"drop table {PENDING}")
    return False


def _fold(connection: duckdb.DuckDBPyConnection, sync: str, contents: JournalContents, now: dt.datetime) -> None:
    """Fold a journal's acknowledged rows into `acknowledged`, one transaction per chunk, filling
    `contents` from the same pass.

    Each chunk replaces the rows of its keys: a later acknowledgement of a key (a later chunk, or a
    later row of the same chunk) wins, and a remove leaves no row."""
    for chunk in scan(contents.path, contents):
        keys = chunk.column("key")
        # A run acknowledges each key once; ordering by `seq` is only needed if one did not.
        latest = "" if len(pc.unique(keys)) == len(keys) else (
            "qualify row_number() over (partition by key order by seq desc) = 1")
        connection.register("revetl_chunk", chunk)
        connection.execute("begin transaction")
        try:
            connection.execute(
                f"delete from {SCHEMA}.acknowledged where sync = $sync and key in (select key from revetl_chunk)",
                {"sync": sync},
            )
            connection.execute(
                f"""insert into {SCHEMA}.acknowledged
                    select $sync, key, row_hash, payload::json, dest_ref, $run, $now
                    from (select * from revetl_chunk {latest}) where op <> 'remove'""",
                {"sync": sync, "run": contents.run_id, "now": now},
            )
            connection.execute("commit")
        except BaseException:
            with contextlib.suppress(duckdb.Error):  # a failed commit has already ended the transaction
                connection.execute("rollback")
            raise
        finally:
            connection.unregister("revetl_chunk")


def apply_journal(connection: duckdb.DuckDBPyConnection, sync: str, path: Path,
                  status: str | None = None, message: str | None = None) -> JournalContents | None:
    """Fold one run's journal into the state: its acknowledged rows into `acknowledged`, then, in one
    transaction, its rejected rows into `failures` and its counts, status and message onto its run.
    Returns what the journal held (one pass over it), or None when there was nothing to do.

    The acknowledged rows go in chunk by chunk, one transaction each (so memory holds one chunk, not a
    run of millions): each chunk only replaces the rows of its own keys, so a fold cut short is simply
    done again by the next fold of the same journal, which stays until the run is closed. A journal
    whose run is already closed was folded before (a crash after the fold, before the file was deleted):
    it is left alone. `status`/`message` default to what the journal says about its own end, else
    `crashed`.
    """
    run_id = journal_run(path)
    if run_id is not None:
        found = connection.execute(f"select status from {SCHEMA}.runs where run_id = ?", [run_id]).fetchall()
        if found and found[0][0] != "running":
            return None
    contents = JournalContents(path)
    now = _now()
    _fold(connection, sync, contents, now)
    status = status or contents.status or "crashed"
    if message is None:
        message = contents.message
    if message is None and status == "crashed":
        kept = contents.acknowledged
        message = (f"the process stopped before the run ended; the {kept:,} rows it had acknowledged are kept"
                   if kept else "the process stopped before the run ended, before any row was acknowledged")
    connection.execute("begin transaction")
    try:
        if contents.rejects:
            columns = list(zip(*contents.rejects))
            connection.register("revetl_rejects", pa.table({
                "op": pa.array(columns[0], pa.string()), "key": pa.array(columns[1], pa.string()),
                "reason": pa.array(columns[2], pa.string()), "payload": pa.array(columns[3], pa.string()),
            }))
            connection.execute(
                f"insert into {SCHEMA}.failures select ?, ?, key, op, reason, payload::json, ? from revetl_rejects",
                [run_id or "unknown", sync, now],
            )
            connection.unregister("revetl_rejects")
        if run_id is not None:
            ended = None
            if status == "crashed" and contents.path.is_file():  # when it last wrote, not when this fold runs
                ended = dt.datetime.fromtimestamp(contents.path.stat().st_mtime, dt.timezone.utc)
            finish_run(connection, run_id, status, contents.counts, len(contents.rejects), message, ended)
        connection.execute("commit")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # a failed commit has already ended the transaction
            connection.execute("rollback")
        raise
    return contents


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


def start_run(connection: duckdb.DuckDBPyConnection, sync: str, audience: str, members: int | None,
              planned: tuple[int | None, int | None, int | None], status: str = "running",
              message: str | None = None, run_id: str | None = None) -> str:
    """Open a run record and return its id (a new one unless given). A status other than `running`
    records a run that ended at once (refused by the guard, nothing to send, failed to plan)."""
    run_id = run_id or new_run_id()
    finished = _now() if status != "running" else None
    connection.execute(
        f"""insert into {SCHEMA}.runs (run_id, sync, audience, started_at, finished_at, status, members,
                planned_adds, planned_changes, planned_removes, message)
            values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [run_id, sync, audience, _now(), finished, status, members, *planned, message],
    )
    return run_id


def close_dead_runs(connection: duckdb.DuckDBPyConnection, sync: str) -> int:
    """Close runs of `sync` still marked running that left no journal (killed before their first batch).
    Call while holding the sync's lock, after folding its journals."""
    return len(connection.execute(
        f"""update {SCHEMA}.runs set status = 'crashed', finished_at = ?,
                message = 'the process stopped before the run sent anything'
            where sync = ? and status = 'running' returning run_id""",
        [_now(), sync],
    ).fetchall())


def finish_run(connection: duckdb.DuckDBPyConnection, run_id: str, status: str,
               acked: tuple[int, int, int], failed: int, message: str | None = None,
               finished_at: dt.datetime | None = None) -> None:
    """Close a run record with its outcome."""
    connection.execute(
        f"""update {SCHEMA}.runs set finished_at = ?, status = ?, acked_adds = ?, acked_changes = ?,
                acked_removes = ?, failed = ?, message = ? where run_id = ?""",
        [finished_at or _now(), status, *acked, failed, message, run_id],
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
        ).fetchall()
        if not found:
            return []
        run_id = found[0][0]
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
        count = connection.execute(f"select count(*) from {SCHEMA}.acknowledged where sync = ?", [sync]).fetchall()[0][0]
        connection.execute(f"delete from {SCHEMA}.acknowledged where sync = ?", [sync])
        connection.execute("commit")
    except Exception:
        with contextlib.suppress(duckdb.Error):  # a failed commit has already ended the transaction
            connection.execute("rollback")
        raise
    return count


def acknowledged_rows(connection: duckdb.DuckDBPyConnection, sync: str,
                      journals: Sequence[Path] = ()) -> Iterable[tuple[str, str, str, str]]:
    """(key, row_hash, payload, dest_ref) as currently acknowledged, unfolded `journals` included."""
    pending = load_pending(connection, journals)
    try:
        if not has_state(connection) and not pending:
            return []
        sql = current_state_sql(connection, pending)
        return connection.execute(f"select * from ({sql}) order by key", {"sync": sync}).fetchall()
    finally:
        if pending:
            connection.execute(f"drop table {PENDING}")

