"""Parsing request bodies in worker processes, so that the collector uses more than one core.

Normalizing an event (`revetl.landing.events.normalize`) costs tens of microseconds of Python, so one
process tops out below the throughput target. The event loop keeps everything stateful (auth,
duplicate filter, write-ahead log, rolls) and hands each raw body to a pool of `workers` processes
that decode, parse, normalize and encode it (`protocol.parse_request`); only bytes and short lists
cross the process boundary. With `workers: 0` bodies are parsed on the event loop itself.

Workers are spawned, not forked (the server already runs threads), ignore Ctrl-C (the server
drains and stops them), and exit on their own if the server process dies, even by SIGKILL. As with
any spawned process, a script that calls `revetl.collect.serve` must do so under
`if __name__ == "__main__":` (the `revetl` command does).
"""

from __future__ import annotations

import asyncio
import ctypes
import datetime as dt
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from collections.abc import Mapping
from concurrent.futures.process import BrokenProcessPool

from revetl.collect.protocol import Parsed, parse_request
from revetl.errors import CollectError
from revetl.governance.door import install
from revetl.governance.gate import Gate

__all__ = ["Parser", "default_workers"]

_PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    """One parser process per core, at most 4; none on a single core (the loop parses)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores < 2 else min(cores, 4)


class Parser:
    """`await parse(...)` -> Parsed, in a worker process when `workers` > 0."""

    def __init__(self, workers: int, gate: Gate | None = None, sources_by_key: Mapping[str, str] | None = None) -> None:
        self.workers = workers
        self._plans = (gate, dict(sources_by_key or {}))  # tracking plans, installed in each parser process
        if workers <= 0:
            install(*self._plans)
        self._pool = self._new_pool() if workers > 0 else None

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(os.getpid(), self._plans),
        )

    def warm_up(self) -> None:
        """Start every worker now (imports take a moment) rather than on the first requests."""
        if self._pool is not None:
            futures = [self._pool.submit(time.sleep, 0.2) for _ in range(self.workers)]
            for future in futures:
                future.result()

    async def parse(
        self, kind: str, raw: bytes, content_encoding: str, received_at: dt.datetime, source: str | None = None
    ) -> Parsed:
        """Decode, parse, normalize and judge one request body (`source`: from Basic auth, if known)."""
        if self._pool is None:
            return parse_request(kind, raw, content_encoding, received_at, source)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self._pool, parse_request, kind, raw, content_encoding, received_at, source)
        except BrokenProcessPool:
            # A worker died (out of memory, killed): replace the pool; the client's retry succeeds.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            raise CollectError("a parser process died; retry the request", 503, "worker_died") from None

    def close(self) -> None:
        """Stop the workers (after the requests in flight)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _init_worker(parent_pid: int, plans: tuple[Gate | None, dict[str, str]]) -> None:
    install(*plans)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group
    try:  # Linux: die with the server, even when it is SIGKILLed
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(0)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(0)
