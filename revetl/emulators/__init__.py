"""Local emulators of destination APIs, for the demo, the tests and the benchmarks.

Each emulator is a real HTTP server on loopback, faithful to one vendor API (limits, response
shapes, rate-limit headers) and able to inject the faults a sync engine must survive. Run one:

    with running("braze", {"seed": 7, "error_share": 0.1}) as url:   # a thread, in a test
        httpx.post(f"{url}/users/track", ...)

    revetl emulate braze --port 8091 --error-share 0.1               # a process (SIGTERM stops it)
    python -m revetl.emulators braze --port 0

Every emulator also answers the control endpoints of `base.Emulator`: POST /_emulator/faults,
POST /_emulator/reset, GET /_emulator/stats, GET /_emulator/requests?limit=N.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from revetl.emulators.base import Emulator, EmulatorServer
from revetl.errors import ConfigError
from revetl.runtime import fewer_collections

__all__ = ["EMULATORS", "EmulatorThread", "create", "register", "running", "serve"]

Factory = Callable[[Mapping[str, Any]], Emulator]


def _braze(options: Mapping[str, Any]) -> Emulator:
    from revetl.emulators.braze import BrazeEmulator

    return BrazeEmulator(options)


def _intercom(options: Mapping[str, Any]) -> Emulator:
    from revetl.emulators.intercom import IntercomEmulator

    return IntercomEmulator(options)


def _salesforce(options: Mapping[str, Any]) -> Emulator:
    from revetl.emulators.salesforce import SalesforceEmulator

    return SalesforceEmulator(dict(options))


# name -> factory(options); built-ins import lazily so `revetl emulate` loads only the one it runs.
EMULATORS: dict[str, Factory] = {"braze": _braze, "intercom": _intercom, "salesforce": _salesforce}


def register(name: str, factory: Factory) -> None:
    """Make `factory(options) -> Emulator` available as `name` (to `create`, `running`, the CLI)."""
    EMULATORS[name] = factory


def create(name: str, options: Mapping[str, Any] | None = None) -> Emulator:
    """A new emulator by name; raises ConfigError for an unknown name or option."""
    try:
        factory = EMULATORS[name]
    except KeyError:
        raise ConfigError(f"Unknown emulator {name!r}; known: {', '.join(sorted(EMULATORS))}.") from None
    return factory(dict(options or {}))


def _new_loop() -> asyncio.AbstractEventLoop:
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
        self._loop = _new_loop()
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


@contextmanager
def running(
    emulator: str | Emulator, options: Mapping[str, Any] | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Serve an emulator (a name, or an instance) in a background thread; yields its base URL."""
    instance = create(emulator, options) if isinstance(emulator, str) else emulator
    thread = EmulatorThread(instance, host, port)
    thread.start()
    try:
        yield thread.url
    finally:
        thread.stop()


def serve(
    name: str, host: str = "127.0.0.1", port: int | None = None, options: Mapping[str, Any] | None = None
) -> None:
    """Run emulator `name` in this process until SIGTERM or Ctrl-C.

    Once listening it prints one JSON line on stdout: {"emulator", "url", "rate_limit",
    "rate_window", "faults"}. `port` None means the emulator's default port; 0 picks a free one.
    """
    emulator = create(name, options)
    server = EmulatorServer(emulator, host, emulator.default_port if port is None else port)

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

    with fewer_collections(), asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(main())
