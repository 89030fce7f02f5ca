"""The collector's HTTP application (raw ASGI): Segment's Tracking API plus `/health`.

Answers, as Segment's SDKs expect them:
- 200 `{"success": true}` once every accepted event is durable; a batch with invalid events lands
  the valid ones and lists the others under `rejected` (index, messageId, reason).
- 400 `{"success": false, "code": ..., "message": ...}` for bodies over a limit, invalid JSON or
  gzip, a malformed batch, an invalid single event, or a batch whose events are all invalid.
- 401 for a missing or unknown write key; 503 with `Retry-After` while the collector cannot make
  events durable (the SDKs retry those).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from revetl.collect.dedupe import RecentIds
from revetl.collect.lines import LogLines
from revetl.collect.log import select_rows, tag_source
from revetl.collect.pipeline import Pipeline
from revetl.collect.protocol import ENDPOINTS, authenticate, basic_user, body_limit, too_large
from revetl.collect.settings import CollectorConfig
from revetl.collect.workers import Parser
from revetl.errors import CollectError
from revetl.governance.door import DoorCounts

__all__ = ["CollectorApp"]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# An oversized body is still read (and discarded) up to this size so that the client sees the 400
# rather than a reset connection; past it the connection is simply closed.
_DRAIN_LIMIT = 8 * 1024 * 1024
# Slack for gzip headers and incompressible bodies before a compressed body is refused unread.
_ENCODED_SLACK = 4096

_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    (b"access-control-allow-headers", b"authorization, content-type, content-encoding"),
    (b"access-control-max-age", b"86400"),
]


@dataclass
class _Outcome:
    status: int
    body: dict[str, Any]
    source: str | None = None
    events: int = 0
    rejected: int = 0
    duplicates: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


class _Disconnected(Exception):
    """The client went away before sending its whole body."""


class CollectorApp:
    """ASGI app: routes, reads and authenticates requests, lands events through the pipeline."""

    def __init__(
        self,
        config: CollectorConfig,
        parser: Parser,
        pipeline: Pipeline,
        recent: RecentIds,
        lines: LogLines,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
        counts: DoorCounts | None = None,
    ) -> None:
        self.config = config
        self.parser = parser
        self.pipeline = pipeline
        self.recent = recent
        self.lines = lines
        self.clock = clock
        self.counts = counts  # what tracking plans found, for the violations alerts (alerts/collector.py)
        self._in_flight: dict[str, asyncio.Future[None]] = {}  # message id -> its first copy's write

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        try:
            outcome = await self._handle(scope, receive)
        except _Disconnected:
            client = scope.get("client")
            self.lines.access(
                method=scope["method"], path=scope["path"], status=None,
                ms=round((time.perf_counter() - started) * 1000, 2), client=client[0] if client else None,
                error="the connection closed before the whole body arrived (the client left, or paused too long)",
            )
            return
        except CollectError as exc:
            outcome = _error(exc)
        except Exception as exc:  # noqa: BLE001 - one request must never take the server down
            self.lines.error(
                "request failed", path=scope.get("path"), error=repr(exc), trace=traceback.format_exc(limit=5)
            )
            outcome = _Outcome(500, {"success": False, "code": "internal_error", "message": "internal error"})
        body = orjson.dumps(outcome.body) if outcome.status != 204 else b""
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *_CORS]
        await send({"type": "http.response.start", "status": outcome.status, "headers": headers + outcome.headers})
        await send({"type": "http.response.body", "body": body})
        client = scope.get("client")
        self.lines.access(
            method=scope["method"], path=scope["path"], status=outcome.status, source=outcome.source,
            events=outcome.events, rejected=outcome.rejected, duplicates=outcome.duplicates,
            ms=round((time.perf_counter() - started) * 1000, 2), client=client[0] if client else None,
        )

    async def _handle(self, scope: dict[str, Any], receive: Receive) -> _Outcome:
        method, path = scope["method"], scope["path"].rstrip("/") or "/"
        if path == "/health":
            if method not in ("GET", "HEAD"):
                raise CollectError("use GET /health", 405, "method_not_allowed")
            return self._health()
        kind = ENDPOINTS.get(path)
        if kind is None:
            raise CollectError(f"no endpoint {path}; use /v1/batch, /v1/track, /v1/identify, ...", 404, "not_found")
        if method == "OPTIONS":
            return _Outcome(204, {})
        if method != "POST":
            raise CollectError(f"{path} takes POST", 405, "method_not_allowed")

        headers = _headers(scope)
        limit = body_limit(kind)
        encoding = headers.get("content-encoding", "")
        allowed = limit + (_ENCODED_SLACK if encoding else 0)
        raw = await _read_body(receive, allowed, limit, headers.get("content-length"))
        basic = basic_user(headers.get("authorization"))
        source = None
        if basic is not None:
            try:
                source = authenticate(self.config.sources_by_key, [basic])
            except CollectError:
                source = None  # the body's writeKey may still be right
        parsed = await self.parser.parse(kind, raw, encoding, self.clock(), source)
        parsed.raise_error()
        if source is None:
            source = authenticate(self.config.sources_by_key, [basic, parsed.body_key])

        accepted = len(parsed.message_ids)
        fresh = self.recent.add_new(parsed.message_ids)
        # A copy of an event whose first copy is still being written is acknowledged only once
        # that write is durable (a client that timed out and retried must not get an early 200).
        originals = set()
        if len(fresh) < accepted:
            new = set(fresh)
            ids = (m for i, m in enumerate(parsed.message_ids) if i not in new)
            originals = {self._in_flight[m] for m in ids if m in self._in_flight}
        if fresh:
            payload = parsed.payload if len(fresh) == accepted else select_rows(parsed.payload, fresh)
            if self.config.routes_log is not None:  # routes filter by source (revetl/routes/)
                payload = tag_source(payload, source)
            await self._land(payload, [parsed.message_ids[i] for i in fresh])
            # Counted once durable; a retried request whose every event is a duplicate lands nothing, counts nothing.
            if self.counts is not None and parsed.judged is not None:
                self.counts.add(parsed.judged)
        for original in originals:
            await asyncio.shield(original)
        outcome = _Outcome(
            200, {"success": True}, source=source, events=len(fresh),
            rejected=len(parsed.rejected), duplicates=accepted - len(fresh),
        )
        if parsed.rejected:
            if not accepted:
                first = parsed.rejected[0]
                outcome.status = 400
                outcome.body = {
                    "success": False,
                    "code": "invalid_events",
                    "message": f"all {len(parsed.rejected)} events were rejected; "
                    f"event {first['index']}: {first['reason']}",
                }
            outcome.body["rejected"] = parsed.rejected
        return outcome

    async def _land(self, payload: bytes, message_ids: list[str]) -> None:
        """Make the rows durable; on failure, forget their ids so that a retry is not a duplicate."""
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for message_id in message_ids:
            self._in_flight[message_id] = written
        try:
            await self.pipeline.land(payload, len(message_ids))
        except BaseException:
            self.recent.forget(message_ids)
            written.set_exception(CollectError("an earlier copy of these events failed; retry", 503, "retry"))
            written.exception()  # retrieved: no "never retrieved" warning when no copy waits on it
            raise
        else:
            written.set_result(None)
        finally:
            for message_id in message_ids:
                if self._in_flight.get(message_id) is written:
                    del self._in_flight[message_id]

    def _health(self) -> _Outcome:
        problem = self.pipeline.problem
        body: dict[str, Any] = {
            "status": "ok" if problem is None else "degraded",
            "buffered_events": self.pipeline.buffered,
            "landed_events": self.pipeline.landed,
            "landing_dir": str(self.config.landing_dir),
        }
        if problem is not None:
            body["error"] = problem
        if self.config.routes_log is not None:  # each route's counters, as `revetl routes run` last wrote them
            from revetl.routes.store import all_statuses

            body["routes"] = all_statuses(self.config.routes_log.parent)
        return _Outcome(200 if problem is None else 503, body)


def _headers(scope: dict[str, Any]) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


async def _read_body(receive: Receive, allowed: int, limit: int, content_length: str | None) -> bytes:
    """The raw body, or a 400 if it is over `allowed` bytes (`limit` is the limit users are told)."""
    declared = int(content_length) if content_length and content_length.isdigit() else None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= allowed:
            chunks.append(chunk)
        elif size > _DRAIN_LIMIT:
            break
        if not message.get("more_body", False):
            break
    if size > allowed or (declared is not None and declared > allowed):
        raise too_large(max(size, declared or 0), limit)
    return b"".join(chunks)


def _error(exc: CollectError) -> _Outcome:
    headers = [(b"retry-after", b"1")] if exc.status == 503 else []
    return _Outcome(exc.status, {"success": False, "code": exc.code, "message": str(exc)}, headers=headers)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
