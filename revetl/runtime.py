"""Where time and chance come from (`Clock`), and process settings for long, allocation-heavy work.

Code that waits, retries, stamps or backs off takes a `Clock` instead of reading the wall clock, sleeping
or drawing random numbers itself, so that a test can drive it; `SYSTEM` is the real one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import random
import time as _time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

__all__ = ["SYSTEM", "Clock", "fewer_collections"]


async def _sleep(seconds: float) -> None:
    import asyncio  # loaded by the code that runs an event loop, not by every command

    await asyncio.sleep(seconds)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class Clock:
    """The wall clock, a monotonic clock, sleeping (async and blocking) and a random source."""

    now: Callable[[], dt.datetime] = _utc_now  # aware, UTC
    time: Callable[[], float] = _time.time  # seconds since the epoch (HTTP dates, rate-limit resets)
    monotonic: Callable[[], float] = _time.monotonic  # durations and deadlines
    sleep: Callable[[float], Awaitable[None]] = _sleep
    block: Callable[[float], None] = _time.sleep  # sleeping outside an event loop
    random: Callable[[], float] = random.random  # uniform in [0, 1): jitter

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()


SYSTEM = Clock()

# Measured on a 1M-row Braze sync (bench/sync_bench.py's project, 2 cores): with Python's default
# (700, 10, 10) the cyclic collector took 1.3 s of the sync's 23 s of CPU, and 4.4 of the Braze
# emulator's 16 µs per object (it keeps a million profiles alive, which every full pass rescans).
# With these: 0.1 s, and 13 µs per object.
THRESHOLDS = (50_000, 20, 10)


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often inside the block; restore its thresholds after.

    Rows, requests and answers are acyclic and freed by reference counting as soon as they are
    done with, so collecting less often costs little memory; it only spares rescanning what lives on.
    """
    old = gc.get_threshold()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*old)
