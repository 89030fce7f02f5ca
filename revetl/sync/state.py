"""Sync state in the warehouse: the only module that writes it (DESIGN 6).

Tables, in schema `revetl_state`, created and upgraded by `migrations.migrate()`:

    acknowledged  per sync, the last row the destination acknowledged for each key:
                  key, row_hash, payload (JSON), dest_ref (the destination's own id, if any)
    versions      per sync, the version of its acknowledged rows: a counter bumped in the same
                  transaction as every change of them (each chunk of a fold, a reset). A plan
                  records the version it read (`version`); apply refuses a plan whose version is
                  no longer the sync's.
    runs          one row per `revetl sync` run: counts, timing, status, message
    failures      rows the destination rejected, with its reason, per run

While a run sends, its acknowledgements go to a journal file beside the warehouse (`journal.py`),
not to the warehouse: an embedded warehouse admits one writing process, and a run takes minutes.
`apply_journal` folds a journal into `acknowledged`, `failures` and the run's record, at the end of
the run, or at the start of the next one if the process died. Readers (`current_state`) also see
journals not folded yet, loaded into the temp table `revetl_pending` by `load_pending`, so an
acknowledged batch counts from the moment its journal write returned.

Every multi-statement change goes through `transaction`. The SQL is templates of revetl's own
(warehouse/dialect.py) rendered for the connection's engine, values as parameters.
Keys are text: the audience's key column cast to VARCHAR, compared exactly (case matters).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from revetl.runtime import SYSTEM, Clock
from revetl.sync.journal import ACK_COLUMNS, JournalContents, ack_chunks, journal_run, scan
from revetl.sync.migrations import LATEST, SCHEMA, migrate, schema_version
from revetl.warehouse.base import Connection
from revetl.warehouse.dialect import Template, drop_table, temp_table

__all__ = [
    "LATEST",
    "PENDING",
    "SCHEMA",
    "RunRecord",
    "acknowledged_rows",
    "apply_journal",
    "close_dead_runs",
    "current_state",
    "failures",
    "finish_run",
    "has_state",
    "last_sizes",
    "load_pending",
    "migrate",
    "new_run_id",
    "reset",
    "runs",
    "schema_version",
    "start_run",
    "transaction",
    "version",
]

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


_BUMP = Template("""insert into revetl_state.versions values ($sync, 1)
    on conflict (sync) do update set version = versions.version + 1""")


@contextlib.contextmanager
def transaction(connection: Connection, changes: str | None = None) -> Iterator[None]:
    """One change of the state, all or nothing. `changes=SYNC` when it changes that sync's acknowledged
    rows: its version is bumped in the same transaction, so no change can leave a plan looking current."""
    with connection.transaction():
        yield
        if changes is not None:
            connection.execute(_BUMP, {"sync": changes})


_VERSIONED = 3  # the migration that made revetl_state.versions
_VERSION = Template("select version from revetl_state.versions where sync = $sync")


def version(connection: Connection, sync: str) -> int:
    """The version of the sync's acknowledged rows (0 before their first change, or without state)."""
    if schema_version(connection) < _VERSIONED:
        return 0
    found = connection.fetchall(_VERSION, {"sync": sync})
    return found[0][0] if found else 0


def has_state(connection: Connection) -> bool:
    return schema_version(connection) > 0


_FOLDED = Template("select key, row_hash, payload, dest_ref from revetl_state.acknowledged where sync = $sync")
# Reading writes nothing: where revetl never wrote state, the folded rows are an empty relation.
_NO_STATE = Template("""select null::varchar as key, null::varchar as row_hash, null::json as payload,
    null::varchar as dest_ref where $sync is null""")
_WITH_PENDING = Template("""
    with latest as (
        select key, op, row_hash, payload, dest_ref,
               row_number() over (partition by key order by seq desc) as newest
        from revetl_pending
    )
    select key, row_hash, payload, dest_ref from folded a
    where not exists (select 1 from latest j where j.key = a.key)
    union all
    select key, row_hash, payload::json, dest_ref from latest where newest = 1 and op <> 'remove'
""")


def current_state(connection: Connection, pending: bool = False) -> Template:
    """A query of (key, row_hash, payload, dest_ref) acknowledged for the sync bound to `$sync`.

    With `pending`, journals not folded yet (loaded into `revetl_pending` by `load_pending`)
    override the folded rows, key by key."""
    folded = _FOLDED if has_state(connection) else _NO_STATE
    if not pending:  # the usual case: no run in progress, a plain scan
        return folded
    return _WITH_PENDING.fill(folded=folded)


def _load_acks(connection: Connection, table: str, journals: Sequence[Path]) -> int:
    """Stream the acknowledged rows of `journals` into a new temp table; returns how many there were."""
    columns = {name: "bigint" if name == "seq" else "varchar" for name in ACK_COLUMNS}
    connection.execute(drop_table(table))
    connection.execute(temp_table(table, columns=columns))
    loaded = 0
    for chunk in ack_chunks(journals):
        with connection.scratch("revetl_chunk", chunk) as name:
            connection.execute(Template(f"insert into {table} select * from {name}"))
        loaded += chunk.num_rows
    return loaded


def load_pending(connection: Connection, journals: Sequence[Path]) -> bool:
    """Load the acknowledgements of unfolded `journals` (oldest first) into the temp table `revetl_pending`.

    Returns whether there were any; `current_state(connection, pending=True)` then reads them.
    The caller drops the table (`drop_table(PENDING)`) when done."""
    if not journals:
        return False
    if _load_acks(connection, PENDING, journals):
        return True
    connection.execute(drop_table(PENDING))
    return False


_FORGET_CHUNK = Template("""delete from revetl_state.acknowledged
    where sync = $sync and key in (select key from revetl_chunk)""")
_INSERT_CHUNK = Template("""insert into revetl_state.acknowledged
    select $sync, key, row_hash, payload::json, dest_ref, $run, $now
    from revetl_chunk where op <> 'remove'""")
# A run acknowledges each key once; ordering by `seq` is only needed if one did not.
_INSERT_LATEST = Template("""insert into revetl_state.acknowledged
    select $sync, key, row_hash, payload::json, dest_ref, $run, $now
    from (select *, row_number() over (partition by key order by seq desc) as newest from revetl_chunk) latest
    where newest = 1 and op <> 'remove'""")


def _fold(connection: Connection, sync: str, contents: JournalContents, now: dt.datetime) -> None:
    """Fold a journal's acknowledged rows into `acknowledged`, one transaction per chunk, filling
    `contents` from the same pass.

    Each chunk replaces the rows of its keys: a later acknowledgement of a key (a later chunk, or a
    later row of the same chunk) wins, and a remove leaves no row."""
    import pyarrow.compute as pc  # pyarrow loads when there are acknowledgements to fold

    for chunk in scan(contents.path, contents):
        keys = chunk.column("key")
        insert = _INSERT_CHUNK if len(pc.unique(keys)) == len(keys) else _INSERT_LATEST
        with connection.scratch("revetl_chunk", chunk), transaction(connection, changes=sync):
            connection.execute(_FORGET_CHUNK, {"sync": sync})
            connection.execute(insert, {"sync": sync, "run": contents.run_id, "now": now})


_RUN_STATUS = Template("select status from revetl_state.runs where run_id = $run")
_RECORD_REJECTS = Template("""insert into revetl_state.failures
    select $run, $sync, key, op, reason, payload::json, $now from revetl_rejects""")


def apply_journal(connection: Connection, sync: str, path: Path, status: str | None = None,
                  message: str | None = None, clock: Clock = SYSTEM) -> JournalContents | None:
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
        found = connection.fetchall(_RUN_STATUS, {"run": run_id})
        if found and found[0][0] != "running":
            return None
    contents = JournalContents(path)
    now = clock.now()
    _fold(connection, sync, contents, now)
    status = status or contents.status or "crashed"
    if message is None:
        message = contents.message
    if message is None and status == "crashed":
        kept = contents.acknowledged
        message = (f"the process stopped before the run ended; the {kept:,} rows it had acknowledged are kept"
                   if kept else "the process stopped before the run ended, before any row was acknowledged")
    with transaction(connection):
        if contents.rejects:
            import pyarrow as pa

            columns = list(zip(*contents.rejects))
            rejects = pa.table({name: pa.array(values, pa.string())
                                for name, values in zip(("op", "key", "reason", "payload"), columns)})
            with connection.scratch("revetl_rejects", rejects):
                connection.execute(_RECORD_REJECTS, {"run": run_id or "unknown", "sync": sync, "now": now})
        if run_id is not None:
            ended = None
            if status == "crashed" and contents.path.is_file():  # when it last wrote, not when this fold runs
                ended = dt.datetime.fromtimestamp(contents.path.stat().st_mtime, dt.timezone.utc)
            finish_run(connection, run_id, status, contents.counts, len(contents.rejects), message,
                       ended or clock.now())
    return contents


def new_run_id() -> str:
    return uuid.uuid4().hex[:16]


_START_RUN = Template("""insert into revetl_state.runs (run_id, sync, audience, started_at, finished_at, status, members,
        planned_adds, planned_changes, planned_removes, message)
    values ($run, $sync, $audience, $now, $finished, $status, $members, $adds, $changes, $removes,
            $message)""")


def start_run(connection: Connection, sync: str, audience: str, members: int | None,
              planned: tuple[int | None, int | None, int | None], status: str = "running",
              message: str | None = None, run_id: str | None = None, clock: Clock = SYSTEM) -> str:
    """Open a run record and return its id (a new one unless given). A status other than `running`
    records a run that ended at once (refused by the guard, nothing to send, failed to plan)."""
    run_id = run_id or new_run_id()
    now = clock.now()
    adds, changes, removes = planned
    connection.execute(_START_RUN, {
        "run": run_id, "sync": sync, "audience": audience, "now": now, "finished": now if status != "running" else None,
        "status": status, "members": members, "adds": adds, "changes": changes, "removes": removes,
        "message": message,
    })
    return run_id


_CLOSE_DEAD = Template("""update revetl_state.runs set status = 'crashed', finished_at = $now,
        message = 'the process stopped before the run sent anything'
    where sync = $sync and status = 'running' returning run_id""")


def close_dead_runs(connection: Connection, sync: str, clock: Clock = SYSTEM) -> int:
    """Close runs of `sync` still marked running that left no journal (killed before their first batch).
    Call while holding the sync's lock, after folding its journals."""
    return len(connection.fetchall(_CLOSE_DEAD, {"now": clock.now(), "sync": sync}))


_FINISH_RUN = Template("""update revetl_state.runs set finished_at = $at, status = $status, acked_adds = $adds,
        acked_changes = $changes, acked_removes = $removes, failed = $failed, message = $message
    where run_id = $run""")


def finish_run(connection: Connection, run_id: str, status: str, acked: tuple[int, int, int], failed: int,
               message: str | None, finished_at: dt.datetime) -> None:
    """Close a run record with its outcome."""
    adds, changes, removes = acked
    connection.execute(_FINISH_RUN, {
        "at": finished_at, "status": status, "adds": adds, "changes": changes, "removes": removes,
        "failed": failed, "message": message, "run": run_id,
    })


_RUNS = Template("""select run_id, sync, audience, started_at, finished_at, status, members,
           planned_adds, planned_changes, planned_removes, acked_adds, acked_changes, acked_removes,
           failed, message
    from revetl_state.runs where $sync is null or sync = $sync order by started_at desc limit $limit""")


def runs(connection: Connection, sync: str | None = None, limit: int = 20) -> list[RunRecord]:
    """Past runs, newest first (of one sync, or of all)."""
    if not has_state(connection):
        return []
    return [_run_record(row) for row in connection.fetchall(_RUNS, {"sync": sync, "limit": limit})]


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    (run_id, sync, audience, started, finished, status, members, pa_, pc_, pr, aa, ac, ar, failed, message) = row
    return RunRecord(run_id, sync, audience, started, finished, status, members, (pa_, pc_, pr), (aa, ac, ar),
                     failed, message)


_LAST_FAILED_RUN = Template("""select run_id from revetl_state.failures where sync = $sync order by failed_at desc limit 1""")
_FAILURES = Template("""select run_id, key, op, reason, failed_at from revetl_state.failures
    where sync = $sync and run_id = $run order by failed_at, revetl_bytewise(key) limit $limit""")


def failures(connection: Connection, sync: str, run_id: str | None = None,
             limit: int = 100) -> list[tuple[str, str, str, str, dt.datetime]]:
    """Rejected rows of a run (default: the sync's latest run that has any): (run_id, key, op, reason, at)."""
    if not has_state(connection):
        return []
    if run_id is None:
        found = connection.fetchall(_LAST_FAILED_RUN, {"sync": sync})
        if not found:
            return []
        run_id = found[0][0]
    return connection.fetchall(_FAILURES, {"sync": sync, "run": run_id, "limit": limit})


_LAST_SIZES = Template("""select audience, members from (
        select audience, members, row_number() over (partition by audience order by started_at desc) as newest
        from revetl_state.runs where members is not null
    ) latest where newest = 1""")


def last_sizes(connection: Connection) -> dict[str, int]:
    """Audience name -> member count at its latest run (any sync), for `revetl audiences list`."""
    if not has_state(connection):
        return {}
    return dict(connection.fetchall(_LAST_SIZES))


_COUNT = Template("select count(*) from revetl_state.acknowledged where sync = $sync")
_FORGET = Template("delete from revetl_state.acknowledged where sync = $sync")


def reset(connection: Connection, sync: str) -> int:
    """Forget everything the sync's destination acknowledged (the next run is a full resync).

    Runs and failures are history and stay. Returns the number of acknowledged rows forgotten.
    """
    if not has_state(connection):
        return 0
    with transaction(connection, changes=sync):
        count = connection.scalar(_COUNT, {"sync": sync})
        connection.execute(_FORGET, {"sync": sync})
    return count


_ORDERED = Template("select * from state order by revetl_bytewise(key)")


def acknowledged_rows(connection: Connection, sync: str,
                      journals: Sequence[Path] = ()) -> Iterable[tuple[str, str, str, str]]:
    """(key, row_hash, payload, dest_ref) as currently acknowledged, unfolded `journals` included."""
    pending = load_pending(connection, journals)
    try:
        if not has_state(connection) and not pending:
            return []
        return connection.fetchall(_ORDERED.fill(state=current_state(connection, pending)), {"sync": sync})
    finally:
        if pending:
            connection.execute(drop_table(PENDING))
