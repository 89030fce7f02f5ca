"""One route's delivery: its feed -> filter and map -> batches -> its destination -> its cursor.

    read     rows from the route's own position in the collector's log (feed.py), as they are written
    decide   `Route.admits` (sources, types, names, `where:`), `Route.message` (mapping), the destination's
             `prepare` (None: the vendor has no such call); rows left out still move the cursor
    batch    at most the destination's events and bytes a request, sent as soon as the log has no more
             (so a quiet stream is delivered at once and a busy one in full batches)
    send     up to `concurrency` batches in flight through the shared `Http` (retries, rate limit)
    commit   in order: the cursor moves past a batch only once it and every batch before it were
             acknowledged or dead-lettered (STYLE 2), so a kill -9 resends at most the batches in flight

A batch whose retries run out, or which the destination holds (a wrong key), is tried again with backoff
(up to 30 s between tries) while later batches wait in the log, on disk. Past the route's `backlog`
bounds (its oldest undelivered event older than `max_age_hours`, or more than `max_mb` of log behind it)
the batch goes to the dead letters with the last error, and the route goes on. Events the destination
refuses for good (a 400 naming them) go there at once, with its reason.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from revetl.collect.lines import LogLines
from revetl.routes.feed import LogFeed, Position
from revetl.routes.mapping import Route
from revetl.routes.store import Counters, RouteStore, now_text
from revetl.runtime import SYSTEM, Clock

if TYPE_CHECKING:
    import httpx

    from revetl.routes.destinations.base import StreamDestination
    from revetl.sync.http import Http

__all__ = ["Batch", "RouteWorker"]

POLL_SECONDS = 0.05
MAX_PAUSE_SECONDS = 30.0
_ROWS_PER_LOOK = 5_000  # rows read before the loop yields, even when the route filters them all out


@dataclass
class Batch:
    """Events ready to send, and the log position after the last row read for them."""

    end: Position
    rows: list[dict[str, Any]] = field(default_factory=list)  # landing rows (dead letters keep these)
    items: list[dict[str, Any]] = field(default_factory=list)  # the destination's objects
    received: list[float | None] = field(default_factory=list)
    size: int = 0

    @property
    def oldest(self) -> float | None:
        times = [t for t in self.received if t is not None]
        return min(times) if times else None


@dataclass(eq=False)
class RouteWorker:
    """Delivers one route until `stop` is set; owns its feed, store and counters."""

    route: Route
    destination: StreamDestination[Any]
    feed: LogFeed
    store: RouteStore
    lines: LogLines
    clock: Clock = SYSTEM
    transport: httpx.AsyncBaseTransport | None = None  # None: the network (aiohttp)
    check_source: bool = True  # a replay from the warehouse knows no write-key source
    counters: Counters = field(default_factory=Counters)
    http: Http | None = None  # while running
    _held_since: float | None = None  # monotonic time the route began failing

    def status(self) -> dict[str, Any]:
        """The counters now, the shared client's retries included, written as the route's status."""
        self.counters.backlog_bytes = self.feed.backlog_bytes()
        snapshot = self.counters.snapshot()
        snapshot["retried"] += self.http.retries if self.http is not None else 0
        return snapshot

    async def run(self, stop: asyncio.Event, until_idle: bool = False) -> None:
        """Deliver until `stop` (or, `until_idle`, until the feed has nothing more and every batch was
        answered: a replay); batches still in flight at a stop are abandoned (resent by the next run)."""
        window: deque[tuple[Batch, asyncio.Task[None]]] = deque()
        self.counters.state, self.counters.since = "running", now_text()
        async with self.destination.client(self.transport, self.clock) as http:
            self.http = http
            try:
                while not stop.is_set():
                    self._commit(window)
                    batch = self.next_batch()
                    if batch is None and until_idle:
                        await asyncio.gather(*(task for _, task in window))
                        self._commit(window)
                        break
                    if batch is None:
                        try:
                            await asyncio.wait_for(stop.wait(), POLL_SECONDS)
                        except TimeoutError:
                            pass
                        continue
                    while len(window) >= self.destination.concurrency and not stop.is_set():
                        stopped = asyncio.ensure_future(stop.wait())
                        await asyncio.wait([window[0][1], stopped], return_when=asyncio.FIRST_COMPLETED)
                        stopped.cancel()
                        self._commit(window)
                    if stop.is_set():
                        break  # not sent: the cursor is not past it, the next run sends it
                    task = asyncio.get_running_loop().create_task(self._deliver(http, batch))
                    window.append((batch, task))
                    await asyncio.sleep(0)
            finally:
                for _, task in window:
                    task.cancel()
                await asyncio.gather(*(task for _, task in window), return_exceptions=True)
                self._commit(window)
                self.counters.state = "stopped"
                self.feed.close()
                self.store.close()

    def _commit(self, window: deque[tuple[Batch, asyncio.Task[None]]]) -> None:
        """Move the cursor past every finished batch at the head of the window, in order."""
        end = None
        while window and window[0][1].done() and not window[0][1].cancelled() and window[0][1].exception() is None:
            end = window.popleft()[0].end
        if end is not None:
            self.store.save_cursor(end)

    def next_batch(self) -> Batch | None:
        """Read until a batch is full or the log has nothing more; None when nothing at all was read."""
        batch: Batch | None = None
        limit_events, limit_bytes = self.destination.batch_events, self.destination.max_batch_bytes
        for _ in range(_ROWS_PER_LOOK):
            found = self.feed.next()
            if found is None:
                break
            event, after = found
            batch = batch or Batch(after)
            batch.end = after
            if not self.route.admits(event, self.check_source):
                self.counters.filtered += 1
                continue
            item = self.destination.prepare(self.route.message(event))
            if item is None:
                self.counters.unsupported += 1
                continue
            batch.rows.append(event)
            batch.items.append(item)
            batch.received.append(event["_received"])
            batch.size += event["_size"]  # an estimate, kept well under the vendor's limit
            if len(batch.items) >= limit_events or batch.size >= limit_bytes * 0.8:
                break
        return batch

    async def _deliver(self, http: Http, batch: Batch) -> None:
        """Send one batch until acknowledged or dead-lettered (never raises but for cancellation). Dead letters
        that cannot be written (a full disk) keep the batch, which is tried again: the cursor never passes
        an event that is neither acknowledged nor kept."""
        if not batch.items:
            return
        attempt = 0
        while True:
            try:
                if await self._attempt(http, batch):
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever failed, the batch waits and is tried again
                self._hold(exc)
            pause = min(MAX_PAUSE_SECONDS, 0.5 * 2 ** min(attempt, 6)) * (0.5 + self.clock.random())
            await self.clock.sleep(pause)
            attempt += 1
            self.counters.retried += 1

    async def _attempt(self, http: Http, batch: Batch) -> bool:
        """One try: True when the batch is done with (acknowledged, refused or dead-lettered)."""
        if self._held_since is not None and (reason := self._over_bounds(batch)):
            self._dead_letter(batch.rows, [reason] * len(batch.rows))
            return True
        try:
            verdicts = await self.destination.send(http, batch.items)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - retries run out, a held route, a bug: the same for the batch
            self._hold(exc)
            if reason := self._over_bounds(batch):
                self._dead_letter(batch.rows, [reason] * len(batch.rows))
                return True
            return False
        refused = [(row, reason) for row, reason in zip(batch.rows, verdicts) if reason is not None]
        self._dead_letter([row for row, _ in refused], [reason for _, reason in refused])
        self._released()
        now = self.clock.time()
        self.counters.delivered += len(verdicts) - len(refused)
        self.counters.batches += 1
        self.counters.observe([(now - t) * 1000 for t, v in zip(batch.received, verdicts) if t and v is None])
        return True

    def _over_bounds(self, batch: Batch) -> str | None:
        backlog = self.route.config.backlog
        oldest = batch.oldest
        if oldest is not None and self.clock.time() - oldest > backlog.max_age_hours * 3600:
            return (f"not delivered within {backlog.max_age_hours:g} h of its receipt "
                    f"(last error: {self.counters.error or 'none'})")
        behind = self.feed.backlog_bytes()
        if behind > backlog.max_mb * 1_000_000:
            return (f"the route's backlog passed {backlog.max_mb:g} MB while its destination failed "
                    f"(last error: {self.counters.error or 'none'})")
        return None

    def _dead_letter(self, rows: list[dict[str, Any]], reasons: list[str]) -> None:
        if rows:
            self.store.dead_letter(rows, reasons)
            self.counters.dead_lettered += len(rows)
            self.lines.error("events dead-lettered", route=self.route.name, events=len(rows), reason=reasons[0])

    def _hold(self, exc: BaseException) -> None:
        message = str(exc) or type(exc).__name__
        if self._held_since is None:
            self._held_since = time.monotonic()
            self.lines.error("route failing; retrying, later events wait in the log", route=self.route.name,
                             error=message)
        self.counters.state, self.counters.error = "retrying", message

    def _released(self) -> None:
        if self._held_since is not None:
            self.lines.info("route delivering again", route=self.route.name,
                            held_s=round(time.monotonic() - self._held_since, 1))
            self._held_since = None
            self.counters.state, self.counters.error = "running", None
