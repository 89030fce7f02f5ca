"""Amplitude, through its HTTP V2 API (`POST /2/httpapi`), as Amplitude's Segment integration maps events.

A batch is `{"api_key": ..., "events": [...], "options": {"min_id_length": N}}` (at most 2,000 events and
1 MB: Amplitude's limits). Each Segment message becomes one Amplitude event:

    user_id <- userId             device_id <- context.device.id, else anonymousId
    event_type <- track: the event name; page: "Viewed <name> Page" ("Loaded a Page" without a name);
                  screen: "Viewed <name> Screen" ("Loaded a Screen"); identify: "$identify"
    time <- timestamp (ms)        insert_id <- messageId (Amplitude drops a repeat within 7 days)
    event_properties <- properties, user_properties <- identify's traits as {"$set": traits}
    revenue, price, quantity, productId <- the same properties, when numbers (and text for productId)
    ip, platform (context.device.type), os_name, os_version, device_model, language (context.locale),
    app_version (context.app.version), library "revetl"
group and alias calls have no HTTP V2 form: they are not sent (counted as unsupported).

Answers: 200 acknowledges the batch. 400 lists the events it refused (`events_with_invalid_fields`,
`events_with_missing_fields`, `silenced_events`; nothing of the request was ingested): those get the
reason, the rest are sent again at once; a 400 that lists none (a wrong API key) holds the route. 413:
the batch is split in two and each half sent. 429 (a device over 30 events/s, the project's limit) is
retried by the shared policy.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import Field, SecretStr

from revetl.destinations.base import DestinationConfig, HttpOptions
from revetl.routes.destinations.base import StreamDestination, Verdict

if TYPE_CHECKING:
    import httpx

    from revetl.sync.http import Http

__all__ = ["Amplitude", "AmplitudeConfig", "amplitude_event"]

PATH = "/2/httpapi"
_REFUSED = ("events_with_invalid_fields", "events_with_missing_fields")


class AmplitudeConfig(DestinationConfig):
    base_url: str = "https://api2.amplitude.com"
    api_key: SecretStr
    min_id_length: int | None = Field(None, ge=1)  # Amplitude's default is 5
    batch_size: int = Field(500, ge=1, le=2_000)


def _millis(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def _event_type(message: dict[str, Any]) -> str | None:
    kind, name = message.get("type"), message.get("name")
    if kind == "track":
        return message.get("event")
    if kind in ("page", "screen"):
        noun = "Page" if kind == "page" else "Screen"
        return f"Viewed {name} {noun}" if name else f"Loaded a {noun}"
    if kind == "identify":
        return "$identify"
    return None


def amplitude_event(message: dict[str, Any]) -> dict[str, Any] | None:
    """The Amplitude event for one Segment message, or None (group, alias)."""
    event_type = _event_type(message)
    if event_type is None:
        return None
    context = message.get("context") or {}
    device = context.get("device") if isinstance(context.get("device"), dict) else {}
    os_ = context.get("os") if isinstance(context.get("os"), dict) else {}
    app = context.get("app") if isinstance(context.get("app"), dict) else {}
    event: dict[str, Any] = {"event_type": event_type, "insert_id": message["messageId"], "library": "revetl"}
    optional = {
        "user_id": message.get("userId"), "device_id": device.get("id") or message.get("anonymousId"),
        "time": _millis(message.get("timestamp")), "ip": context.get("ip"), "platform": device.get("type"),
        "os_name": os_.get("name"), "os_version": os_.get("version"), "device_model": device.get("model"),
        "language": context.get("locale"), "app_version": app.get("version"),
    }
    event.update({key: value for key, value in optional.items() if value is not None})
    properties = message.get("properties")
    if isinstance(properties, dict):
        event["event_properties"] = properties
        for key in ("revenue", "price", "quantity"):
            if isinstance(properties.get(key), (int, float)) and not isinstance(properties.get(key), bool):
                event[key] = properties[key]
        if isinstance(properties.get("productId") or properties.get("product_id"), str):
            event["productId"] = properties.get("productId") or properties.get("product_id")
    if message.get("type") == "identify":
        event["user_properties"] = {"$set": message.get("traits") or {}}
    return event


def _refused(answer: Any) -> dict[int, str]:
    """Index -> reason for every event a 400 lists."""
    found: dict[int, str] = {}
    if not isinstance(answer, dict):
        return found
    for group in _REFUSED:
        for field, indexes in (answer.get(group) or {}).items():
            for index in indexes if isinstance(indexes, list) else ():
                what = "invalid" if group == _REFUSED[0] else "missing"
                found.setdefault(int(index), f"amplitude 400: {what} field `{field}`")
    for index in answer.get("silenced_events") or ():
        found.setdefault(int(index), "amplitude 400: the device or user is silenced")
    return found


def _json(response: httpx.Response) -> Any:
    with contextlib.suppress(ValueError):
        return response.json()
    return None


def _describe(response: httpx.Response) -> str:
    answer = _json(response)
    if answer is None:
        return " ".join(response.text.split())[:200] or response.reason_phrase
    return str(answer.get("error") or answer)[:200] if isinstance(answer, dict) else str(answer)[:200]


class Amplitude(StreamDestination[AmplitudeConfig]):
    type = "amplitude"
    max_batch_events = 2_000
    max_batch_bytes = 1_000_000 - 4_096  # the envelope's room
    default_concurrency = 4

    def http_options(self) -> HttpOptions:
        return HttpOptions(headers={"Content-Type": "application/json", "Accept": "*/*"}, describe=_describe)

    def prepare(self, message: dict[str, Any]) -> dict[str, Any] | None:
        return amplitude_event(message)

    def _body(self, items: Sequence[dict[str, Any]]) -> bytes:
        body: dict[str, Any] = {"api_key": self.config.api_key.get_secret_value(), "events": list(items)}
        if self.config.min_id_length is not None:
            body["options"] = {"min_id_length": self.config.min_id_length}
        return orjson.dumps(body)

    async def send(self, http: Http, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        verdicts: list[Verdict] = [None] * len(items)
        pending = list(range(len(items)))
        while pending:
            response = await http.request("POST", PATH, content=self._body([items[i] for i in pending]))
            status = response.status_code
            if status == 413 and len(pending) > 1:
                for index, verdict in zip(pending, await self.in_halves(http, [items[i] for i in pending])):
                    verdicts[index] = verdict
                return verdicts
            if status < 300:
                return verdicts
            refused = _refused(_json(response)) if status == 400 else {}
            if not refused:
                raise self.fatal(f"amplitude answered {status}: {_describe(response)}", status)
            for position, reason in refused.items():
                if position < len(pending):
                    verdicts[pending[position]] = reason
            pending = [index for position, index in enumerate(pending) if position not in refused]
        return verdicts
