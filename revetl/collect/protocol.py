"""Segment's HTTP Tracking API as data: endpoints, limits, authentication, and how one request
body becomes landing rows.

Every event goes through `revetl.landing.events.normalize` (the landing contract); this module only adds
what belongs to the HTTP API:

- `received_at` is the server's clock; a `receivedAt` sent by a client is ignored.
- Clock skew is corrected as Segment does (by normalize, given the `sentAt`): when a request
  carries `sentAt` (on the event, or once for a whole batch) and the event carries its own
  `timestamp` (or `originalTimestamp`), the landed `timestamp` is `received_at - (sentAt -
  timestamp)`, i.e. the client's timestamp shifted by `received_at - sentAt`. Without `sentAt` the
  client's timestamp lands as sent; without a client timestamp, `timestamp` is `received_at`.
- A batch's top-level `context` is merged under each event's own `context` (the event's keys win).
- `writeKey`, `sentAt` and `receivedAt` are removed from an event before it is normalized, so a
  `messageId` derived from content is the same when a client retries.
- Limits (Segment's): 32 KB per event (as compact JSON), 500 KB per batch request, 2,500 events
  per batch, all measured on the uncompressed JSON.
- JSON is read with orjson: integers beyond 64 bits become floats (Segment's own API reads every
  number as a double); `NaN`, which Python's encoder writes, is read too and normalize rejects it;
  so is a lone surrogate escape (`"\\ud800"`), which normalize replaces with U+FFFD.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hmac
import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from revetl.collect.log import encode_rows
from revetl.errors import CollectError, InvalidEvent
from revetl.governance.door import Judged, judge_rows
from revetl.landing.events import MAX_EVENT_BYTES, normalize, parse_timestamp, valid_text

__all__ = [
    "ENDPOINTS",
    "MAX_BATCH_BYTES",
    "MAX_BATCH_EVENTS",
    "MAX_EVENT_BYTES",
    "Accepted",
    "Parsed",
    "accept",
    "authenticate",
    "basic_user",
    "body_limit",
    "decode_body",
    "parse_json",
    "parse_request",
    "too_large",
]

MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500

ENDPOINTS: dict[str, str] = {
    "/v1/track": "track",
    "/v1/identify": "identify",
    "/v1/page": "page",
    "/v1/screen": "screen",
    "/v1/group": "group",
    "/v1/alias": "alias",
    "/v1/batch": "batch",
    "/v1/import": "batch",
}


@dataclass
class Accepted:
    """What one request yields: landing rows, and the events rejected with their reasons."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # the wire event of each row (tracking plans)


def body_limit(kind: str) -> int:
    """The largest uncompressed body accepted on an endpoint of this kind, in bytes."""
    return MAX_BATCH_BYTES if kind == "batch" else MAX_EVENT_BYTES


def too_large(size: int, limit: int) -> CollectError:
    """The 400 answered for a body over its limit."""
    return CollectError(f"the request body is {size} bytes, over the {limit}-byte limit", 400, "too_large")


def decode_body(raw: bytes, content_encoding: str, limit: int) -> bytes:
    """Undo `Content-Encoding` (gzip or deflate), never inflating more than `limit` + 1 bytes."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        body = raw
    elif encoding in ("gzip", "x-gzip", "deflate"):
        wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
        inflater = zlib.decompressobj(wbits=wbits)
        try:
            body = inflater.decompress(raw, limit + 1)
        except zlib.error:
            raise CollectError(f"the body is not valid {encoding} data", 400, "invalid_encoding") from None
        if len(body) <= limit and not inflater.eof:
            raise CollectError(f"the {encoding} body is truncated", 400, "invalid_encoding")
    else:
        raise CollectError(
            f"Content-Encoding {encoding!r} is not supported; send gzip or no encoding", 415, "unsupported_encoding"
        )
    if len(body) > limit and encoding in ("", "identity"):
        raise too_large(len(body), limit)
    if len(body) > limit:
        raise CollectError(f"the request body inflates to more than the {limit}-byte limit", 400, "too_large")
    return body


def parse_json(body: bytes) -> Any:
    """Parse a request body; invalid JSON is a 400 naming where it broke."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:  # NaN, Infinity (Python's encoder writes them) and lone surrogates: normalize handles both
            return json.loads(body)
        except (ValueError, RecursionError):
            raise CollectError(f"the body is not valid JSON: {exc}", 400, "invalid_json") from None


def basic_user(authorization: str | None) -> str | None:
    """The user part of a `Basic` Authorization header (where Segment's SDKs put the write key)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.split(":", 1)[0]


def authenticate(sources_by_key: Mapping[str, str], candidates: Iterable[Any]) -> str:
    """The source whose write key is among `candidates` (Basic user, body `writeKey`); else 401."""
    for candidate in candidates:
        if not isinstance(candidate, str) or not candidate:
            continue
        given = candidate.encode("utf-8", "replace")
        for key, source in sources_by_key.items():
            if hmac.compare_digest(key.encode("utf-8"), given):
                return source
    raise CollectError(
        "missing or unknown write key; send it as the Basic auth username or as `writeKey` in the body",
        401,
        "unauthorized",
    )


@dataclass
class Parsed:
    """One request body, parsed and normalized: picklable, so a worker process can produce it.

    `payload` is the accepted events as one log record (`log.encode_rows`), `message_ids` theirs in
    the same order; `body_key` is the `writeKey` found in the body (for authentication only);
    `error` is `(status, code, message)` when the whole request is refused; `judged` is what the source's
    tracking plan found (None when no plan governs it).
    """

    payload: bytes = b"[]"
    message_ids: list[str] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    body_key: str | None = None
    error: tuple[int, str, str] | None = None
    judged: Judged | None = None

    def raise_error(self) -> None:
        """Raise the refusal as CollectError, if there is one."""
        if self.error is not None:
            status, code, message = self.error
            raise CollectError(message, status, code)


def parse_request(
    kind: str, raw: bytes, content_encoding: str, received_at: dt.datetime, source: str | None = None
) -> Parsed:
    """Raw request body -> Parsed: decode, parse, normalize, judge (the source's tracking plan, when the
    Basic-auth `source` or the body's writeKey names one) and encode every event; never raises."""
    try:
        body = decode_body(raw, content_encoding, body_limit(kind))
        payload = parse_json(body)
        body_key = payload.pop("writeKey", None) if isinstance(payload, dict) else None
        accepted = accept(kind, payload, len(body), received_at)
    except CollectError as exc:
        return Parsed(error=(exc.status, exc.code, str(exc)))
    judged = judge_rows(accepted.rows, accepted.events, source, body_key if isinstance(body_key, str) else None)
    return Parsed(
        payload=encode_rows(accepted.rows),
        message_ids=[row["message_id"] for row in accepted.rows],
        rejected=accepted.rejected,
        body_key=body_key if isinstance(body_key, str) else None,
        judged=judged,
    )


def accept(kind: str, payload: Any, body_size: int, received_at: dt.datetime) -> Accepted:
    """Turn one parsed request body into landing rows.

    `kind` is an event type for the single-event endpoints or "batch". A single event that is
    invalid, or a malformed batch, raises CollectError (400); invalid events inside a well-formed
    batch are returned in `rejected` and the others are landed.
    """
    if not isinstance(payload, dict):
        raise CollectError(f"the body must be a JSON object, not {_json_type(payload)}", 400, "invalid_body")
    if kind != "batch":
        payload["type"] = kind  # the endpoint names the type, as in Segment's API
        try:
            return Accepted(rows=[_land(payload, None, None, body_size, received_at)], events=[payload])
        except InvalidEvent as exc:
            raise CollectError(f"{kind} event rejected: {exc.reason}", 400, "invalid_event") from None

    events = payload.get("batch")
    if not isinstance(events, list):
        raise CollectError("a batch body needs a `batch` array of events", 400, "invalid_body")
    if len(events) > MAX_BATCH_EVENTS:
        raise CollectError(
            f"the batch has {len(events)} events, over the limit of {MAX_BATCH_EVENTS}", 400, "too_many_events"
        )
    try:
        sent_at = _sent_at(payload.get("sentAt"))
    except InvalidEvent as exc:
        raise CollectError(f"batch rejected: {exc.reason}", 400, "invalid_body") from None
    context = payload.get("context")
    context = context if isinstance(context, dict) and context else None
    # A body within 32 KB cannot hold an event over 32 KB: skip measuring each one.
    measure = body_size > MAX_EVENT_BYTES
    result = Accepted()
    for index, event in enumerate(events):
        try:
            size = _json_size(event) if measure else None
            result.rows.append(_land(event, sent_at, context, size, received_at))
            result.events.append(event)
        except InvalidEvent as exc:
            message_id = event.get("messageId") if isinstance(event, dict) else None
            message_id = valid_text(message_id) if isinstance(message_id, str) else None  # echoed as JSON
            result.rejected.append({"index": index, "messageId": message_id, "reason": exc.reason})
    return result


def _land(
    event: Any,
    batch_sent_at: dt.datetime | None,
    batch_context: dict[str, Any] | None,
    size: int | None,
    received_at: dt.datetime,
) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise InvalidEvent(f"an event must be a JSON object, not {_json_type(event)}")
    event.pop("writeKey", None)
    event.pop("receivedAt", None)
    event.pop("received_at", None)
    sent_at = _sent_at(event.pop("sentAt", None)) or batch_sent_at
    if batch_context is not None:
        own = event.get("context")
        if own is None:
            event["context"] = dict(batch_context)
        elif isinstance(own, dict):
            event["context"] = {**batch_context, **own}
    return normalize(event, received_at, size, sent_at=sent_at)


def _sent_at(value: Any) -> dt.datetime | None:
    return parse_timestamp(value, "sentAt") if value else None


def _json_size(event: Any) -> int:
    try:
        return len(orjson.dumps(event))
    except TypeError:  # integers beyond 64 bits, lone surrogates: measure as Python's json writes them
        return len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass"))


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )
