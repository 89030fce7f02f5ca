"""The HTTP/1.1 server an emulator runs in: raw asyncio and httptools, keep-alive and pipelining.

    socket -> _Connection (httptools parser, keep-alive) -> Emulator.dispatch -> Route.handler

The server is raw asyncio rather than ASGI because faults must be able to *not answer*: close the
socket before (`drop_share`) or after (`lost_response_share`) applying a request, or hold it open
until the client gives up (`timeout_share`). Those are the failures a sync engine must survive,
and ASGI servers always answer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from urllib.parse import parse_qsl

import httptools

from revetl.emulators.base import Emulator
from revetl.emulators.messages import Outcome, Request, Response
from revetl.errors import ConfigError

__all__ = ["EmulatorServer"]


class _Connection(asyncio.Protocol):
    """One client connection: parse requests (keep-alive, pipelining), answer them in order."""

    def __init__(self, server: EmulatorServer) -> None:
        self._server = server
        self._emulator = server.emulator
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._queue: deque[tuple[Request | Response, bool]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = self._deaf = False
        self._url, self._headers, self._body, self._size = b"", {}, [], 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server.connections.discard(self)

    def close(self) -> None:
        """Close the socket now (server shutdown)."""
        if self._transport is not None and not self._closed:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        if self._deaf or self._closed:
            return  # a hung request is never answered; what follows it is ignored
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._deaf = True  # the parser cannot go on: answer 400 and close
            self._queue.append((Response(400, {"message": "Bad Request"}), False))
            self._schedule()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url, self._headers, self._body, self._size = b"", {}, [], 0

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self._headers.get("expect", "").lower() == "100-continue" and self._transport is not None:
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size <= self._emulator.max_body_bytes:
            self._body.append(body)

    def on_message_complete(self) -> None:
        url = httptools.parse_url(self._url)
        query = dict(parse_qsl(url.query.decode("latin-1"))) if url.query else {}
        request = Request(self._parser.get_method().decode("latin-1"), url.path.decode("latin-1"), query,
                          self._headers, b"".join(self._body))
        if self._size > self._emulator.max_body_bytes:
            self._queue.append((self._emulator.too_large(), False))
        else:
            self._queue.append((request, self._parser.should_keep_alive()))
        self._schedule()

    def _schedule(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._queue and not self._closed:
                item, keep_alive = self._queue.popleft()
                if isinstance(item, Response):  # unparseable or too large: answer, then hang up
                    outcome = Outcome(item, close=True)
                else:
                    outcome = await self._emulator.dispatch(item)
                if self._closed:
                    return
                if outcome.hang:
                    self._deaf = True  # answer nothing; the client's timeout (or shutdown) closes
                    self._queue.clear()
                    return
                assert self._transport is not None
                if outcome.response is not None:
                    self._transport.write(outcome.response.encode(keep_alive and not outcome.close))
                if outcome.close or not keep_alive:
                    self._transport.close()
                    self._closed = True
                    return
        finally:
            self._task = None


class EmulatorServer:
    """Serve one emulator on host:port (0 picks a free port) on the running event loop."""

    def __init__(self, emulator: Emulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.emulator, self.host, self.port = emulator, host, port
        self.connections: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """Base URL clients use, e.g. http://127.0.0.1:8091."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> str:
        """Bind and listen; returns the base URL."""
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Connection(self), self.host, self.port, reuse_address=True, backlog=1024
            )
        except OSError as exc:
            where = f"{self.host}:{self.port}"
            message = f"The {self.emulator.name} emulator cannot listen on {where}: {exc.strerror}."
            raise ConfigError(message) from None
        self.port = self._server.sockets[0].getsockname()[1]
        return self.url

    async def stop(self) -> None:
        """Stop listening and close every connection, hung ones included."""
        if self._server is None:
            return
        self._server.close()
        for connection in list(self.connections):
            connection.close()
        await self._server.wait_closed()
        self._server = None
