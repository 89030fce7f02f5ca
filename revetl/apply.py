"""Apply a plan: stream its rows in destination-sized batches, several in flight, and advance the
state batch by batch, only for rows the destination acknowledged (DESIGN 6, STYLE 2).

    run_sync(project, sync)
      lock the sync (a second run exits at once; the kernel drops the lock if the process dies)
      migrate the state tables, fold what a killed run left in the journal, close its run record
      plan (the same SQL as `revetl plan`); refuse a guarded plan unless forced
      producer: Arrow record batches from the plan's diff -> batches of `batch_size` rows -> queue
      workers (destination.concurrency): destination.send(batch) through the shared `Http`
      writer: every 0.2 s, acknowledged rows -> journal, rejected rows -> failures (one transaction)
      end: fold the journal into `acknowledged`, close the run record, print the summary

Memory is bounded by the queue (2 x concurrency batches) and one Arrow batch, not the plan size.
A failure of the whole destination (401, quota, retries exhausted) stops the run after recording
what was acknowledged so far; the next run resumes from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import duckdb
import httpx
import pyarrow as pa
import uvloop
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text

from revetl import state
from revetl.config import Project, SyncConfig
from revetl.destinations import Destination, Row, RowResult, load_destination
from revetl.destinations.base import ACKNOWLEDGED, secret_values
from revetl.errors import DestinationError, RevetlError, SyncRefused
from revetl.http import Http, RateLimiter, RetryPolicy
from revetl.plan import Plan, make_plan
from revetl.runtime import fewer_collections

__all__ = ["RunResult", "apply_audience", "run_sync", "sync_lock"]

FLUSH_SECONDS = 0.2
READ_ROWS = 20_000  # rows per Arrow batch read from the plan


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

    @property
    def planned(self) -> int:
        return self.plan.total

    @property
    def acknowledged(self) -> int:
        return sum(self.acked.values())

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


@contextlib.contextmanager
def sync_lock(project: Project, sync: str) -> Iterator[None]:
    """Hold the sync's lock file, or raise SyncRefused naming the process that holds it.

    flock is released by the kernel when the process dies, even by SIGKILL: no stale lock.
    """
    from revetl.warehouse import duckdb_path

    directory = duckdb_path(project).with_suffix(".locks")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{sync}.lock"
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise SyncRefused(f"sync {sync} is already running (pid {holder}); not starting a second run") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def _failpoint(name: str) -> None:
    """Test hook: REVETL_FAILPOINT=name:N kills this process (SIGKILL) the Nth time `name` is reached.

    The crash tests use it to stop a sync at exact points (e.g. right after a batch was applied
    but before its acknowledgement reached the state). Unset in normal use: a dict lookup.
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
    """One run's moving parts: the queue, the workers, the state writer, the counters."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, destination: Destination, plan: Plan,
                 run_id: str, progress: Progress | None, transport: httpx.AsyncBaseTransport | None) -> None:
        self.connection = connection
        self.writer = connection.cursor()  # its own connection: writes while the reader streams
        self.destination = destination
        self.plan = plan
        self.run_id = run_id
        self.progress = progress
        self.task = progress.add_task(plan.sync, total=plan.total, failed=0) if progress else None
        self.transport = transport
        self.acks: list[state.Ack | Row] = []
        self.rejects: list[state.Failure] = []
        self.acked: Counter = Counter()
        self.failed = 0
        self.write_lock = asyncio.Lock()
        self.stopping = asyncio.Event()
        self.probed = asyncio.Event()  # the first batch came back: the other workers may start
        self.http: Http | None = None

    async def run(self) -> None:
        destination = self.destination
        limit = destination.rate_limit()
        http = Http(
            destination.config.base_url,
            limiter=RateLimiter(*limit) if limit else None,
            timeout=destination.config.timeout,
            transport=self.transport,
            label=f"{destination.type} (sync {self.plan.sync})",
            connections=destination.concurrency,  # each request in flight has a connection of its own
            policy=RetryPolicy(attempts=destination.config.attempts),
            **destination.http_options(),
        )
        self.http = http
        async with http:
            await destination.open(http)
            queue: asyncio.Queue[list[Row] | None] = asyncio.Queue(maxsize=2 * destination.concurrency)
            flusher = asyncio.create_task(self._flush_every(FLUSH_SECONDS))
            workers = [asyncio.create_task(self._work(queue, first=i == 0)) for i in range(destination.concurrency)]
            producer = asyncio.create_task(self._produce(queue, len(workers)))
            try:
                await asyncio.gather(producer, *workers)
            finally:
                for task in (producer, *workers):
                    task.cancel()
                await asyncio.gather(producer, *workers, return_exceptions=True)
                # Not cancelled: a write running in its thread would go on beside the final flush.
                self.stopping.set()
                await asyncio.gather(flusher, return_exceptions=True)
                await self.flush()

    async def _produce(self, queue: asyncio.Queue, workers: int) -> None:
        reader = await asyncio.to_thread(
            lambda: self.connection.sql(
                "select op, key, payload, row_hash, dest_ref, previous_payload from revetl_diff"
            ).to_arrow_reader(READ_ROWS)
        )
        size = self.destination.batch_size

        def read() -> pa.RecordBatch | None:  # StopIteration cannot cross a thread into a future
            try:
                return reader.read_next_batch()
            except StopIteration:
                return None

        rows: list[Row] = []  # a short tail waits for the next Arrow batch: every batch but the last is full
        while (batch := await asyncio.to_thread(read)) is not None:
            rows += map(Row._make, zip(*(column.to_pylist() for column in batch.columns)))
            full = len(rows) - len(rows) % size
            for start in range(0, full, size):
                await queue.put(rows[start : start + size])
            rows = rows[full:]
        if rows:
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
            self._record(rows, results)
            self.probed.set()
        self.probed.set()

    def _record(self, rows: Sequence[Row], results: Sequence[RowResult]) -> None:
        if all(result is ACKNOWLEDGED for result in results):
            # The usual batch: every row accepted as planned. A Row carries the fields of an Ack.
            self.acks.extend(rows)
            self.acked.update(row.op for row in rows)
            if self.progress is not None:
                self.progress.update(self.task, advance=len(rows))
            return
        failed = 0
        for row, result in zip(rows, results):
            if result.ok:
                self.acks.append(state.Ack(row.op, row.key, row.row_hash, row.payload, result.dest_ref or row.dest_ref))
                self.acked[row.op] += 1
            else:
                self.rejects.append(state.Failure(row.op, row.key, result.reason or "rejected", row.payload))
                failed += 1
        self.failed += failed
        if self.progress is not None:
            self.progress.update(self.task, advance=len(rows), failed=self.failed)

    async def _flush_every(self, seconds: float) -> None:
        while not self.stopping.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), seconds)
            await self.flush()

    async def flush(self) -> None:
        """Write buffered acknowledgements and rejects in one transaction."""
        async with self.write_lock:
            acks, self.acks = self.acks, []
            rejects, self.rejects = self.rejects, []
            if acks or rejects:
                await asyncio.to_thread(self._write, acks, rejects)

    def _write(self, acks: list[state.Ack | Row], rejects: list[state.Failure]) -> None:
        self.writer.execute("begin transaction")
        try:
            state.record_acks(self.writer, self.plan.sync, self.run_id, acks)
            state.record_failures(self.writer, self.plan.sync, self.run_id, rejects)
            self.writer.execute("commit")
        except BaseException:
            self.writer.execute("rollback")
            raise


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


def run_sync(project: Project, sync: SyncConfig, *, force: bool = False, console: Console | None = None,
             transport: httpx.AsyncBaseTransport | None = None,
             connection: duckdb.DuckDBPyConnection | None = None) -> RunResult:
    """Plan and apply one sync. Raises SyncRefused when locked or guarded; returns the run's result
    otherwise (check `ok`); a fatal destination error is recorded on the run and re-raised."""
    from revetl.audiences import compile_audience, load_audience

    destination = load_destination(sync)  # config errors before anything is locked or written
    sql = compile_audience(project, load_audience(project, sync.audience))
    return apply_audience(project, sync, destination, sql, force=force, console=console, transport=transport,
                          connection=connection)


def apply_audience(project: Project, sync: SyncConfig, destination: Destination, sql: str, *, force: bool = False,
                   console: Console | None = None, transport: httpx.AsyncBaseTransport | None = None,
                   connection: duckdb.DuckDBPyConnection | None = None) -> RunResult:
    """`run_sync` for an already compiled audience query (tests and benchmarks call it directly)."""
    from revetl.warehouse import connect, sync_memory_limit

    secrets = secret_values(destination.config)
    with sync_lock(project, sync.name):
        own = connection is None
        connection = connection or connect(project, memory_limit=sync_memory_limit())
        try:
            state.migrate(connection)
            state.mark_crashed(connection, sync.name)
            state.fold(connection, sync.name)
            plan = make_plan(connection, sync, sql)
            planned = (plan.adds, plan.changes, plan.removes)
            if not plan.guard.ok and not force:
                state.start_run(connection, sync.name, sync.audience, plan.members, planned, status="refused",
                                message=plan.guard.reason)
                raise SyncRefused(f"sync {sync.name} refused: {plan.guard.reason}; use --force to apply it anyway")
            run_id = state.start_run(connection, sync.name, sync.audience, plan.members, planned)
            result = RunResult(sync.name, run_id, plan)
            started = time.monotonic()
            progress = _progress(console) if plan.total else None
            engine = _Engine(connection, destination, plan, run_id, progress, transport)
            error: BaseException | None = None
            try:
                if plan.total:  # nothing to send: no connection, no authentication, no request
                    # uvloop: 41k rows/s against 37k with asyncio's own loop (bench/sync_bench.py, 1M rows)
                    with (progress or contextlib.nullcontext(), fewer_collections(),
                          asyncio.Runner(loop_factory=uvloop.new_event_loop) as loop):
                        loop.run(engine.run())
            except (RevetlError, KeyboardInterrupt) as exc:
                error = exc
            result.seconds = time.monotonic() - started
            result.acked, result.failed = engine.acked, engine.failed
            if engine.http is not None:
                result.requests, result.retries = engine.http.requests, engine.http.retries
            state.fold(connection, sync.name)
            if error is not None:
                result.status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
                result.message = _scrub(str(error) or type(error).__name__, secrets)
            elif result.failed:
                result.status = "failed"
                result.message = f"{result.failed:,} rows rejected by {sync.destination_type}; see `revetl failures {sync.name}`"
            else:
                result.status = "succeeded"
            acked = (result.acked["add"], result.acked["change"], result.acked["remove"])
            state.finish_run(connection, run_id, result.status, acked, result.failed, result.message)
            if isinstance(error, RevetlError):
                raise type(error)(result.message) from None
            if isinstance(error, KeyboardInterrupt):
                raise error
            return result
        finally:
            if own:
                connection.close()
