"""The collector's write path on one event loop: rows -> write-ahead log -> Parquet.

`land(payload, count)` returns once a request's rows are fsync'd in the log (so the request may be
acknowledged) and keeps the record in memory under its segment. A roll runs every `flush_seconds`, or as soon as
`flush_events` rows are waiting: it closes the open segment, writes the rows of every closed segment
as Parquet in a worker thread and deletes those segments. A roll that fails keeps its rows and
segment and is retried with backoff; while too many rows wait, `land` answers 503 so that memory
stays bounded and SDKs back off.

Nothing needs a restart: while the log cannot be written (a full disk) `land` answers 503, and
every `log.RETRY_SECONDS` the roller writes an empty record to find out whether it can again;
rolls that failed are retried every few seconds. `/health` says `degraded`, with the reason,
until both work again. `close` says how many acknowledged events it could not roll.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from revetl.collect.lines import LogLines
from revetl.collect.log import RETRY_SECONDS, Done, EventLog
from revetl.collect.roller import land_segment, payloads_to_table
from revetl.errors import CollectError, LandingError

__all__ = ["Pipeline"]

_MAX_RETRY_S = 8.0  # a failed roll is retried after 1, 2, 4, 8, 8, ... seconds
_PROBE = b"[]"  # an empty record: writing it tells whether the log is writable again


@dataclass
class _Buffer:
    payloads: list[bytes] = field(default_factory=list)
    events: int = 0


def _land(landing_dir: Path, log_dir: Path, segment: str, payloads: list[bytes], keep: Path | None) -> list[Path]:
    return land_segment(landing_dir, log_dir, segment, payloads_to_table(payloads), keep)


class Pipeline:
    """Acknowledge-after-fsync logging plus periodic rolling into the landing directory."""

    def __init__(
        self,
        landing_dir: Path,
        log_dir: Path,
        flush_seconds: float,
        flush_events: int,
        max_buffered: int,
        lines: LogLines,
        sync: bool = True,
        keep: Path | None = None,
    ) -> None:
        self.landing_dir = Path(landing_dir)
        self.keep = keep  # where landed segments go for the routes to read (None: deleted)
        self.log_dir = Path(log_dir)
        self.flush_seconds = flush_seconds
        self.flush_events = flush_events
        self.max_buffered = max_buffered
        self._lines = lines
        self._log = EventLog(self.log_dir, self._committed_threadsafe, sync=sync)
        # segment -> (record payloads acknowledged but not landed yet, their row count). Payloads,
        # not row dicts: a fraction of the memory, and Arrow parses them outside the GIL.
        self._buffers: dict[str, _Buffer] = {}
        self._unlanded: list[tuple[str, _Buffer]] = []  # closed segments whose roll failed
        self.buffered = 0
        self.landed = 0
        self._oldest: float | None = None
        self._retry_at = 0.0
        self._retry_delay = 1.0
        self._closing = False
        self._roll_error: str | None = None  # why the last roll failed, until one succeeds
        self._log_down = False  # the log failed and has not been written since
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        """False while the log cannot be written (requests get 503) or rolls keep failing."""
        return self.problem is None

    @property
    def problem(self) -> str | None:
        """Why the collector is degraded, in one sentence; None when it is not."""
        if self._log.failure is not None:
            return f"the write-ahead log cannot be written: {_describe(self._log.failure)}"
        if self._unlanded:
            return f"events cannot be rolled into Parquet (retrying): {self._roll_error}"
        return None

    def start(self) -> None:
        """Open the log and start rolling; call from the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._log.start()
        self._task = self._loop.create_task(self._roll_forever(), name="revetl-collect-roller")

    async def land(self, payload: bytes, count: int) -> None:
        """Return once a record of `count` rows (`log.join_rows`) is durable; CollectError (503) if not."""
        if self._closing:
            raise CollectError("the collector is stopping; retry shortly", 503, "stopping")
        if self._log.failure is not None and time.monotonic() < self._log.retry_at:
            reason = _describe(self._log.failure)
            raise CollectError(f"the write-ahead log cannot be written ({reason}); retry shortly", 503, "log_failed")
        if self.buffered >= self.max_buffered:
            raise CollectError(
                f"{self.buffered} events are waiting to be written as Parquet; retry shortly", 503, "overloaded"
            )
        assert self._loop is not None, "Pipeline.start() was not called"
        future: asyncio.Future[str] = self._loop.create_future()
        self._log.append(payload, (future, payload, count))
        await future

    async def close(self) -> str | None:
        """Roll everything acknowledged so far, then close the log (SIGTERM path).

        Returns None when every acknowledged event is in Parquet, else why some are only in the
        log (`buffered` says how many; the next start lands them).
        """
        self._closing = True
        if self._task is not None:
            assert self._wake is not None
            self._wake.set()
            await self._task
        if self.buffered or self._unlanded or self._log.sealed:
            self._retry_at = 0.0
            await self._roll()
        await asyncio.to_thread(self._log.close)
        if not self.buffered:
            return None
        return self._roll_error or "they could not be rolled into Parquet"

    # -- log callbacks (writer thread -> loop) -------------------------------------------------

    def _committed_threadsafe(self, done: list[Done]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._committed, done)

    def _committed(self, done: list[Done]) -> None:
        # Runs on the loop, in the order the writer finished: every append to a segment is
        # reported before the rotation that closes it.
        self._note_log_state()
        for (future, payload, count), segment, error in done:
            if error is None and payload is not None and isinstance(segment, str):
                buffer = self._buffers.setdefault(segment, _Buffer())
                buffer.payloads.append(payload)
                buffer.events += count
                self.buffered += count
                if self._oldest is None:
                    self._oldest = time.monotonic()
            if not future.done():
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(segment)
        if self.buffered >= self.flush_events and self._wake is not None:
            self._wake.set()

    # -- rolling -------------------------------------------------------------------------------

    def _note_log_state(self) -> None:
        """One line when the log fails, one when it works again (not one per refused request)."""
        failure = self._log.failure
        if failure is not None and not self._log_down:
            self._log_down = True
            if self._wake is not None:
                self._wake.set()  # the roller sleeps until its next roll: it must probe the log sooner
            self._lines.error(
                "the write-ahead log cannot be written; answering 503 until it can", error=_describe(failure),
                retry_every_s=RETRY_SECONDS,
            )
        elif failure is None and self._log_down:
            self._log_down = False
            self._lines.info("the write-ahead log can be written again; accepting events")

    async def _roll_forever(self) -> None:
        assert self._wake is not None
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._seconds_to_next_roll())
            except TimeoutError:
                pass
            self._wake.clear()
            if self._closing:
                break
            if self._log.failure is not None and time.monotonic() >= self._log.retry_at:
                await self._probe_log()
            if self._roll_due():
                await self._roll()

    async def _probe_log(self) -> None:
        """Write an empty record: if it is durable, the log works again (and a new segment holds it)."""
        assert self._loop is not None
        probe: asyncio.Future[str] = self._loop.create_future()
        self._log.append(_PROBE, (probe, None, 0))
        try:
            await probe
        except CollectError:
            pass  # still failing: `retry_at` moved on, the next probe comes then

    def _seconds_to_next_roll(self) -> float:
        now = time.monotonic()
        due = [self._oldest + self.flush_seconds] if self._oldest is not None else [now + self.flush_seconds]
        if self._unlanded:
            due.append(self._retry_at)
        if self._log.failure is not None:
            due.append(self._log.retry_at)
        return max(0.01, min(due) - now)

    def _roll_due(self) -> bool:
        now = time.monotonic()
        if self._unlanded and now >= self._retry_at:
            return True
        pending = self.buffered - sum(buffer.events for _, buffer in self._unlanded)
        if pending <= 0:
            return False
        return pending >= self.flush_events or (self._oldest is not None and now - self._oldest >= self.flush_seconds)

    async def _roll(self) -> None:
        assert self._loop is not None
        closed: tuple[str, ...] = ()
        if self._buffers or self._log.sealed:
            rotated: asyncio.Future[tuple[str, ...]] = self._loop.create_future()
            self._log.rotate((rotated, None, 0))
            closed = await rotated
        batch: list[tuple[str, _Buffer]] = []
        if self._unlanded and time.monotonic() >= self._retry_at:
            batch, self._unlanded = self._unlanded, []
        if closed:
            for segment in sorted(s for s in self._buffers if s <= max(closed)):
                batch.append((segment, self._buffers.pop(segment)))
            landing = dict(batch)
            # Closed with nothing acknowledged in it (emptied, or sealed by a failed write): delete it.
            batch += [(segment, _Buffer()) for segment in closed if segment not in landing]
            self._oldest = time.monotonic() if self._buffers else None
        for segment, buffer in batch:
            await self._land_segment(segment, buffer)

    async def _land_segment(self, segment: str, buffer: _Buffer) -> None:
        started = time.perf_counter()
        try:
            files = await asyncio.to_thread(_land, self.landing_dir, self.log_dir, segment, buffer.payloads,
                                          self.keep)
        except (LandingError, OSError, pa.ArrowException) as exc:
            self._unlanded.append((segment, buffer))
            self._retry_at = time.monotonic() + self._retry_delay
            self._roll_error = f"could not write Parquet: {_describe(exc.__cause__ or exc)}"
            self._lines.error(
                "could not roll events into Parquet; they stay in the log and will be retried",
                segment=segment, events=buffer.events, retry_in_s=self._retry_delay, error=str(exc),
            )
            self._retry_delay = min(_MAX_RETRY_S, self._retry_delay * 2)
            return
        self._retry_delay = 1.0
        if not self._unlanded:
            self._roll_error = None
        self.buffered -= buffer.events
        self.landed += buffer.events
        if buffer.events:
            self._lines.info(
                "rolled", segment=segment, events=buffer.events, files=[str(f) for f in files],
                ms=round((time.perf_counter() - started) * 1000, 1),
            )


def _describe(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
