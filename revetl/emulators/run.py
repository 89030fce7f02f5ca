"""Running an emulator: in a background thread with its own event loop (tests, the demo), or in
this process until SIGTERM or Ctrl-C (`revetl emulate`).

Kept apart from the registry in `revetl.emulators` because it loads asyncio and the server: a
command that only names emulators does not pay for them.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading

from revetl.emulators.base import Emulator
from revetl.emulators.server import EmulatorServer
from revetl.errors import ConfigError
from revetl.runtime import fewer_collections

__all__ = ["EmulatorThread", "new_loop", "serve_forever"]


def new_loop() -> asyncio.AbstractEventLoop:
    """A uvloop event loop when uvloop is installed, else asyncio's."""
    try:
        import uvloop
    except ImportError:  # uvloop is optional (not on Windows)
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class EmulatorThread:
    """An emulator served by a background thread with its own event loop."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator = emulator
        self.server = EmulatorServer(emulator, host, port)
        self._loop = new_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"{emulator.name}-emulator", daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the running emulator."""
        return self.server.url

    def start(self, timeout: float = 10) -> str:
        """Start serving; returns the base URL once listening."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise ConfigError(f"The {self.emulator.name} emulator did not start in {timeout} s.")
        if self._error is not None:
            raise self._error
        return self.url

    def stop(self, timeout: float = 10) -> None:
        """Close every connection (hung ones too) and end the thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)

    def _main(self) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.server.start())
        except BaseException as exc:  # handed to start(), in the caller's thread
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self.server.stop())
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()


def serve_forever(name: str, emulator: Emulator, host: str, port: int) -> None:
    """Serve `emulator` on host:port until SIGTERM or Ctrl-C; once listening, print its JSON line."""
    server = EmulatorServer(emulator, host, port)

    async def main() -> None:
        await server.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        limiter = emulator.limiter
        line = {"emulator": name, "url": server.url, "rate_limit": limiter.limit, "rate_window": limiter.window,
                "faults": emulator.faults.as_dict()}
        print(json.dumps(line), flush=True)
        await stop.wait()
        await server.stop()

    with fewer_collections(), asyncio.Runner(loop_factory=new_loop) as runner:
        runner.run(main())
