"""Ctrl-C and SIGTERM stop a run the same way (`Stop`), from planning to the last batch sent."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = ["Stop"]


class Stop:
    """Ctrl-C and SIGTERM stop a run the same way: the run is cancelled cleanly, and says which.

    Outside the event loop SIGTERM raises KeyboardInterrupt, as Ctrl-C does; inside it, both cancel
    the running engine (asyncio.Runner does that for Ctrl-C; `watch` adds SIGTERM)."""

    def __init__(self) -> None:
        self.signal = "Ctrl-C"

    def _terminate(self, signum: int, frame: Any) -> None:
        self.signal = "SIGTERM"
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        previous = signal.signal(signal.SIGTERM, self._terminate)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def reinstall(self) -> None:
        """After the event loop closed (it resets the handlers it had)."""
        signal.signal(signal.SIGTERM, self._terminate)

    def watch(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task) -> None:
        def terminate() -> None:
            self.signal = "SIGTERM"
            task.cancel()

        loop.add_signal_handler(signal.SIGTERM, terminate)
