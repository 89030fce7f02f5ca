"""The landing contract: Segment/RudderStack wire payloads -> validated landing rows.

One function, `normalize`, decides what a valid event is; `revetl ingest`, `revetl generate` and
`revetl collect` all go through it, so an event accepted by one is accepted by all.

Decisions (DESIGN 2):
- camelCase wire names (`messageId`, `anonymousId`, ...) are read first, snake_case second, so both
  Segment/RudderStack JSON exports and warehouse-style dumps can be ingested.
- A missing `messageId` is derived from the payload's content (UUID5), so ingesting the same file
  twice lands duplicates that the `events` model drops, never two different events.
- `timestamp` falls back to `originalTimestamp`, then `receivedAt`, then the time of receipt.
- Given the request's `sentAt` (the collector), a client timestamp is corrected for the device's
  clock skew as Segment does: `receivedAt - (sentAt - timestamp)`.
- Times must be sane: from 1970-01-01 (UTC) to 24 hours in the future (a day of slack for clocks
  running ahead). Anything else, a year 0001 or 9999 left by a default value or a device clock
  years off, is rejected naming the field and the time, rather than landed to give `days_inactive`
  of minus millions. The rule applies to `timestamp` (after clock-skew correction) and
  `receivedAt`; `revetl generate` checks its history with it.
- For `page` and `screen` the page/screen `name` goes to the `event` column.
- Numbers given as `userId`/`anonymousId` are kept as their decimal text (Segment does the same).
- Text that is not valid Unicode, a lone UTF-16 surrogate (JSON `"\\ud800"`, what JavaScript writes
  for a string cut in the middle of an emoji), is kept with each lone surrogate replaced by U+FFFD,
  as Segment's API does (Go's JSON decoder): one bad character costs neither its event nor its
  neighbours, and every landed string encodes as UTF-8 (Parquet, the collector's log, JSON answers).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pyarrow as pa

from revetl.errors import InvalidEvent
from revetl.landing.identifiers import is_blank

__all__ = [
    "EARLIEST_TIME",
    "EVENT_TYPES",
    "FUTURE_SLACK",
    "LANDING_SCHEMA",
    "MAX_EVENT_BYTES",
    "check_time",
    "normalize",
    "parse_timestamp",
    "valid_text",
]

EVENT_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})
MAX_EVENT_BYTES = 32 * 1024  # Segment's documented limit per event
EARLIEST_TIME = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
FUTURE_SLACK = dt.timedelta(hours=24)

_TS = pa.timestamp("us", tz="UTC")
LANDING_SCHEMA = pa.schema(
    [
        ("message_id", pa.string()),
        ("type", pa.string()),
        ("event", pa.string()),
        ("anonymous_id", pa.string()),
        ("user_id", pa.string()),
        ("group_id", pa.string()),
        ("previous_id", pa.string()),
        ("timestamp", _TS),
        ("received_at", _TS),
        ("properties", pa.string()),
        ("traits", pa.string()),
        ("context", pa.string()),
    ]
)

_NAMESPACE = uuid.UUID("5b7c4c1e-9a7e-4c55-9d9f-2f0f3b1a6e01")
# One encoder for every JSON column: json.dumps with options builds a new encoder per call, which
# costs about a third of normalize(). allow_nan=False: Python reads NaN and 1e999, but would write
# them back as text (`NaN`, `Infinity`) that no JSON parser downstream accepts.
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False)


def valid_text(text: str) -> str:
    """`text` with every lone UTF-16 surrogate replaced by U+FFFD (a split pair is joined back).

    json.loads reads `"\\ud800"` into such a string; UTF-8 (Parquet, orjson, a terminal) cannot
    encode it.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def _get(payload: dict[str, Any], camel: str, snake: str) -> Any:
    value = payload.get(camel)
    return payload.get(snake) if value is None else value


def _identifier(payload: dict[str, Any], camel: str, snake: str) -> str | None:
    value = _get(payload, camel, snake)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise InvalidEvent(f"`{camel}` must be a string, not {type(value).__name__}")
    if isinstance(value, str):
        return value if value.isascii() else valid_text(value)  # the check inline: this path is hot
    return str(value)


def _object(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidEvent(f"`{key}` must be a JSON object, not {type(value).__name__}")
    try:
        text = _JSON.encode(value)
        return text if text.isascii() else valid_text(text)
    except ValueError:
        raise InvalidEvent(f"`{key}` holds NaN or Infinity, which JSON cannot represent") from None


def parse_timestamp(value: Any, field: str) -> dt.datetime:
    """An ISO-8601 string -> an aware UTC datetime; naive times are taken as UTC."""
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidEvent(f"`{field}` is not an ISO-8601 timestamp: {value[:40]!r}") from None
    else:
        raise InvalidEvent(f"`{field}` must be an ISO-8601 string, not {type(value).__name__}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=dt.timezone.utc)
    try:
        return parsed.astimezone(dt.timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before datetime.min in UTC
        raise InvalidEvent(f"`{field}` is out of range once converted to UTC: {value!r:.40}") from None


def check_time(value: dt.datetime, field: str, received_at: dt.datetime) -> dt.datetime:
    """`value` if it is a sane time for an event received at `received_at`; else InvalidEvent.

    Sane: from EARLIEST_TIME to FUTURE_SLACK after `received_at`, or after the present when that is
    later (a test or a replay may give a receipt time in the past: the future is still the future).
    """
    if value < EARLIEST_TIME:
        raise InvalidEvent(f"`{field}` is {value.isoformat()}, before {EARLIEST_TIME:%Y-%m-%d}, the earliest accepted")
    # The clock is read only on this rare path: normalize stays free of I/O for the common case.
    if value > received_at + FUTURE_SLACK and value > dt.datetime.now(dt.timezone.utc) + FUTURE_SLACK:
        raise InvalidEvent(f"`{field}` is {value.isoformat()}, more than 24 hours in the future")
    return value


def _message_id(payload: dict[str, Any]) -> str:
    given = _get(payload, "messageId", "message_id")
    if given is not None:
        if not isinstance(given, str) or not given.strip():
            raise InvalidEvent("`messageId` must be a non-empty string")
        return given if given.isascii() else valid_text(given)
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return str(uuid.uuid5(_NAMESPACE, canonical))


def normalize(
    payload: Any, received_at: dt.datetime, raw_size: int | None = None, sent_at: dt.datetime | None = None
) -> dict[str, Any]:
    """Validate one wire payload and return its landing row (keys of LANDING_SCHEMA).

    `received_at` is when revetl received it (used when the payload carries no `receivedAt`);
    `raw_size` is the payload's size in bytes as received, checked against MAX_EVENT_BYTES;
    `sent_at`, the request's `sentAt`, corrects a client timestamp for clock skew.
    Raises InvalidEvent with a one-sentence reason.
    """
    if not isinstance(payload, dict):
        raise InvalidEvent(f"an event must be a JSON object, not {type(payload).__name__}")
    if raw_size is not None and raw_size > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event is {raw_size} bytes, over the {MAX_EVENT_BYTES}-byte limit")
    kind = payload.get("type")
    # isinstance first: a list or object as `type` is unhashable and would crash the set lookup.
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        raise InvalidEvent(f"unknown event type {kind!r:.40}; expected one of {', '.join(sorted(EVENT_TYPES))}")
    user_id = _identifier(payload, "userId", "user_id")
    anonymous_id = _identifier(payload, "anonymousId", "anonymous_id")
    if is_blank(user_id) and is_blank(anonymous_id):
        raise InvalidEvent("event has neither `userId` nor `anonymousId`")

    event_field = "name" if kind in ("page", "screen") else "event"
    event = payload.get(event_field)
    if kind == "track" and (not isinstance(event, str) or not event.strip()):
        raise InvalidEvent("a track event needs a non-empty `event` name")
    if event is not None and not isinstance(event, str):
        raise InvalidEvent(f"`{event_field}` must be a string, not {type(event).__name__}")
    if event is not None and not event.isascii():
        event = valid_text(event)
    previous_id = _identifier(payload, "previousId", "previous_id")
    if kind == "alias" and is_blank(previous_id):
        raise InvalidEvent("an alias event needs a `previousId`")
    group_id = _identifier(payload, "groupId", "group_id")
    if kind == "group" and is_blank(group_id):
        raise InvalidEvent("a group event needs a `groupId`")

    received_raw = _get(payload, "receivedAt", "received_at")
    received = received_at
    if received_raw:
        received = check_time(parse_timestamp(received_raw, "receivedAt"), "receivedAt", received_at)
    ts_field = next(
        (f for f in ("timestamp", "originalTimestamp", "original_timestamp") if payload.get(f)), None
    )
    timestamp = received
    if ts_field:
        timestamp = parse_timestamp(payload[ts_field], ts_field)
        if sent_at is not None:
            try:
                timestamp = received - (sent_at - timestamp)
            except OverflowError:
                raise InvalidEvent(f"`{ts_field}` is out of range once corrected for clock skew") from None
        check_time(timestamp, ts_field, received_at)

    return {
        "message_id": _message_id(payload),
        "type": kind,
        "event": event,
        "anonymous_id": anonymous_id,
        "user_id": user_id,
        "group_id": group_id,
        "previous_id": previous_id,
        "timestamp": timestamp,
        "received_at": received,
        "properties": _object(payload, "properties"),
        "traits": _object(payload, "traits"),
        "context": _object(payload, "context"),
    }
