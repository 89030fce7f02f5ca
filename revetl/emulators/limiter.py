"""The rate limiter every emulator enforces: fixed windows aligned on the epoch, like the vendors'."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from revetl.errors import ConfigError

__all__ = ["FixedWindowLimiter"]


class FixedWindowLimiter:
    """At most `limit` requests per `window` seconds, windows aligned on the epoch; None: unlimited."""

    def __init__(self, limit: int | None, window: float, clock: Callable[[], float] = time.time) -> None:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"Emulator option 'rate_limit' must be a positive integer or None, not {limit!r}.")
        if not isinstance(window, (int, float)) or isinstance(window, bool) or window <= 0:
            raise ConfigError(f"Emulator option 'rate_window' must be a positive number of seconds, not {window!r}.")
        self.limit, self.window, self._clock = limit, float(window), clock
        self._start, self._count = 0.0, 0

    def _roll(self) -> None:
        start = math.floor(self._clock() / self.window) * self.window
        if start != self._start:
            self._start, self._count = start, 0

    def hit(self) -> bool:
        """Count one request; False (and not counted) when the window is already full."""
        if self.limit is None:
            return True
        self._roll()
        if self._count >= self.limit:
            return False
        self._count += 1
        return True

    def state(self) -> tuple[int, int, float] | None:
        """(limit, remaining, reset as epoch seconds) of the current window; None when unlimited."""
        if self.limit is None:
            return None
        self._roll()
        return self.limit, max(0, self.limit - self._count), self._start + self.window

