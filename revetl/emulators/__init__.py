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

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from revetl.errors import ConfigError

if TYPE_CHECKING:
    from revetl.emulators.base import Emulator

# Importing this package is cheap: the registry only. The server, asyncio and each vendor's
# emulator load when `running`, `serve` or `create` first needs them.
__all__ = ["EMULATORS", "create", "register", "running", "serve"]

Factory = Callable[[Mapping[str, Any]], "Emulator"]


def _braze(options: Mapping[str, Any]) -> Emulator:
    from revetl.emulators.braze import BrazeEmulator

    return BrazeEmulator(options)


def _intercom(options: Mapping[str, Any]) -> Emulator:
    from revetl.emulators.intercom import IntercomEmulator

    return IntercomEmulator(options)


def _salesforce(options: Mapping[str, Any]) -> Emulator:
    from revetl.emulators.salesforce import SalesforceEmulator

    return SalesforceEmulator(dict(options))


def _webhook(options: Mapping[str, Any]) -> Emulator:
    from revetl.emulators.webhook import WebhookEmulator

    return WebhookEmulator(dict(options))


def _amplitude(options: Mapping[str, Any]) -> Emulator:
    from revetl.emulators.amplitude import AmplitudeEmulator

    return AmplitudeEmulator(dict(options))


def _mixpanel(options: Mapping[str, Any]) -> Emulator:
    from revetl.emulators.mixpanel import MixpanelEmulator

    return MixpanelEmulator(dict(options))


def _slack(options: Mapping[str, Any]) -> Emulator:
    from revetl.emulators.slack import SlackEmulator

    return SlackEmulator(dict(options))


# name -> factory(options); built-ins import lazily so `revetl emulate` loads only the one it runs.
EMULATORS: dict[str, Factory] = {"braze": _braze, "intercom": _intercom, "salesforce": _salesforce,
                                 "webhook": _webhook, "slack": _slack, "amplitude": _amplitude,
                                 "mixpanel": _mixpanel}


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


@contextmanager
def running(
    emulator: str | Emulator, options: Mapping[str, Any] | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Serve an emulator (a name, or an instance) in a background thread; yields its base URL."""
    from revetl.emulators.run import EmulatorThread

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
    from revetl.emulators.run import serve_forever

    emulator = create(name, options)
    serve_forever(name, emulator, host, emulator.default_port if port is None else port)
