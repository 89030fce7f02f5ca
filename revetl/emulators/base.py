"""What every destination emulator shares: an HTTP/1.1 server, routing, faults, limits, stats.

A vendor emulator subclasses `Emulator`, declares its routes and hooks (authentication, vendor
rate-limit headers, vendor error bodies) and keeps its own state; this module does the rest:

    socket -> _Connection (httptools parser, keep-alive) -> Emulator.dispatch -> Route.handler

The server is raw asyncio rather than ASGI because faults must be able to *not answer*: close the
socket before (`drop_share`) or after (`lost_response_share`) applying a request, or hold it open
until the client gives up (`timeout_share`). Those are the failures a sync engine must survive,
and ASGI servers always answer.

Dispatch order, so each fault means what a client would see in production:
    control routes (/_emulator/...)     never faulted, limited, counted or recorded
    latency                             before anything else, like a slow network
    drop                                the request never reached the vendor: not applied
    authentication                      the vendor's 401 (on the paths it serves)
    rate_limit_burst, then the limiter  429 with the vendor's headers: not applied
    timeout, 5xx                        the vendor failed: not applied
    handler (or 404/405)                applied
    lost response                       applied, then the connection closes without an answer

Control endpoints (JSON): POST /_emulator/faults {any Faults field, "seed", "rate_limit",
"rate_window"} -> the current faults; GET /_emulator/faults; POST /_emulator/reset (back to the
start-up state); GET /_emulator/stats; GET /_emulator/requests?limit=N (the last N, key redacted).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote

import httptools
import orjson

from revetl.errors import ConfigError

__all__ = [
    "Emulator",
    "EmulatorServer",
    "Faults",
    "FixedWindowLimiter",
    "Outcome",
    "Request",
    "Response",
    "Route",
]

log = logging.getLogger(__name__)

Handler = Callable[["Request"], "Response | Awaitable[Response]"]

_SHARES = ("drop_share", "timeout_share", "error_share", "lost_response_share")
_SERVER_ERRORS = (500, 502, 503)
_INJECTED = ("drop", "timeout", "error", "lost_response", "rate_limit_burst", "rate_limited")


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
        reason = _REASONS.get(self.status, "Unknown")
        head = [f"HTTP/1.1 {self.status} {reason}", f"content-type: {self.content_type}",
                f"content-length: {len(body)}"]
        head.extend(f"{name}: {value}" for name, value in self.headers.items())
        if not keep_alive:
            head.append("connection: close")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


_REASONS = {status.value: status.phrase for status in HTTPStatus}


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


@dataclass(frozen=True)
class Faults:
    """Injected failures; shares are probabilities per request and add up to at most 1."""

    error_share: float = 0.0
    drop_share: float = 0.0
    lost_response_share: float = 0.0
    timeout_share: float = 0.0
    rate_limit_burst: int = 0
    latency_ms: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names a Faults accepts."""
        return tuple(cls.__dataclass_fields__)

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A validated copy with `changes` applied; raises ConfigError on a bad value."""
        values = asdict(self)
        for name, value in changes.items():
            if name not in values:
                raise ConfigError(f"Unknown fault {name!r}; known: {', '.join(self.names())}.")
            values[name] = value
        for name in _SHARES:
            values[name] = _number(name, values[name], 0.0, 1.0)
        if sum(values[name] for name in _SHARES) > 1.0 + 1e-9:
            raise ConfigError(f"Fault shares ({', '.join(_SHARES)}) add up to more than 1.")
        values["rate_limit_burst"] = int(_number("rate_limit_burst", values["rate_limit_burst"], 0, math.inf))
        values["latency_ms"] = _latency(values["latency_ms"])
        return Faults(**values)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view (latency as [low, high])."""
        values = asdict(self)
        values["latency_ms"] = list(self.latency_ms)
        return values


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"Emulator option {name!r} must be a number, not {value!r}.") from None
    if not low <= value <= high:
        raise ConfigError(f"Emulator option {name!r} must be between {low} and {high}, not {value}.")
    return float(value)


def _seed(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"Emulator option 'seed' must be an integer, not {value!r}.")
    return value


def _latency(value: Any) -> tuple[float, float]:
    """5, "5", [5, 20] or "5-20" -> (low, high) in milliseconds."""
    if isinstance(value, str) and "-" in value.strip()[1:]:
        value = value.strip().split("-", 1)
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(f"Emulator option 'latency_ms' must be a number or [low, high], not {value!r}.")
        low, high = (_number("latency_ms", v, 0, 600_000) for v in value)
    else:
        low = high = _number("latency_ms", value, 0, 600_000)
    if low > high:
        raise ConfigError(f"Emulator option 'latency_ms' has low {low} above high {high}.")
    return (low, high)


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


class Emulator:
    """Base of a vendor emulator: subclasses set the class attributes and override the hooks.

    `options` (a flat mapping) holds the common options — `seed`, `rate_limit` (None: unlimited),
    `rate_window`, `record_requests` (ring buffer size, 0: off) and every `Faults` name — plus
    the keys of the subclass's `extra_options` (name -> default). Unknown keys raise ConfigError.
    """

    name = "emulator"
    default_port = 0
    default_rate_limit: int | None = None
    default_rate_window = 1.0
    max_body_bytes = 4 * 1024 * 1024
    secret_headers = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
    extra_options: Mapping[str, Any] = {}

    def __init__(self, options: Mapping[str, Any] | None = None, clock: Callable[[], float] = time.time) -> None:
        options = dict(options or {})
        self.clock = clock
        self.seed = _seed(options.pop("seed", None))
        self.config = {name: options.pop(name, default) for name, default in self.extra_options.items()}
        self._limits = (options.pop("rate_limit", self.default_rate_limit),
                        options.pop("rate_window", self.default_rate_window))
        self.record_requests = int(_number("record_requests", options.pop("record_requests", 100), 0, 100_000))
        unknown = set(options) - set(Faults.names())
        if unknown:
            raise ConfigError(f"Unknown option {sorted(unknown)[0]!r} for the {self.name} emulator.")
        self.initial_faults = Faults().updated(options)
        self.limiter = FixedWindowLimiter(*self._limits, clock=clock)
        self._routes = list(self.routes())
        self._control = [
            Route("POST", "/_emulator/faults", self._set_faults),
            Route("GET", "/_emulator/faults", lambda _: Response(200, self._faults_body())),
            Route("POST", "/_emulator/reset", self._reset),
            Route("GET", "/_emulator/stats", lambda _: Response(200, self.stats_body())),
            Route("GET", "/_emulator/requests", self._requests),
            *self.control_routes(),
        ]
        self.reset()

    # -- hooks a vendor emulator overrides -------------------------------------------------------

    def routes(self) -> Iterable[Route]:
        """The vendor API's routes."""
        return ()

    def control_routes(self) -> Iterable[Route]:
        """Extra /_emulator/... routes (never faulted), e.g. to read the destination's state."""
        return ()

    def reset_state(self) -> None:
        """Forget every object the vendor API holds."""

    def authenticate(self, request: Request) -> Response | None:
        """The vendor's 401/403 when the request's credentials are wrong, else None."""
        return None

    def rate_limit_headers(self, limit: int, remaining: int, reset: float) -> dict[str, str]:
        """The vendor's rate-limit headers, sent on every API response when a limit is set."""
        return {}

    def rate_limited(self, retry_after: float) -> Response:
        """The vendor's 429 when its limit is exceeded."""
        retry = str(max(1, math.ceil(retry_after)))
        return Response(429, {"message": "Too Many Requests"}, {"Retry-After": retry})

    def server_error(self, status: int) -> Response:
        """An injected 5xx: the application's JSON for 500, a load balancer's HTML page for 502/503."""
        phrase = _REASONS.get(status, "Error")
        if status == 500:
            return Response(status, {"message": phrase})
        html = f"<html><head><title>{status} {phrase}</title></head><body><h1>{status} {phrase}</h1></body></html>"
        return Response(status, html, content_type="text/html")

    def not_found(self, request: Request, allowed: list[str]) -> Response:
        """404 for an unknown path, 405 (with Allow) for a known path and another method."""
        if allowed:
            return Response(405, {"message": "Method Not Allowed"}, {"Allow": ", ".join(sorted(set(allowed)))})
        return Response(404, {"message": "Not Found"})

    def too_large(self) -> Response:
        """413 for a body above `max_body_bytes`."""
        return Response(413, {"message": "Request Entity Too Large"})

    # -- for subclasses' handlers ------------------------------------------------------------------

    def count_applied(self, kind: str, count: int = 1) -> None:
        """Record `count` objects of `kind` applied to the destination's state (for /_emulator/stats)."""
        self._applied[kind] = self._applied.get(kind, 0) + count

    # -- state, stats and control endpoints ------------------------------------------------------

    def reset(self) -> None:
        """Back to as started: no objects, no stats, start-up faults and limits, RNG re-seeded."""
        self.faults = self.initial_faults
        self._burst = self.faults.rate_limit_burst
        self.limiter = FixedWindowLimiter(*self._limits, clock=self.clock)
        self._rng = random.Random(self.seed)
        self._counts: dict[str, dict[str, int]] = {}  # "METHOD route" -> status -> requests
        self._first: float | None = None  # wall clock of the first and the last request (benchmarks' rates)
        self._last: float | None = None
        self._applied: dict[str, int] = {}
        self._injected = dict.fromkeys(_INJECTED, 0)
        self._log: deque[dict[str, Any]] = deque(maxlen=self.record_requests or 1)
        self.reset_state()

    def stats_body(self) -> dict[str, Any]:
        """Requests by "METHOD route" and status, objects applied, faults injected."""
        total = sum(sum(by_status.values()) for by_status in self._counts.values())
        return {"emulator": self.name, "requests_total": total, "requests": self._counts,
                "first_request_at": self._first, "last_request_at": self._last,
                "applied": self._applied, "faults_injected": self._injected}

    def _faults_body(self) -> dict[str, Any]:
        return {**self.faults.as_dict(), "rate_limit_burst_left": self._burst,
                "rate_limit": self.limiter.limit, "rate_window": self.limiter.window}

    def _set_faults(self, request: Request) -> Response:
        try:
            changes = request.json()
            if not isinstance(changes, dict):
                raise ConfigError("The faults body must be a JSON object.")
            limit = changes.pop("rate_limit", self.limiter.limit)
            window = changes.pop("rate_window", self.limiter.window)
            if "seed" in changes:
                self._rng = random.Random(_seed(changes.pop("seed")))
            faults = self.faults.updated(changes)
            if (limit, window) != (self.limiter.limit, self.limiter.window):
                self.limiter = FixedWindowLimiter(limit, window, clock=self.clock)
        except (ConfigError, ValueError) as exc:
            return Response(400, {"error": str(exc)})
        self.faults = faults
        if "rate_limit_burst" in changes:
            self._burst = faults.rate_limit_burst
        return Response(200, self._faults_body())

    def _reset(self, request: Request) -> Response:
        self.reset()
        return Response(200, {"reset": True})

    def _requests(self, request: Request) -> Response:
        entries = list(self._log) if self.record_requests else []
        try:
            limit = int(request.query.get("limit", len(entries)))
        except ValueError:
            return Response(400, {"error": "limit must be an integer"})
        chosen = entries[-limit:] if limit > 0 else []
        return Response(200, {"requests": [_render(entry) for entry in chosen], "capacity": self.record_requests})

    def _record(self, request: Request) -> dict[str, Any] | None:
        if not self.record_requests:
            return None
        entry = {"time": self.clock(), "method": request.method, "path": request.path, "query": request.query,
                 "headers": {name: ("[redacted]" if name in self.secret_headers else value)
                             for name, value in request.headers.items()},
                 "body": request.body, "status": None}
        self._log.append(entry)
        return entry

    def _count(self, request: Request, status: int | str) -> None:
        # By route pattern, not path: /contacts/{id} would otherwise grow a key per contact.
        by_status = self._counts.setdefault(f"{request.method} {request.route or '(no route)'}", {})
        by_status[str(status)] = by_status.get(str(status), 0) + 1
        self._last = time.time()
        self._first = self._first or self._last

    # -- dispatch --------------------------------------------------------------------------------

    async def dispatch(self, request: Request) -> Outcome:
        """Answer one request, injecting the configured faults (see the module docstring for order)."""
        if request.path.startswith("/_emulator/"):
            return Outcome(await self._route(self._control, request))
        request.route = next((route.pattern for route in self._routes if route.match(request.path) is not None), "")
        entry = self._record(request)
        faults, rng = self.faults, self._rng
        roll = rng.random()  # one draw decides the fault, so a seed replays the same sequence
        low, high = faults.latency_ms
        if high > 0:
            await asyncio.sleep(rng.uniform(low, high) / 1000)
        if roll < faults.drop_share:
            return self._fault(request, entry, "drop", Outcome(None, close=True))
        response = self.authenticate(request) if request.route else None
        if response is None:
            response = await self._guarded(request, entry, roll)
            if isinstance(response, Outcome):
                return response
        state = self.limiter.state()
        if state is not None:
            response.headers.update(self.rate_limit_headers(*state))
        if entry is not None:
            entry["status"] = response.status
        self._count(request, response.status)
        return Outcome(response)

    async def _guarded(self, request: Request, entry: dict[str, Any] | None, roll: float) -> Response | Outcome:
        """Everything after authentication: limits, server-side faults, the handler, lost responses."""
        faults = self.faults
        if self._burst > 0:
            self._burst -= 1
            self._injected["rate_limit_burst"] += 1
            response = self.rate_limited(1.0)
            response.headers.setdefault("Retry-After", "1")
            return response
        if not self.limiter.hit():
            self._injected["rate_limited"] += 1
            reset = self.limiter.state()[2]  # type: ignore[index]
            return self.rate_limited(reset - self.clock())
        edge = faults.drop_share + faults.timeout_share
        if roll < edge:
            return self._fault(request, entry, "timeout", Outcome(None, hang=True))
        edge += faults.error_share
        if roll < edge:
            self._injected["error"] += 1
            return self.server_error(self._rng.choice(_SERVER_ERRORS))
        response = await self._route(self._routes, request)
        if roll < edge + faults.lost_response_share:
            return self._fault(request, entry, "lost_response", Outcome(None, close=True))
        return response

    def _fault(self, request: Request, entry: dict[str, Any] | None, kind: str, outcome: Outcome) -> Outcome:
        self._injected[kind] += 1
        if entry is not None:
            entry["status"] = kind
        self._count(request, kind)
        return outcome

    async def _route(self, routes: list[Route], request: Request) -> Response:
        allowed = []
        for route in routes:
            params = route.match(request.path)
            if params is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            request.params = params
            try:
                return await route.call(request)
            except Exception:  # a bug in an emulator must show, as a 500 and a traceback
                log.exception("%s emulator failed on %s %s", self.name, request.method, request.path)
                return Response(500, {"message": "Internal Server Error"})
        return self.not_found(request, allowed)


def _render(entry: dict[str, Any]) -> dict[str, Any]:
    """A recorded request as JSON: the body parsed when it is JSON, else as text."""
    body = entry["body"]
    try:
        parsed = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        parsed = body.decode("utf-8", "replace")
    return {**entry, "body": parsed}


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
