"""A `Clock` for tests: time moves only when something sleeps, and chance is seeded."""

from __future__ import annotations

import asyncio
import datetime as dt
import random

from revetl.runtime import Clock

__all__ = ["FakeClock"]


class FakeClock:
    """Hand `fake.clock` to what takes a `Clock` (RetryPolicy, RateLimiter, `Destination.connect`):
    sleeping returns at once, advances `now` and is listed in `slept`, so backoff and rate limits are
    asserted without waiting for them."""

    def __init__(self, start: float = 1_000_000.0, seed: int = 1) -> None:
        self.now = start  # seconds: both the epoch time and the monotonic time
        self.slept: list[float] = []
        self._random = random.Random(seed)
        self.clock = Clock(
            now=lambda: dt.datetime.fromtimestamp(self.now, dt.timezone.utc),
            time=lambda: self.now,
            monotonic=lambda: self.now,
            sleep=self.sleep,
            block=self.block,
            random=self._random.random,
        )

    async def sleep(self, seconds: float) -> None:
        self.block(seconds)
        await asyncio.sleep(0)  # still let other tasks run, as a real sleep would

    def block(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += max(0.0, seconds)
