"""`revetl routes replay`: history from the warehouse's `events` model (or a route's dead letters) sent
through a route, with its filter, mapping, batches, limits and idempotency keys.

The events are read once into a Parquet file beside the collector's log (so the warehouse is held only
while they are read, never while they are sent), then delivered by the same `RouteWorker` as live
events. A replay knows no write-key source (the `events` model has none): `sources:` is not applied.
Re-sending what the destination already has is harmless: every event carries its `messageId` as the
vendor's idempotency key. `--dry-run` counts what would go and sends nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from revetl.collect.lines import LogLines
from revetl.collect.settings import collector_dir
from revetl.config import Project
from revetl.routes.config import load_route
from revetl.routes.deliver import RouteWorker
from revetl.routes.destinations import load_stream_destination
from revetl.routes.feed import Position
from revetl.routes.mapping import Route, event_of
from revetl.routes.store import RouteStore, routes_state_dir

__all__ = ["ReplayResult", "replay_route"]

COLUMNS = ("message_id", "type", "event", "anonymous_id", "user_id", "group_id", "previous_id", "timestamp",
           "received_at", "properties", "traits", "context")
_END = Position("~replay")


@dataclass
class ReplayResult:
    read: int
    sent: int  # events handed to the destination (would be, in a dry run)
    filtered: int
    unsupported: int
    delivered: int
    dead_lettered: int


class RowsFeed:
    """A feed (as `LogFeed`) over rows in memory or a Parquet file: for replays."""

    def __init__(self, rows: Iterator[dict[str, Any]]) -> None:
        self._rows = rows
        self.read = 0

    def next(self) -> tuple[dict[str, Any], Position] | None:
        row = next(self._rows, None)
        if row is None:
            return None
        self.read += 1
        return event_of(row), _END

    def backlog_bytes(self) -> int:
        return 0

    def close(self) -> None:
        """Nothing to close."""


class _NoCursor(RouteStore):
    """A route's store whose cursor a replay never moves (dead letters still go to the route's own)."""

    def save_cursor(self, position: Position) -> None:
        """A replay has no position in the log."""


def _warehouse_rows(project: Project, since: dt.datetime, until: dt.datetime | None, spool: Path
                    ) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    from revetl.warehouse.connection import connect

    sql = (f"select {', '.join(COLUMNS)} from events where timestamp >= ?"
           + (" and timestamp < ?" if until is not None else "") + " order by timestamp, message_id")
    parameters = [since, until] if until is not None else [since]
    with connect(project, read_only=True) as connection:
        reader = connection.source.stream(sql, parameters)  # on Spark, the models are not in the state file
        with pq.ParquetWriter(spool, reader.schema) as writer:
            for batch in reader:
                writer.write_batch(batch)
        reader.close()
    for batch in pq.ParquetFile(spool).iter_batches(batch_size=5_000):
        yield from batch.to_pylist()


def replay_route(project: Project, name: str, since: dt.datetime | None = None, until: dt.datetime | None = None,
                 dry_run: bool = False, dead_letters: bool = False, lines: LogLines | None = None) -> ReplayResult:
    """Send a route's history (events since `since`, before `until`), or its dead letters, through it."""
    route = Route.of(load_route(project, name))
    destination = load_stream_destination(route.name, route.config.path, route.config.destination)
    state = routes_state_dir(collector_dir(project))
    store = _NoCursor(state, name)
    files = store.dead_letter_files() if dead_letters else []
    with tempfile.TemporaryDirectory(dir=state, prefix=".replay-") as scratch:
        if dead_letters:
            rows = (letter["row"] for letter in store.dead_letters())
        else:
            assert since is not None
            rows = _warehouse_rows(project, since, until, Path(scratch) / "events.parquet")
        feed = RowsFeed(rows)
        worker = RouteWorker(route, destination, feed, store, lines or LogLines(),  # type: ignore[arg-type]
                             check_source=False)
        if dry_run:
            sent = 0
            while (batch := worker.next_batch()) is not None:
                sent += len(batch.items)
            counters = worker.counters
            return ReplayResult(feed.read, sent, counters.filtered, counters.unsupported, 0, 0)
        asyncio.run(worker.run(asyncio.Event(), until_idle=True))
    counters = worker.counters
    if dead_letters:  # those that failed again were written anew
        store.clear_dead_letters(files)
    sent = counters.delivered + counters.dead_lettered
    return ReplayResult(feed.read, sent, counters.filtered, counters.unsupported, counters.delivered,
                        counters.dead_lettered)
