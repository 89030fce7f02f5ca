"""The collector's write path on one event loop: rows -> write-ahead log -> Parquet.

`land(payload, count)` returns once a request's rows are fsync'd in the log (so the request may be
acknowledged) and keeps the record in memory under its segment. A roll runs every `flush_seconds`, or as soon as
`flush_events` rows are waiting: it closes the open segment, writes the rows of every closed segment
as Parquet in a worker thread and deletes those segments. A roll that fails keeps its rows and
segment and is retried with backoff; while too many rows wait, `land` answers 503 so that memory
stays bounded and SDKs back off.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from revetl.collect.lines import LogLines
from revetl.collect.log import Done, EventLog
from revetl.collect.roller import land_segment, payloads_to_table
from revetl.errors import CollectError, LandingError

__all__ = ["Pipeline"]

_MAX_RETRY_S = 60.0


@dataclass
class _Buffer:
    payloads: list[bytes] = field(default_factory=list)
    events: int = 0


def _land(landing_dir: Path, log_dir: Path, segment: str, payloads: list[bytes]) -> list[Path]:
    return land_segment(landing_dir, log_dir, segment, payloads_to_table(payloads))


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
    ) -> None:
        self.landing_dir = Path(landing_dir)
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        """False once the log failed (every request now gets 503) or rolls keep failing."""
        return self._log.failure is None and not self._unlanded

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
        if self._log.failure is not None:
            raise CollectError("the write-ahead log has failed; the collector needs a restart", 503, "log_failed")
        if self.buffered >= self.max_buffered:
            raise CollectError(
                f"{self.buffered} events are waiting to be written as Parquet; retry shortly", 503, "overloaded"
            )
        assert self._loop is not None, "Pipeline.start() was not called"
        future: asyncio.Future[str] = self._loop.create_future()
        self._log.append(payload, (future, payload, count))
        await future

    async def close(self) -> None:
        """Roll everything acknowledged so far, then close the log (SIGTERM path)."""
        self._closing = True
        if self._task is not None:
            assert self._wake is not None
            self._wake.set()
            await self._task
        if self.buffered or self._unlanded:
            self._retry_at = 0.0
            await self._roll()
        await asyncio.to_thread(self._log.close)

    # -- log callbacks (writer thread -> loop) -------------------------------------------------

    def _committed_threadsafe(self, done: list[Done]) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._committed, done)

    def _committed(self, done: list[Done]) -> None:
        # Runs on the loop, in the order the writer finished: every append to a segment is
        # reported before the rotation that closes it.
        for (future, payload, count), segment, error in done:
            if error is None and payload is not None and segment is not None:
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

    async def _roll_forever(self) -> None:
        assert self._wake is not None
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._seconds_to_next_roll())
            except TimeoutError:
                pass
            self._wake.clear()
            if not self._closing and self._roll_due():
                await self._roll()

    def _seconds_to_next_roll(self) -> float:
        now = time.monotonic()
        due = [self._oldest + self.flush_seconds] if self._oldest is not None else [now + self.flush_seconds]
        if self._unlanded:
            due.append(self._retry_at)
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
        closed: str | None = None
        if self._buffers and self._log.failure is None:
            rotated: asyncio.Future[str] = self._loop.create_future()
            self._log.rotate((rotated, None, 0))
            try:
                closed = await rotated
            except Exception as exc:  # noqa: BLE001 - reported; a restart recovers from the log
                self._lines.error("could not close the log segment; events stay in the log", error=str(exc))
        batch: list[tuple[str, _Buffer]] = []
        if self._unlanded and time.monotonic() >= self._retry_at:
            batch, self._unlanded = self._unlanded, []
        if closed is not None:
            for segment in sorted(s for s in self._buffers if s <= closed):
                batch.append((segment, self._buffers.pop(segment)))
            if closed not in dict(batch):
                batch.append((closed, _Buffer()))  # nothing acknowledged in it: just delete the file
            self._oldest = time.monotonic() if self._buffers else None
        for segment, buffer in batch:
            await self._land_segment(segment, buffer)

    async def _land_segment(self, segment: str, buffer: _Buffer) -> None:
        started = time.perf_counter()
        try:
            files = await asyncio.to_thread(_land, self.landing_dir, self.log_dir, segment, buffer.payloads)
        except (LandingError, OSError, pa.ArrowException) as exc:
            self._unlanded.append((segment, buffer))
            self._retry_at = time.monotonic() + self._retry_delay
            self._lines.error(
                "could not roll events into Parquet; they stay in the log and will be retried",
                segment=segment, events=buffer.events, retry_in_s=self._retry_delay, error=str(exc),
            )
            self._retry_delay = min(_MAX_RETRY_S, self._retry_delay * 2)
            return
        self._retry_delay = 1.0
        self.buffered -= buffer.events
        self.landed += buffer.events
        if buffer.events:
            self._lines.info(
                "rolled", segment=segment, events=buffer.events, files=[str(f) for f in files],
                ms=round((time.perf_counter() - started) * 1000, 1),
            )
