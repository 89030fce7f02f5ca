"""The execute stage of a sync: a plan's rows sent in batches, several in flight, each answer journaled.

    producer: batches of `batch_size` rows read from the plan's `Diff` -> queue
    workers (destination.concurrency): destination.send(batch) through the shared `Http`;
    each answered batch -> the run's journal (acknowledged rows, rejected rows with reasons),
    durable before that worker takes its next batch

Memory is bounded by the queue (2 x concurrency batches) and one Arrow batch, not the plan size.
The first worker sends the first batch alone: a bad credential or a wrong URL then costs one
request, not one per worker. Ctrl-C and SIGTERM stop the engine the same way (`Stop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from revetl.destinations import Destination, Row, RowResult
from revetl.destinations.base import ACKNOWLEDGED
from revetl.errors import DestinationError
from revetl.runtime import Clock, fewer_collections
from revetl.sync.journal import JournalWriter
from revetl.sync.plan import Diff, Plan
from revetl.sync.stop import Stop

if TYPE_CHECKING:
    import httpx
    from rich.console import Console
    from rich.progress import Progress

    from revetl.sync.http import Http

__all__ = ["Engine", "Stop", "progress_bar", "send"]


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


class Engine:
    """The queue, the workers, the journal, the counters of one run's sends."""

    def __init__(self, destination: Destination, plan: Plan, diff: Diff, journal: JournalWriter,
                 progress: Progress | None, transport: httpx.AsyncBaseTransport | None, clock: Clock) -> None:
        self.destination = destination
        self.plan = plan
        self.diff = diff
        self.journal = journal
        self.progress = progress
        self.task = progress.add_task(plan.sync, total=plan.total, failed=0) if progress else None
        self.transport = transport
        self.clock = clock
        self.acked: Counter = Counter()
        self.failed = 0
        self.probed = asyncio.Event()  # the first batch came back: the other workers may start
        self.http: Http | None = None

    async def run(self) -> None:
        destination = self.destination
        async with destination.connect(transport=self.transport, clock=self.clock) as http:  # torn down however it ends
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
        batches = self.diff.iter_batches(self.destination.batch_size)
        while (rows := await asyncio.to_thread(next, batches, None)) is not None:
            await queue.put(rows)
        for _ in range(workers):
            await queue.put(None)

    async def _work(self, queue: asyncio.Queue, first: bool) -> None:
        """Send batches until the queue says stop (the first worker alone until its first answer)."""
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


def progress_bar(console: Console | None) -> Progress | None:
    """The run's progress bar (rich.progress loads here: a run with nothing to send draws none)."""
    if console is None:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class _RateColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(f"{task.speed or 0:,.0f} rows/s", style="cyan")

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _RateColumn(),
        TextColumn("[red]{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=console,
    )


def send(engine: Engine, stop: Stop) -> BaseException | None:
    """Run the engine to its end; returns what stopped it (KeyboardInterrupt for Ctrl-C or SIGTERM), if anything."""
    import uvloop  # loaded by a run that sends

    error: BaseException | None = None
    try:
        # uvloop: 41k rows/s against 37k with asyncio's own loop (bench/sync_bench.py, 1M rows)
        with (engine.progress or contextlib.nullcontext(), fewer_collections(),
              asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner):
            runner.run(_main(engine, stop))
    except (KeyboardInterrupt, asyncio.CancelledError):
        error = KeyboardInterrupt()
    except Exception as exc:  # noqa: BLE001 - whatever stopped it, the run is recorded and says why
        error = exc
    stop.reinstall()
    return error


async def _main(engine: Engine, stop: Stop) -> None:
    task = asyncio.current_task()
    assert task is not None
    stop.watch(asyncio.get_running_loop(), task)
    await engine.run()
