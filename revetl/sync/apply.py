"""Apply a plan, in stages: advance the state batch by batch, only for rows the destination
acknowledged (DESIGN 6, STYLE 2).

    prepare  lock the sync (a second run exits at once; the kernel drops the lock if the process dies);
             migrate the state tables; fold the journals a killed run left and close its run record
    plan     the audience diffed against the state (the same SQL as `revetl plan`); the rows that will
             be sent written to a Parquet file beside the warehouse, owned by the plan (`Diff`)
    guard    refuse a plan made against older state (StateError) and, unless forced, one the guard
             refused (SyncRefused); a plan with nothing to send ends here; else open the run record
    execute  send the rows in destination-sized batches, several in flight, each answer journaled
             (engine.py); the warehouse is not held at all
    finish   fold the journal into the state and close the run record; delete the journal and the diff

prepare, plan and guard hold the warehouse read-write for seconds (sandboxed: the audience runs there),
finish for seconds again. So any number of syncs, plans, previews and a build share the embedded
warehouse: each holds it only for its short steps, and `warehouse.connect` waits its turn.

Every way a run can stop ends with one sentence and a recorded run: a fatal answer (401/403, quota),
retries exhausted, an unreachable or dying destination (`failed`, with the destination's message and
no secret), Ctrl-C or SIGTERM (`cancelled`), a full disk (`failed`; if the warehouse cannot take the
record either, the journal keeps it and the next run records it). What was acknowledged is kept. The
error that stopped the run is raised as it is (type, attributes, cause), with how far the run got
added as a note, and the run's result as `error.result`.

Resends: a kill at any moment resends at most the batches that were in flight, one per worker
(`concurrency` batches: 32 x 75 rows for Braze), never a batch whose acknowledgement was journaled.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from revetl.config import Project, SyncConfig
from revetl.destinations import Destination, load_destination
from revetl.errors import RevetlError, StateError, SyncCancelled, SyncRefused, WarehouseError, scrub
from revetl.runtime import SYSTEM, Clock
from revetl.sync import state
from revetl.sync.journal import JournalContents, JournalWriter, journal_dir, new_journal_path, pending_journals, read_journal
from revetl.sync.lock import sync_lock, sync_locked
from revetl.sync.plan import Plan, make_plan, write_diff
from revetl.sync.stop import Stop
from revetl.sync.state import RunRecord
from revetl.warehouse.connection import Connection, connect, sync_memory_limit, work_dir

if TYPE_CHECKING:
    import httpx

__all__ = ["RunResult", "acknowledged_rows", "apply_audience", "apply_plan", "forget", "live_runs", "run_sync"]


@dataclass
class RunResult:
    """What one run did; `ok` only when every planned row was acknowledged."""

    sync: str
    run_id: str | None
    plan: Plan
    acked: Counter = field(default_factory=Counter)
    failed: int = 0
    status: str = "running"
    message: str | None = None
    seconds: float = 0.0
    requests: int = 0
    retries: int = 0
    journal: Path | None = None  # the run's journal while it sends

    @property
    def planned(self) -> int:
        return self.plan.total

    @property
    def acknowledged(self) -> int:
        return sum(self.acked.values())

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def run_sync(project: Project, sync: SyncConfig, *, force: bool = False, console: Console | None = None,
             transport: httpx.AsyncBaseTransport | None = None, connection: Connection | None = None,
             clock: Clock = SYSTEM) -> RunResult:
    """Plan and apply one sync. Raises SyncRefused when locked or guarded; returns the run's result
    otherwise (check `ok`); a run that stopped (fatal answer, retries exhausted, Ctrl-C/SIGTERM, a
    full disk) is recorded and its error re-raised, with the result as `error.result`."""
    from revetl.audiences.compile import compile_audience, load_audience

    destination = load_destination(sync)  # config errors before anything is locked or written
    sql = compile_audience(project, load_audience(project, sync.audience))
    return apply_audience(project, sync, destination, sql, force=force, console=console, transport=transport,
                          connection=connection, clock=clock)


def apply_audience(project: Project, sync: SyncConfig, destination: Destination, sql: str, *, force: bool = False,
                   console: Console | None = None, transport: httpx.AsyncBaseTransport | None = None,
                   connection: Connection | None = None, clock: Clock = SYSTEM) -> RunResult:
    """`run_sync` for an already compiled audience query (tests and benchmarks call it directly)."""
    return _Run(project, sync, destination, force, console, transport, connection, clock).apply(sql=sql)


def apply_plan(project: Project, sync: SyncConfig, destination: Destination, plan: Plan, *, force: bool = False,
               console: Console | None = None, transport: httpx.AsyncBaseTransport | None = None,
               connection: Connection | None = None, clock: Clock = SYSTEM) -> RunResult:
    """Apply a plan made earlier (`make_plan`, then `write_diff` to keep its rows). Refused with StateError,
    nothing sent, when the sync's state changed since the plan was made."""
    return _Run(project, sync, destination, force, console, transport, connection, clock).apply(plan=plan)


@dataclass
class _Run:
    """One run of a sync through its stages; the methods are the stages."""

    project: Project
    sync: SyncConfig
    destination: Destination
    force: bool
    console: Console | None
    transport: httpx.AsyncBaseTransport | None
    given: Connection | None  # a connection to use instead of opening the warehouse (tests, benchmarks)
    clock: Clock
    stop: Stop = field(default_factory=Stop)
    run_id: str = field(default_factory=state.new_run_id)

    @property
    def directory(self) -> Path:
        return journal_dir(work_dir(self.project), self.sync.name)

    def apply(self, sql: str | None = None, plan: Plan | None = None) -> RunResult:
        """prepare -> plan (unless given one) -> guard -> execute -> finish; see the module docstring."""
        with sync_lock(self.project, self.sync.name), self.stop.installed():
            try:
                with self._warehouse() as warehouse:
                    _prepare(self.project, warehouse, self.sync.name, self.clock, keep=plan)
                    if plan is None:
                        assert sql is not None
                        plan = self.plan(warehouse, sql)
                    result = self.guard(warehouse, plan)
            except KeyboardInterrupt:
                raise SyncCancelled(
                    f"sync {self.sync.name} was stopped by {self.stop.signal} while planning; nothing was sent"
                ) from None
            if result.ok:  # nothing to send: no connection, no authentication, no request
                return result
            error = self.execute(plan, result)
            self.finish(plan, result, error)
        if error is None:
            return result
        raised = self._stopped(result, error)
        if raised is error:
            raise error
        raise raised from (None if isinstance(error, KeyboardInterrupt) else error)

    @contextlib.contextmanager
    def _warehouse(self) -> Iterator[Connection]:
        """The given connection, or the warehouse opened read-write and sandboxed for one step."""
        if self.given is not None:
            yield self.given
            return
        with connect(self.project, memory_limit=sync_memory_limit(), sandbox=True, clock=self.clock) as warehouse:
            yield warehouse

    def plan(self, warehouse: Connection, sql: str) -> Plan:
        """The audience diffed against the state; its rows kept in a file when they will be sent."""
        try:
            plan = make_plan(warehouse, self.sync, sql, clock=self.clock)
        except WarehouseError as exc:
            self._record_failed_start(warehouse, str(exc))
            raise
        if not plan.total or not (plan.guard.ok or self.force):
            return plan
        try:
            return write_diff(warehouse, plan, self.directory / f"{self.run_id}.plan.parquet")
        except RevetlError as exc:
            self._record_failed_start(warehouse, f"sync {self.sync.name}: {exc}", plan)
            raise

    def guard(self, warehouse: Connection, plan: Plan) -> RunResult:
        """Refuse a stale plan, or a guarded one unless forced; record the run's start. The result is
        already `succeeded` when there is nothing to send."""
        sync = self.sync
        current = state.version(warehouse, sync.name)
        if plan.state_version != current:
            raise StateError(
                f"sync {sync.name}: its state changed since the plan was made (version {plan.state_version}, "
                f"now {current}); nothing was sent, plan again"
            )
        planned = (plan.adds, plan.changes, plan.removes)
        if not plan.guard.ok and not self.force:
            state.start_run(warehouse, sync.name, sync.audience, plan.members, planned, status="refused",
                            message=plan.guard.reason, clock=self.clock)
            raise SyncRefused(f"sync {sync.name} refused: {plan.guard.reason}; use --force to apply it anyway")
        if not plan.total:
            run_id = state.start_run(warehouse, sync.name, sync.audience, plan.members, planned,
                                     status="succeeded", clock=self.clock)
            return RunResult(sync.name, run_id, plan, status="succeeded")
        if plan.diff is None:
            raise StateError(f"sync {sync.name}: the plan was made to be shown and holds no rows to send; plan again")
        state.start_run(warehouse, sync.name, sync.audience, plan.members, planned, run_id=self.run_id,
                        clock=self.clock)
        return RunResult(sync.name, self.run_id, plan)

    def _record_failed_start(self, warehouse: Connection, message: str, plan: Plan | None = None) -> None:
        """Record a run that could not start sending, if the warehouse can still take it (a full disk may refuse)."""
        planned = (plan.adds, plan.changes, plan.removes) if plan else (None, None, None)
        with contextlib.suppress(WarehouseError):
            state.start_run(warehouse, self.sync.name, self.sync.audience, plan.members if plan else None, planned,
                            status="failed", message=message, clock=self.clock)

    def execute(self, plan: Plan, result: RunResult) -> BaseException | None:
        """Send the plan's rows; returns the error that stopped the run, if any. The journal is closed on return."""
        from revetl.sync.engine import Engine, progress_bar, send  # asyncio and the HTTP stack: a run that sends

        assert result.run_id is not None and plan.diff is not None
        journal = JournalWriter(new_journal_path(self.directory, result.run_id, self.clock), plan.sync, result.run_id)
        result.journal = journal.path
        engine = Engine(self.destination, plan, plan.diff, journal, progress_bar(self.console), self.transport,
                        self.clock)
        started = self.clock.monotonic()
        error = send(engine, self.stop)
        result.seconds = self.clock.monotonic() - started
        if engine.http is not None:
            result.requests, result.retries = engine.http.requests, engine.http.retries
        result.acked, result.failed = engine.acked, engine.failed
        _conclude(result, error, self.stop, self.destination)
        journal.end(result.status, result.message)
        journal.close()
        return error

    def finish(self, plan: Plan, result: RunResult, error: BaseException | None) -> None:
        """Fold the journal into the state and close the run record; then remove the run's files."""
        path, name = result.journal, self.sync.name
        assert path is not None and plan.diff is not None
        try:
            with self._warehouse() as warehouse:
                contents = state.apply_journal(warehouse, name, path, result.status, result.message, self.clock)
        except KeyboardInterrupt:
            raise SyncCancelled(
                f"sync {name} was stopped by {self.stop.signal} while recording its run; {path} keeps what was "
                "acknowledged and the next run records it"
            ) from None
        except RevetlError as exc:
            first = f"{result.message}; " if error is not None and result.message else ""
            raise StateError(
                f"{first}sync {name} could not record its run in the warehouse ({exc}); {path} keeps what "
                "was acknowledged and the next run records it"
            ) from exc
        if contents is not None:  # the journal is the record: what the destination acknowledged, whatever the engine saw
            result.acked = Counter(dict(zip(state.OPS, contents.counts)))
            result.failed = len(contents.rejects)
        path.unlink(missing_ok=True)
        plan.diff.discard()

    def _stopped(self, result: RunResult, error: BaseException) -> BaseException:
        """The error to raise for a run that stopped: the one that stopped it, as it is (a signal becomes
        SyncCancelled; a bug, one sentence with the bug as its cause), the run's result attached."""
        if isinstance(error, KeyboardInterrupt):
            raised: BaseException = SyncCancelled(result.message)
        elif isinstance(error, RevetlError):
            error.add_note(_how_far(result))
            raised = error
        else:  # its traceback, the cause, with --debug
            raised = RevetlError(result.message)
        raised.result = result  # type: ignore[attr-defined]  # the CLI's summary shows it
        return raised


def _prepare(project: Project, warehouse: Connection, sync: str, clock: Clock, keep: Plan | None = None) -> None:
    """Migrate the state; fold the journals a killed or unrecorded run left, close its run record, remove
    its files (not the diff of the plan `keep`, about to be applied). Call holding the sync's lock: no
    live run of this sync can own them."""
    state.migrate(warehouse, clock)
    for path in pending_journals(work_dir(project), sync):
        state.apply_journal(warehouse, sync, path, clock=clock)
        path.unlink()
    state.close_dead_runs(warehouse, sync, clock)
    directory = journal_dir(work_dir(project), sync)
    kept = keep.diff.path if keep is not None and keep.diff is not None else None
    for leftover in directory.glob("*.plan.parquet") if directory.is_dir() else ():
        if leftover != kept:
            leftover.unlink(missing_ok=True)


def _how_far(result: RunResult) -> str:
    return f"{result.acknowledged:,} of {result.planned:,} rows acknowledged, the next run resumes"


def _conclude(result: RunResult, error: BaseException | None, stop: Stop, destination: Destination) -> None:
    """The run's status and one-sentence message, from how the execute stage ended."""
    sync = result.sync
    if isinstance(error, KeyboardInterrupt):
        result.status = "cancelled"
        result.message = f"sync {sync} was stopped by {stop.signal}; {_how_far(result)}"
    elif error is not None:
        result.status = "failed"
        reason = str(error) if isinstance(error, RevetlError) else f"unexpected {type(error).__name__}: {error}"
        result.message = scrub(f"{reason}; {_how_far(result)}", destination.secrets)
    elif result.failed:
        result.status = "failed"
        result.message = f"{result.failed:,} rows rejected by {destination.type}; see `revetl failures {sync}`"
    else:
        result.status = "succeeded"


def live_runs(project: Project, records: Sequence[RunRecord]) -> list[RunRecord]:
    """Runs as `revetl runs` shows them: a run still marked `running` shows what its journal has
    acknowledged so far, and, if no process holds its sync any more, how it ended (`crashed` unless
    its journal says otherwise)."""
    shown = []
    for record in records:
        if record.status == "running":
            found = list(journal_dir(work_dir(project), record.sync).glob(f"*-{record.run_id}.journal"))
            contents = read_journal(found[0]) if found else JournalContents(Path())
            status = record.status
            if not sync_locked(project, record.sync):
                status = contents.status or "crashed"
            record = dataclasses.replace(record, status=status, acked=contents.counts, failed=len(contents.rejects),
                                         message=contents.message or record.message)
        shown.append(record)
    return shown


def forget(project: Project, sync: str, reset: Callable[[Connection], int], clock: Clock = SYSTEM) -> int:
    """`revetl state reset`: with the sync locked, record what a killed run left, then forget."""
    with sync_lock(project, sync), connect(project, clock=clock) as warehouse:
        _prepare(project, warehouse, sync, clock)
        return reset(warehouse)


def acknowledged_rows(project: Project, sync: str) -> list[tuple[str, str, str, str]]:
    """(key, row_hash, payload, dest_ref) the destination has acknowledged, journals not folded yet included."""
    journals = pending_journals(work_dir(project), sync)
    with connect(project, read_only=True) as warehouse:
        return list(state.acknowledged_rows(warehouse, sync, journals))
