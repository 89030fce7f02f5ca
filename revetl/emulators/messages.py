"""The HTTP messages an emulator's handlers take and return, and the routes that map them.

`Request` is what the server parsed (header names lower-case, path parameters filled in by the
matched `Route`); `Response` is what a handler answers, encoded for the wire by the server;
`Outcome` is how the connection ends one request, which is where faults that do not answer live.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import orjson

__all__ = ["Handler", "Outcome", "REASONS", "Request", "Response", "Route"]

Handler = Callable[["Request"], "Response | Awaitable[Response]"]


@dataclass(slots=True)
class Request:
    """One HTTP request as a handler sees it; header names are lower-case."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)  # path parameters of the matched route
    route: str = ""  # the matched route's pattern, e.g. "/contacts/{id}"

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError (orjson.JSONDecodeError) when it is not."""
        return orjson.loads(self.body)


@dataclass(slots=True)
class Response:
    """What a handler answers: `body` is JSON-serialised unless it is bytes or str."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encode(self, keep_alive: bool) -> bytes:
        """The response on the wire (HTTP/1.1)."""
        body = self.body
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            body = b"" if body is None and self.status == 204 else orjson.dumps(body)
        reason = REASONS.get(self.status, "Unknown")
        head = [f"HTTP/1.1 {self.status} {reason}", f"content-type: {self.content_type}",
                f"content-length: {len(body)}"]
        head.extend(f"{name}: {value}" for name, value in self.headers.items())
        if not keep_alive:
            head.append("connection: close")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


REASONS = {status.value: status.phrase for status in HTTPStatus}


@dataclass(slots=True)
class Outcome:
    """How a connection ends one request: an answer, nothing then close, or nothing at all (hang)."""

    response: Response | None
    close: bool = False
    hang: bool = False


@dataclass(frozen=True)
class Route:
    """`method` + `pattern` ("/users/track", "/contacts/{id}") -> `handler(request) -> Response`."""

    method: str
    pattern: str
    handler: Handler

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.pattern))
        object.__setattr__(self, "_regex", re.compile(regex + r"\Z"))
        object.__setattr__(self, "_is_async", inspect.iscoroutinefunction(self.handler))

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters when `path` matches the pattern, else None."""
        found = self._regex.match(path)  # type: ignore[attr-defined]
        return {name: unquote(value) for name, value in found.groupdict().items()} if found else None

    async def call(self, request: Request) -> Response:
        """Run the handler, awaiting it when it is a coroutine function."""
        if self._is_async:  # type: ignore[attr-defined]
            return await self.handler(request)  # type: ignore[misc]
        return self.handler(request)  # type: ignore[return-value]

