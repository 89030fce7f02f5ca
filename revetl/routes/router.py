"""`revetl routes run`: the router process, every route of the project delivering beside the collector.

Start-up: check every route file (the first problem stops it, in one sentence), lock
`<log dir>/routes/.lock` (one router per collector log), open each route's store and feed at its cursor
(a route never run starts at the oldest segment the log holds), start one `RouteWorker` task per route.
The routes share nothing but the process: each reads the log at its own pace, so a route whose
destination is down or throttled holds only its own cursor.

Every second: each route's status file (counters, backlog, lag), and the landed segments behind every
route's durable cursor are deleted. Every `log_every` seconds: one JSON line per route on stderr.
SIGTERM or Ctrl-C: batches in flight are abandoned (their events are behind the cursor: the next start
sends them again, harmless under the idempotency keys), statuses written, exit 0. SIGKILL: the same, but
the batches in flight may have reached the destination too.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from revetl.collect.lines import LogLines
from revetl.collect.log import SUFFIX
from revetl.collect.settings import collector_dir, routes_log_dir
from revetl.config import Project
from revetl.errors import CollectError, ConfigError
from revetl.routes.config import load_route, route_names
from revetl.routes.deliver import RouteWorker
from revetl.routes.destinations import load_stream_destination
from revetl.routes.feed import LogFeed, RecordCache, segments_in
from revetl.routes.mapping import Route
from revetl.routes.store import RouteStore, routes_state_dir
from revetl.runtime import fewer_collections

if TYPE_CHECKING:
    import httpx

__all__ = ["Router", "run_router"]

SNAPSHOT_EVERY_S = 60.0


class Router:
    """Workers for routes over one collector log, with their status and the log's clean-up."""

    def __init__(self, log_dir: Path, routes: Sequence[Route], lines: LogLines,
                 transport: httpx.AsyncBaseTransport | None = None, log_every: float = 10.0,
                 idle: Sequence[str] = ()) -> None:
        self.log_dir = Path(log_dir)
        self.state_dir = routes_state_dir(self.log_dir)
        self.kept_dir = routes_log_dir(self.log_dir)
        self.lines = lines
        self.log_every = log_every
        # Routes of the project this router does not run (`routes run NAME...`): their cursors still hold
        # the log's clean-up back, so that another router running them loses nothing.
        self.idle = [RouteStore(self.state_dir, name) for name in idle
                     if (self.state_dir / name / "cursor").exists()]
        self.workers = []
        cache = RecordCache()
        for route in routes:
            store = RouteStore(self.state_dir, route.name)
            feed = LogFeed(self.log_dir, self.kept_dir, store.cursor(), cache)
            destination = load_stream_destination(route.name, route.config.path, route.config.destination)
            self.workers.append(RouteWorker(route, destination, feed, store, lines, transport=transport))

    async def run(self, stop: asyncio.Event) -> None:
        tasks = [asyncio.get_running_loop().create_task(worker.run(stop), name=f"route-{worker.route.name}")
                 for worker in self.workers]
        since_log = since_snapshot = 0.0
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except TimeoutError:
                    pass
                self.tick()
                since_log, since_snapshot = since_log + 1.0, since_snapshot + 1.0
                if since_log >= self.log_every:
                    since_log = 0.0
                    for worker in self.workers:
                        self.lines.info("route", route=worker.route.name, **worker.status())
                if since_snapshot >= SNAPSHOT_EVERY_S:
                    since_snapshot = 0.0
                    self.snapshot()
            for task in tasks:
                await task
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.tick()
            self.snapshot()

    def snapshot(self) -> None:
        """Append each route's counters to its `stats.jsonl` (`revetl routes load` copies them to the warehouse)."""
        for worker in self.workers:
            with open(worker.store.directory / "stats.jsonl", "ab") as handle:
                handle.write(orjson.dumps(worker.status()) + b"\n")

    def tick(self) -> None:
        """Write each route's status; delete landed segments every route is durably past."""
        for worker in self.workers:
            worker.store.write_status(worker.status())
        self.collect_garbage()

    def collect_garbage(self) -> list[str]:
        """Delete the landed segments older than every route's durable cursor; returns their names."""
        cursors = [worker.store.durable for worker in self.workers] + [store.cursor() for store in self.idle]
        if not cursors or any(cursor is None for cursor in cursors):
            return []
        oldest = min(cursor.segment for cursor in cursors if cursor is not None)
        removed = [name for name in segments_in(self.kept_dir) if name < oldest]
        for name in removed:
            (self.kept_dir / f"{name}{SUFFIX}").unlink(missing_ok=True)
        return removed


def load_routes(project: Project, names: Sequence[str] | None = None) -> list[Route]:
    """The project's routes (or those named), each checked; the first problem is a ConfigError."""
    wanted = list(names) if names else route_names(project)
    if not wanted:
        raise ConfigError(f"no routes in {project.root / 'routes'}; add a routes/NAME.yml")
    return [Route.of(load_route(project, name)) for name in wanted]


def run_router(project: Project, names: Sequence[str] | None = None, log_every: float = 10.0,
               nice: int | None = None, idle: bool | None = None) -> None:
    """Run the project's routes until SIGTERM or Ctrl-C, at the CPU priority `cpu_priority` decides."""
    idle, nice = cpu_priority(nice, idle)
    log_dir = collector_dir(project)
    routes = load_routes(project, names)
    idle_routes = sorted(set(route_names(project)) - {route.name for route in routes})
    lines = LogLines()
    with _locked(routes_state_dir(log_dir)):
        router = Router(log_dir, routes, lines, log_every=log_every, idle=idle_routes)

        def started() -> None:  # once SIGTERM and Ctrl-C stop it cleanly
            lines.info(f"revetl routes delivering {len(routes)} routes from {log_dir}",
                       routes=[route.name for route in routes], pid=os.getpid(), nice=os.nice(0), idle=idle)

        with fewer_collections():  # events are acyclic: the cyclic collector only rescans what lives on
            asyncio.run(_main(router, started))
        lines.info("revetl routes stopped", **{w.route.name: w.counters.delivered for w in router.workers})


def cpu_priority(nice: int | None, idle: bool | None) -> tuple[bool, int]:
    """Put this process on SCHED_IDLE (the default where Linux has it) or lower its niceness (`nice`, 10 unless
    given; giving it chooses the normal scheduler); returns (idle, niceness lowered by).

    The router's work waits in the durable log, so it can wait for the CPU: the collector's answers come first.
    A niced router still shares a core by weight with a collector process that wakes up, delaying its answer
    (on 2 cores with three routes delivering flat out, the collector fell from 20,300 events/s with an idle
    router to 16,000 at niceness 10, below issue 18's 20,000); an idle one gives the core up at once, but on
    a host that is never idle it falls behind until the host is (bench/RESULTS.md "Routes"): `--no-idle` or
    `--nice N` there. Set before any thread starts: both are a thread's own, inherited by the threads it
    starts.
    """
    if idle and nice is not None:
        raise ConfigError("`routes run --idle` and `--nice` do not go together: an idle router has no niceness "
                          "to lower; use one or the other")
    can_idle = hasattr(os, "SCHED_IDLE")
    if idle and not can_idle:
        raise ConfigError("`routes run --idle` needs Linux's SCHED_IDLE scheduling policy; use --nice")
    if idle is None and nice is None and can_idle:
        idle = True
    if idle:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        return True, 0
    nice = 10 if nice is None else nice
    if nice:
        os.nice(nice)
    return False, nice


async def _main(router: Router, started: Callable[[], None]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started()
    await router.run(stop)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[Any]:
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CollectError(f"another `revetl routes run` is already delivering from {directory.parent}") from None
        yield fd
    finally:
        os.close(fd)
