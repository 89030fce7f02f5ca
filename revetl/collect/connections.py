"""HTTP connections with deadlines: uvicorn's httptools protocol, plus the waits it leaves open.

uvicorn closes a keep-alive connection left idle after a response (`timeout_keep_alive`), but not a
connection that never sends a request, nor one that stops in the middle of its request: each would
hold a socket, a file descriptor and (mid-body) a request until the client goes away, if ever.
Here, with `read_timeout` and `idle_timeout` from `collect:` in revetl.yml:

- a new connection that sends nothing for `idle_timeout` seconds is closed, as an idle keep-alive
  connection is (uvicorn's `timeout_keep_alive` is set to the same value);
- once the first byte of a request has arrived, its request line and headers must all arrive
  within `read_timeout` seconds (a deadline for the whole head, not per byte: a few hundred bytes
  sent one at a time must not hold a connection);
- then each part of the body must follow the previous one within `read_timeout` seconds (a large
  body on a slow network is fine as long as it moves).

A request that misses its deadline gets no answer: the connection is closed. Segment's and
RudderStack's SDKs retry a request whose connection failed, while they drop a batch answered with
a 4xx such as 408, so closing is what keeps a stalled client's events.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["deadline_protocol"]

_IDLE, _HEAD, _BODY = "idle", "head", "body"


def deadline_protocol(read_timeout: float) -> type[asyncio.Protocol]:
    """The protocol class to give uvicorn (`Config(http=..., timeout_keep_alive=idle_timeout)`)."""
    return type("DeadlineProtocol", (_DeadlineProtocol,), {"read_timeout": read_timeout})


class _DeadlineProtocol(HttpToolsProtocol):
    read_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._waiting_for: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(_IDLE, self.timeout_keep_alive)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self.cycle
        if self.transport.is_closing():
            self._disarm()
        elif cycle is None or cycle.response_complete:  # these bytes begin a request line and headers
            if self._waiting_for != _HEAD:
                self._arm(_HEAD, self.read_timeout)
        elif cycle.more_body:  # the headers are in; the body is still coming
            self._arm(_BODY, self.read_timeout)
        else:
            self._disarm()  # the whole request is in: the application answers it

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, waiting_for: str, seconds: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._waiting_for = waiting_for
        self._deadline = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        self._waiting_for = None
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.flow is not None and self.flow.read_paused and self._waiting_for is not None:
            # uvicorn stopped reading until the application takes the body buffered so far: the
            # wait is the server's, not the client's.
            self._arm(self._waiting_for, self.read_timeout)
            return
        self.transport.close()  # the application, if it was reading a body, sees a disconnect
