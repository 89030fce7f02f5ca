"""`revetl collect`: the collector process, from start-up recovery to a clean SIGTERM.

Start-up: resolve the settings, lock the log directory (one collector per log), land whatever a
previous run left in the log (`roller.recover`), bind the socket, print where events land, serve.
SIGTERM or Ctrl-C: stop accepting, finish the requests in flight, roll everything acknowledged into
Parquet, close the log, exit 0; if some events cannot be rolled (a full disk), say how many stay in
the log and why, and exit 1: they are safe there and the next start lands them. SIGKILL: nothing
is lost that was acknowledged; the next start lands it.

The HTTP server is uvicorn (httptools parser, uvloop when installed) running the raw ASGI app in
`app.py`: chosen by measurement against the collector benchmark (`bench/collect_bench.py`); its
connections have read and idle deadlines (`connections.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import uvicorn

from revetl.alerts.collector import watch_collector
from revetl.collect.app import CollectorApp
from revetl.collect.connections import deadline_protocol
from revetl.collect.dedupe import RecentIds
from revetl.collect.lines import LogLines
from revetl.collect.pipeline import Pipeline
from revetl.collect.roller import recover
from revetl.collect.settings import CollectorConfig
from revetl.collect.workers import Parser
from revetl.errors import CollectError, LandingError
from revetl.governance.door import DoorCounts

__all__ = ["serve", "run"]

_GRACEFUL_SHUTDOWN_S = 10


def serve(config: CollectorConfig) -> None:
    """Run the collector (`CollectorConfig.from_project`) until SIGTERM or Ctrl-C."""
    run(config, LogLines(access=config.access_log))


def run(config: CollectorConfig, lines: LogLines) -> None:
    """Recover, listen and serve with an already resolved configuration."""
    with _locked(config.log_dir):
        recent = RecentIds(config.dedupe_window)
        try:
            report = recover(config.landing_dir, config.log_dir, recent, config.routes_log)
        except LandingError as exc:
            raise CollectError(
                f"cannot start: the events a previous run left in the write-ahead log cannot be landed ({exc}); "
                f"they stay safe in {config.log_dir}: make room and start again"
            ) from exc
        if report.segments:
            lines.info(
                f"recovered {report.events} acknowledged events from {report.segments} log segments",
                events=report.events, segments=report.segments, duplicates=report.duplicates,
                torn_bytes=report.torn_bytes, files=[str(f) for f in report.files],
            )
        sock = _bind(config.host, config.port)
        stop = _StopSignals()
        with stop.installed():
            parser = Parser(config.workers, config.gate, config.sources_by_key)  # tracking plans judge in the parsers
            try:
                parser.warm_up()
                with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                    runner.run(_serve(config, sock, parser, recent, lines, stop))
            except _Unlanded:
                raise SystemExit(1) from None
            finally:
                parser.close()


async def _serve(
    config: CollectorConfig, sock: socket.socket, parser: Parser, recent: RecentIds, lines: LogLines, stop: _StopSignals
) -> None:
    pipeline = Pipeline(
        config.landing_dir, config.log_dir, config.flush_seconds, config.flush_events,
        config.max_buffered_events, lines, keep=config.routes_log,
    )
    pipeline.start()
    # What tracking plans find, counted for the violations alert rules (none without both).
    counts = DoorCounts() if config.gate and any(config.alerts.rules_for("violations")) else None
    alerts = asyncio.get_running_loop().create_task(  # collector_degraded and violations alerts (revetl/alerts/)
        watch_collector(config.alerts, config.log_dir, lambda: pipeline.problem, lines, config.project,
                        counts=counts))
    app = CollectorApp(config, parser, pipeline, recent, lines, counts=counts)
    server = uvicorn.Server(
        uvicorn.Config(
            app, interface="asgi3", lifespan="off", access_log=False, log_config=None, log_level="warning",
            server_header=False, timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
            http=deadline_protocol(config.read_timeout),  # type: ignore[arg-type]
            timeout_keep_alive=config.idle_timeout,  # type: ignore[arg-type]
        )
    )
    stop.on_signal = lambda: setattr(server, "should_exit", True)
    host, port = sock.getsockname()[:2]
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    lines.info(
        f"revetl collect listening on {url}; events land as Parquet in {config.landing_dir} "
        f"(every {config.flush_seconds:g}s or {config.flush_events} events), "
        f"write-ahead log in {config.log_dir}",
        url=url, landing_dir=str(config.landing_dir), log_dir=str(config.log_dir),
        sources=config.sources, flush_seconds=config.flush_seconds, flush_events=config.flush_events,
        workers=config.workers, pid=os.getpid(),
    )
    try:
        if not stop.received:
            await server.serve(sockets=[sock])
    finally:
        alerts.cancel()
        problem = await pipeline.close()
        if problem is None:
            lines.info("revetl collect stopped; every acknowledged event is in Parquet", landed_events=pipeline.landed)
        else:
            lines.error(
                f"revetl collect stopped; {pipeline.buffered:,} acknowledged events are still only in the "
                f"write-ahead log in {config.log_dir} ({problem}); the next start lands them",
                landed_events=pipeline.landed, log_only_events=pipeline.buffered,
            )
            raise _Unlanded


class _Unlanded(Exception):
    """SIGTERM could not roll every acknowledged event into Parquet (already logged): exit 1."""


class _StopSignals:
    """SIGTERM/SIGINT ask the server to stop gracefully; the process then exits 0, not by signal.

    uvicorn captures these signals while it serves and re-raises them when it is done; with these
    handlers in place the re-raise only records the request instead of killing the process before
    the final roll into Parquet.
    """

    def __init__(self) -> None:
        self.received: list[int] = []
        self.on_signal: Callable[[], None] | None = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.received.append(signum)
        if self.on_signal is not None:
            self.on_signal()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


@contextlib.contextmanager
def _locked(log_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the log directory: two collectors must not share one log."""
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(log_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise CollectError(f"cannot use the collector log directory {log_dir}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CollectError(f"another revetl collect is already using {log_dir}") from None
        yield
    finally:
        os.close(fd)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise CollectError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop
