"""The base of every destination emulator: dispatch with faults and limits, stats, control endpoints.

A vendor emulator subclasses `Emulator`, declares its routes and hooks (authentication, vendor
rate-limit headers, vendor error bodies) and keeps its own state; `Emulator.dispatch` does the
rest, and `server.EmulatorServer` puts it on a socket:

    socket -> server._Connection (httptools, keep-alive) -> Emulator.dispatch -> Route.handler

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
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from revetl.emulators.faults import Faults, number_option, seed_option
from revetl.emulators.limiter import FixedWindowLimiter
from revetl.emulators.messages import REASONS, Outcome, Request, Response, Route
from revetl.errors import ConfigError

# The interface a vendor emulator is written against: Emulator and the messages of its handlers.
__all__ = ["Emulator", "Outcome", "Request", "Response", "Route"]

log = logging.getLogger(__name__)

_SERVER_ERRORS = (500, 502, 503)
_INJECTED = ("drop", "timeout", "error", "lost_response", "rate_limit_burst", "rate_limited")


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
        self.seed = seed_option(options.pop("seed", None))
        self.config = {name: options.pop(name, default) for name, default in self.extra_options.items()}
        self._limits = (options.pop("rate_limit", self.default_rate_limit),
                        options.pop("rate_window", self.default_rate_window))
        self.record_requests = int(number_option("record_requests", options.pop("record_requests", 100), 0, 100_000))
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
        phrase = REASONS.get(status, "Error")
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
                self._rng = random.Random(seed_option(changes.pop("seed")))
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
