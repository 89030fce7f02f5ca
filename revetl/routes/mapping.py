"""A route's decisions on one event: does it go (sources, types, names, condition), and as what.

Events arrive as landing rows (the collector's log, or the warehouse's `events` model for a replay):
`message_id, type, event, anonymous_id, user_id, group_id, previous_id, timestamp, received_at` and
`properties, traits, context` as JSON text, plus the collector's `_source`. `event_of` parses a row
into the mapping a `where:` reads; `Route.message` gives what a destination is handed: a Segment-spec
message (camelCase, as Segment's own destinations read it) with the route's property and trait mapping
applied, `messageId` always set (the idempotency key of every destination that has one).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from revetl.routes.config import RouteConfig
from revetl.routes.expression import Condition

__all__ = ["Route", "SOURCE_FIELD", "event_of", "flagged", "received_at"]

SOURCE_FIELD = "_source"  # the collector's source name, written beside each row of its log when routes are on
_JSON = ("properties", "traits", "context")
_NAMED = ("track", "page", "screen")


def event_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A landing row as a condition reads it: JSON columns parsed, `source` named; `_received` (epoch seconds)
    and `_size` (about the bytes of its JSON) for delivery. Parsing an event again changes nothing."""
    event = {key: value for key, value in row.items() if key != SOURCE_FIELD}
    size = 160
    for key in _JSON:
        value = event.get(key)
        if isinstance(value, (str, bytes)):
            size += len(value)
            try:
                event[key] = orjson.loads(value)
            except orjson.JSONDecodeError:
                event[key] = None
    event["source"] = row.get(SOURCE_FIELD, row.get("source"))
    event.setdefault("_received", received_at(event))
    event.setdefault("_size", size)
    return event


def received_at(event: Mapping[str, Any]) -> float | None:
    """When the collector received the event, as epoch seconds (None when unknown)."""
    value = event.get("received_at")
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def flagged(event: Mapping[str, Any]) -> bool:
    """Whether a tracking plan flagged the event: its context lists violations (governance/gate.py)."""
    context = event.get("context")
    return isinstance(context, dict) and bool(context.get("violationErrors"))


def _text_time(value: Any) -> Any:
    """A time as RFC 3339 text in UTC with `Z`, the same whether it came as text (the collector's log) or as a
    datetime (the warehouse): a replayed batch must be the very body that was sent live, as the webhook's
    Idempotency-Key promises (a receiver may refuse a key reused with another body)."""
    if isinstance(value, dt.datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return stamp.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and value.endswith("+00:00"):
        return value[:-6] + "Z"
    return value


@dataclass(frozen=True)
class Route:
    """A route file compiled: `admits(event)` decides, `message(event)` maps."""

    config: RouteConfig
    condition: Condition | None

    @classmethod
    def of(cls, config: RouteConfig) -> Route:
        return cls(config, config.condition())

    @property
    def name(self) -> str:
        return self.config.name

    def admits(self, event: Mapping[str, Any], check_source: bool = True) -> bool:
        """Whether the route takes this event (a replay from the warehouse knows no source: `check_source`)."""
        config = self.config
        if check_source and config.sources is not None and event.get("source") not in config.sources:
            return False
        if config.types is not None and event.get("type") not in config.types:
            return False
        name = event.get("event") if event.get("type") in _NAMED else None
        if config.events is not None and name not in config.events:
            return False
        if name is not None and name in config.exclude_events:
            return False
        if config.flagged == "skip" and flagged(event):
            return False
        return self.condition is None or self.condition(event)

    def message(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The Segment-spec message a destination is handed, with the route's mapping applied."""
        kind = event.get("type")
        context = event.get("context")
        if isinstance(context, dict) and isinstance(context.get("traits"), dict) and not self.config.traits.identity:
            context = {**context, "traits": self.config.traits.apply(context["traits"])}
        message: dict[str, Any] = {
            "messageId": event.get("message_id"),
            "type": kind,
            "userId": event.get("user_id"),
            "anonymousId": event.get("anonymous_id"),
            "timestamp": _text_time(event.get("timestamp")),
            "receivedAt": _text_time(event.get("received_at")),
            "context": context or {},
        }
        if kind == "track":
            message["event"] = event.get("event")
        elif kind in ("page", "screen"):
            message["name"] = event.get("event")
        if kind in ("track", "page", "screen"):
            message["properties"] = self.config.properties.apply(event.get("properties")) or {}
        if kind in ("identify", "group"):
            message["traits"] = self.config.traits.apply(event.get("traits")) or {}
        if kind == "group":
            message["groupId"] = event.get("group_id")
        if kind == "alias":
            message["previousId"] = event.get("previous_id")
        return message
