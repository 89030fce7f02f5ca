"""Apply a plan: stream its rows in destination-sized batches, several in flight, and advance the
state batch by batch, only for rows the destination acknowledged (DESIGN 6, STYLE 2).

    run_sync(project, sync)
      lock the sync (a second run exits at once; the kernel drops the lock if the process dies)
      plan step, the warehouse held read-write for seconds (sandboxed: the audience runs there):
          migrate the state tables; fold the journals a killed run left and close its run record;
          plan (the same SQL as `revetl plan`); refuse a guarded plan unless forced;
          write the diff to a Parquet file beside the warehouse; open the run record
      send step, the warehouse not held at all:
          producer: batches of `batch_size` rows read from the diff file -> queue
          workers (destination.concurrency): destination.send(batch) through the shared `Http`;
          each answered batch -> the run's journal (acknowledged rows, rejected rows with reasons),
          durable before that worker takes its next batch
      end step, the warehouse held read-write for seconds: fold the journal into the state and close
          the run record in one transaction; delete the journal and the diff file

So any number of syncs, plans, previews and a build share the embedded warehouse: each holds it
only for its short steps, and `warehouse.connect` waits its turn. Memory is bounded by the queue
(2 x concurrency batches) and one Arrow batch, not the plan size.

Every way a run can stop ends with one sentence and a recorded run: a fatal answer (401/403, quota),
retries exhausted, an unreachable or dying destination (`failed`, with the destination's message and
no secret), Ctrl-C or SIGTERM (`cancelled`), a full disk (`failed`; if the warehouse cannot take the
record either, the journal keeps it and the next run records it). What was acknowledged is kept.

Resends: a kill at any moment resends at most the batches that were in flight, one per worker
(`concurrency` batches: 32 x 75 rows for Braze), never a batch whose acknowledgement was journaled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
import uvloop
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from revetl import locks
from revetl.sync import state
from revetl.config import Project, SyncConfig
from revetl.destinations import Destination, Row, RowResult, load_destination
from revetl.destinations.base import ACKNOWLEDGED, secret_values
from revetl.errors import (
    DestinationError,
    RevetlError,
    StateError,
    SyncCancelled,
    SyncRefused,
    WarehouseError,
    first_line,
)
from revetl.sync.http import Http
from revetl.sync.journal import JournalContents, JournalWriter, journal_dir, new_journal_path, pending_journals, read_journal
from revetl.sync.plan import Diff, Plan, make_plan, write_diff
from revetl.runtime import fewer_collections
from revetl.sync.state import RunRecord

__all__ = ["RunResult", "acknowledged_rows", "apply_audience", "forget", "live_runs", "run_sync", "sync_lock"]


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


def _lock_path(project: Project, sync: str) -> Path:
    from revetl.warehouse.connection import work_dir

    return locks.lock_path(work_dir(project), sync)


def sync_lock(project: Project, sync: str) -> contextlib.AbstractContextManager[None]:
    """Hold the sync's lock, or raise SyncRefused naming the process that holds it (revetl/locks.py)."""
    return locks.hold(_lock_path(project, sync), lambda holder: SyncRefused(
        f"sync {sync} is already running ({holder}); not starting a second run"))


def _failpoint(name: str) -> None:
    """Test hook: REVETL_FAILPOINT=name:N kills this process (SIGKILL) the Nth time `name` is reached.

    The crash tests use it to stop a sync at exact points (e.g. right after a batch was applied
    but before its acknowledgement reached the journal). Unset in normal use: a dict lookup.
    """
    spec = os.environ.get("REVETL_FAILPOINT")
    if not spec or not spec.startswith(name + ":"):
        return
    _FAILPOINT_HITS[name] = _FAILPOINT_HITS.get(name, 0) + 1
    if _FAILPOINT_HITS[name] >= int(spec.split(":", 1)[1]):
        os.kill(os.getpid(), signal.SIGKILL)


_FAILPOINT_HITS: dict[str, int] = {}


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class _Engine:
    """The send step: the queue, the workers, the journal, the counters."""

    def __init__(self, destination: Destination, plan: Plan, diff: Diff, journal: JournalWriter,
                 progress: Progress | None, transport: httpx.AsyncBaseTransport | None) -> None:
        self.destination = destination
        self.plan = plan
        self.diff = diff
        self.journal = journal
        self.progress = progress
        self.task = progress.add_task(plan.sync, total=plan.total, failed=0) if progress else None
        self.transport = transport
        self.acked: Counter = Counter()
        self.failed = 0
        self.probed = asyncio.Event()  # the first batch came back: the other workers may start
        self.http: Http | None = None

    async def run(self) -> None:
        destination = self.destination
        async with destination.connect(transport=self.transport) as http:  # set up, and torn down however it ends
            self.http = http
            queue: asyncio.Queue[list[Row] | None] = asyncio.Queue(maxsize=2 * destination.concurrency)
            workers = [asyncio.create_task(self._work(queue, first=i == 0)) for i in range(destination.concurrency)]
            producer = asyncio.create_task(self._produce(queue, len(workers)))
            try:
                await asyncio.gather(producer, *workers)
            finally:
                for task in (producer, *workers):
                    task.cancel()
                await asyncio.gather(producer, *workers, return_exceptions=True)

    async def _produce(self, queue: asyncio.Queue, workers: int) -> None:
        batches = self.diff.batches(self.destination.batch_size)
        while (rows := await asyncio.to_thread(next, batches, None)) is not None:
            await queue.put(rows)
        for _ in range(workers):
            await queue.put(None)

    async def _work(self, queue: asyncio.Queue, first: bool) -> None:
        """Send batches until the queue says stop. The first worker sends the first batch alone: a bad
        credential or a wrong URL then costs one request, not one per worker."""
        assert self.http is not None
        if not first:
            await self.probed.wait()
        while (rows := await queue.get()) is not None:
            results = await self.destination.send(self.http, rows)
            if len(results) != len(rows):
                raise DestinationError(
                    f"{self.destination.type} returned {len(results)} results for {len(rows)} rows (a destination bug)"
                )
            _failpoint("after_send")
            await self._record(rows, results)
            self.probed.set()
        self.probed.set()  # a plan of one batch: the others see the queue's end (after a failure they are cancelled)

    async def _record(self, rows: Sequence[Row], results: Sequence[RowResult]) -> None:
        """Journal one answered batch (durably), then count it."""
        if all(result is ACKNOWLEDGED for result in results):  # the usual batch: every row accepted as planned
            await self.journal.write_acknowledged(rows)
            self.acked.update(row.op for row in rows)
            if self.progress is not None:
                self.progress.update(self.task, advance=len(rows))
            return
        acks, rejects = [], []
        for row, result in zip(rows, results):
            if result.ok:
                acks.append((row.op, row.key, row.row_hash, row.payload, result.dest_ref or row.dest_ref))
            else:
                rejects.append((row.op, row.key, result.reason or "rejected", row.payload))
        await self.journal.write(acks, rejects)
        self.acked.update(ack[0] for ack in acks)
        self.failed += len(rejects)
        if self.progress is not None:
            self.progress.update(self.task, advance=len(rows), failed=self.failed)


class _RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0:,.0f} rows/s", style="cyan")


def _progress(console: Console | None) -> Progress | None:
    if console is None:
        return None
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=console,
    )


class _Stop:
    """Ctrl-C and SIGTERM stop a run the same way: the run is cancelled cleanly, and says which.

    Outside the event loop SIGTERM raises KeyboardInterrupt, as Ctrl-C does; inside it, both cancel
    the running engine (asyncio.Runner does that for Ctrl-C; `watch` adds SIGTERM)."""

    def __init__(self) -> None:
        self.signal = "Ctrl-C"

    def _terminate(self, signum: int, frame: Any) -> None:
        self.signal = "SIGTERM"
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = signal.signal(signal.SIGTERM, self._terminate)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def reinstall(self) -> None:
        """After the event loop closed (it resets the handlers it had)."""
        signal.signal(signal.SIGTERM, self._terminate)

    def watch(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task) -> None:
        def terminate() -> None:
            self.signal = "SIGTERM"
            task.cancel()

        loop.add_signal_handler(signal.SIGTERM, terminate)


def run_sync(project: Project, sync: SyncConfig, *, force: bool = False, console: Console | None = None,
             transport: httpx.AsyncBaseTransport | None = None,
             connection: duckdb.DuckDBPyConnection | None = None) -> RunResult:
    """Plan and apply one sync. Raises SyncRefused when locked or guarded; returns the run's result
    otherwise (check `ok`); a run that stopped (fatal answer, retries exhausted, Ctrl-C/SIGTERM, a
    full disk) is recorded and its error re-raised, with the result as `error.result`."""
    from revetl.audiences.compile import compile_audience, load_audience

    destination = load_destination(sync)  # config errors before anything is locked or written
    sql = compile_audience(project, load_audience(project, sync.audience))
    return apply_audience(project, sync, destination, sql, force=force, console=console, transport=transport,
                          connection=connection)


@contextlib.contextmanager
def _warehouse(project: Project, given: duckdb.DuckDBPyConnection | None) -> Iterator[duckdb.DuckDBPyConnection]:
    """The given connection (tests, benchmarks), or the warehouse opened read-write and sandboxed for one step."""
    from revetl.warehouse.connection import connect, sync_memory_limit

    if given is not None:
        yield given
        return
    connection = connect(project, memory_limit=sync_memory_limit(), sandbox=True)
    try:
        yield connection
    finally:
        connection.close()


def apply_audience(project: Project, sync: SyncConfig, destination: Destination, sql: str, *, force: bool = False,
                   console: Console | None = None, transport: httpx.AsyncBaseTransport | None = None,
                   connection: duckdb.DuckDBPyConnection | None = None) -> RunResult:
    """`run_sync` for an already compiled audience query (tests and benchmarks call it directly)."""
    from revetl.warehouse.connection import work_dir

    secrets = secret_values(destination.config)
    stop = _Stop()
    with sync_lock(project, sync.name), stop.installed():
        directory = journal_dir(work_dir(project), sync.name)
        try:
            with _warehouse(project, connection) as warehouse:
                plan, diff, run_id = _plan_step(project, warehouse, sync, sql, force, directory)
        except KeyboardInterrupt:
            raise SyncCancelled(f"sync {sync.name} was stopped by {stop.signal} while planning; nothing was sent") from None
        result = RunResult(sync.name, run_id, plan)
        if diff is None:  # nothing to send: no connection, no authentication, no request
            result.status = "succeeded"
            return result
        error = _send_step(destination, plan, diff, result, directory, stop, console, transport, secrets)
        _end_step(project, connection, sync, result, diff, error, stop)
        if error is None:
            return result
        if isinstance(error, KeyboardInterrupt):
            raised: RevetlError = SyncCancelled(result.message)
        elif isinstance(error, RevetlError):
            raised = error.with_message(result.message)  # its type, attributes and cause kept
        else:  # a bug: one sentence here, its traceback (the cause) with --debug
            raised = RevetlError(result.message)
        raised.result = result  # type: ignore[attr-defined]  # the CLI's summary shows it
        raise raised from (None if isinstance(error, RevetlError | KeyboardInterrupt) else error)


def _plan_step(project: Project, warehouse: duckdb.DuckDBPyConnection, sync: SyncConfig, sql: str, force: bool,
               directory: Path) -> tuple[Plan, Diff | None, str]:
    """Recover, plan, record the run's start and write its diff file; returns (plan, diff or None, run id)."""
    state.migrate(warehouse)
    _recover(project, warehouse, sync.name)
    try:
        plan = make_plan(warehouse, sync, sql)
    except WarehouseError as exc:
        _record_failed_start(warehouse, sync, str(exc))
        raise
    planned = (plan.adds, plan.changes, plan.removes)
    if not plan.guard.ok and not force:
        state.start_run(warehouse, sync.name, sync.audience, plan.members, planned, status="refused",
                        message=plan.guard.reason)
        raise SyncRefused(f"sync {sync.name} refused: {plan.guard.reason}; use --force to apply it anyway")
    if not plan.total:
        run_id = state.start_run(warehouse, sync.name, sync.audience, plan.members, planned, status="succeeded")
        return plan, None, run_id
    run_id = state.new_run_id()
    try:
        diff = write_diff(warehouse, directory / f"{run_id}.plan.parquet")
    except RevetlError as exc:
        _record_failed_start(warehouse, sync, f"sync {sync.name}: {exc}", plan)
        raise
    state.start_run(warehouse, sync.name, sync.audience, plan.members, planned, run_id=run_id)
    return plan, diff, run_id


def _record_failed_start(warehouse: duckdb.DuckDBPyConnection, sync: SyncConfig, message: str,
                         plan: Plan | None = None) -> None:
    """Record a run that could not start sending, if the warehouse can still take it (a full disk may refuse)."""
    planned = (plan.adds, plan.changes, plan.removes) if plan else (None, None, None)
    with contextlib.suppress(duckdb.Error):
        state.start_run(warehouse, sync.name, sync.audience, plan.members if plan else None, planned,
                        status="failed", message=message)


def _recover(project: Project, warehouse: duckdb.DuckDBPyConnection, sync: str) -> None:
    """Fold the journals a killed or unrecorded run left, close its run record, remove its files.
    Call while holding the sync's lock: no live run of this sync can own them."""
    from revetl.warehouse.connection import work_dir

    directory = journal_dir(work_dir(project), sync)
    for path in pending_journals(work_dir(project), sync):
        state.apply_journal(warehouse, sync, path)
        path.unlink()
    state.close_dead_runs(warehouse, sync)
    for leftover in directory.glob("*.plan.parquet") if directory.is_dir() else ():
        leftover.unlink(missing_ok=True)


def _send_step(destination: Destination, plan: Plan, diff: Diff, result: RunResult, directory: Path, stop: _Stop,
               console: Console | None, transport: httpx.AsyncBaseTransport | None,
               secrets: list[str]) -> BaseException | None:
    """Send the diff; returns the error that stopped the run, if any. The journal is closed on return."""
    assert result.run_id is not None
    journal = JournalWriter(new_journal_path(directory, result.run_id), plan.sync, result.run_id)
    result.journal = journal.path
    progress = _progress(console)
    engine = _Engine(destination, plan, diff, journal, progress, transport)
    started = time.monotonic()
    error: BaseException | None = None
    try:
        # uvloop: 41k rows/s against 37k with asyncio's own loop (bench/sync_bench.py, 1M rows)
        with (progress or contextlib.nullcontext(), fewer_collections(),
              asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner):
            runner.run(_engine_main(engine, stop))
    except (KeyboardInterrupt, asyncio.CancelledError):
        error = KeyboardInterrupt()
    except Exception as exc:  # noqa: BLE001 - whatever stopped it, the run is recorded and says why
        error = exc
    stop.reinstall()
    result.seconds = time.monotonic() - started
    if engine.http is not None:
        result.requests, result.retries = engine.http.requests, engine.http.retries
    _conclude(result, engine, error, stop, secrets)
    journal.end(result.status, result.message)
    journal.close()
    return error


async def _engine_main(engine: _Engine, stop: _Stop) -> None:
    task = asyncio.current_task()
    assert task is not None
    stop.watch(asyncio.get_running_loop(), task)
    await engine.run()


def _conclude(result: RunResult, engine: _Engine, error: BaseException | None, stop: _Stop,
              secrets: list[str]) -> None:
    """The run's status and one-sentence message, from how the send step ended."""
    result.acked, result.failed = engine.acked, engine.failed
    sync, done = result.sync, f"{result.acknowledged:,} of {result.planned:,} rows acknowledged"
    if isinstance(error, KeyboardInterrupt):
        result.status = "cancelled"
        result.message = f"sync {sync} was stopped by {stop.signal}; {done}, the next run resumes"
    elif error is not None:
        result.status = "failed"
        reason = str(error) if isinstance(error, RevetlError) else f"unexpected {type(error).__name__}: {error}"
        result.message = _scrub(f"{reason}; {done}, the next run resumes", secrets)
    elif result.failed:
        result.status = "failed"
        result.message = f"{result.failed:,} rows rejected by {engine.destination.type}; see `revetl failures {sync}`"
    else:
        result.status = "succeeded"


def _end_step(project: Project, given: duckdb.DuckDBPyConnection | None, sync: SyncConfig, result: RunResult,
              diff: Diff, error: BaseException | None, stop: _Stop) -> None:
    """Fold the journal into the state and close the run record; then remove the run's files."""
    path = result.journal
    assert path is not None
    try:
        with _warehouse(project, given) as warehouse:
            contents = state.apply_journal(warehouse, sync.name, path, result.status, result.message)
    except KeyboardInterrupt:
        raise SyncCancelled(
            f"sync {sync.name} was stopped by {stop.signal} while recording its run; {path} keeps what was "
            "acknowledged and the next run records it"
        ) from None
    except (RevetlError, duckdb.Error) as exc:
        reason = str(exc) if isinstance(exc, RevetlError) else first_line(exc)
        first = f"{result.message}; " if error is not None and result.message else ""
        raise StateError(
            f"{first}sync {sync.name} could not record its run in the warehouse ({reason}); {path} keeps what "
            "was acknowledged and the next run records it"
        ) from None
    if contents is not None:  # the journal is the record: what the destination acknowledged, whatever the engine saw
        result.acked = Counter(dict(zip(("add", "change", "remove"), contents.counts)))
        result.failed = len(contents.rejects)
    path.unlink(missing_ok=True)
    diff.path.unlink(missing_ok=True)


def live_runs(project: Project, records: Sequence[RunRecord]) -> list[RunRecord]:
    """Runs as `revetl runs` shows them: a run still marked `running` shows what its journal has
    acknowledged so far, and, if no process holds its sync any more, how it ended (`crashed` unless
    its journal says otherwise)."""
    from revetl.warehouse.connection import work_dir

    shown = []
    for record in records:
        if record.status == "running":
            found = list(journal_dir(work_dir(project), record.sync).glob(f"*-{record.run_id}.journal"))
            contents = read_journal(found[0]) if found else JournalContents(Path())
            status = record.status
            if not locks.held(_lock_path(project, record.sync)):
                status = contents.status or "crashed"
            record = dataclasses.replace(record, status=status, acked=contents.counts, failed=len(contents.rejects),
                                         message=contents.message or record.message)
        shown.append(record)
    return shown


def forget(project: Project, sync: str, reset: Callable[[duckdb.DuckDBPyConnection], int]) -> int:
    """`revetl state reset`: with the sync locked, record what a killed run left, then forget."""
    from revetl.warehouse.connection import connect

    with sync_lock(project, sync), contextlib.closing(connect(project)) as warehouse:
        state.migrate(warehouse)
        _recover(project, warehouse, sync)
        return reset(warehouse)


def acknowledged_rows(project: Project, sync: str) -> list[tuple[str, str, str, str]]:
    """(key, row_hash, payload, dest_ref) the destination has acknowledged, journals not folded yet included."""
    from revetl.warehouse.connection import connect, work_dir

    journals = pending_journals(work_dir(project), sync)
    with contextlib.closing(connect(project, read_only=True)) as warehouse:
        return list(state.acknowledged_rows(warehouse, sync, journals))
