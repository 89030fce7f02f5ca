"""Mixpanel for the stream: its Import API (`POST /import?strict=1&project_id=...`), as Mixpanel's Segment
integration maps events.

    track  -> {"event": <name>, "properties": {...properties, time, distinct_id, $insert_id, ...}}
    page   -> "Loaded a Page" (or "Viewed <name> Page"); screen -> "Loaded a Screen" / "Viewed <name> Screen"
    distinct_id <- userId, else anonymousId; $user_id, $device_id <- userId, anonymousId (ID merge)
    time <- timestamp (ms); ip, $os, $app_version_string, mp_lib "revetl" from the context
    $insert_id <- messageId when it is at most 36 letters, digits and '-' (Mixpanel's rule), else the
                  first 36 characters of its SHA-256: the same on every resend, so Mixpanel deduplicates
identify, group and alias go to Mixpanel's other APIs and are not sent here (counted as unsupported).

Auth: a service account (`username`, `secret`) with `project_id`, as HTTP Basic. Limits: 2,000 events and
10 MB a request. Answers: 200 imports all; 400 (strict mode) imports the valid events and lists the others
under `failed_records` (index, field, message): those are refused with the message; 413 sends each half;
401/403 hold the route; 429 and 5xx are the shared client's retries.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import Field, SecretStr

from revetl.destinations.base import DestinationConfig, HttpOptions
from revetl.routes.destinations.base import StreamDestination, Verdict

if TYPE_CHECKING:
    from revetl.sync.http import Http

__all__ = ["Mixpanel", "MixpanelConfig", "insert_id", "mixpanel_event"]

_INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}\Z")


class MixpanelConfig(DestinationConfig):
    base_url: str = "https://api.mixpanel.com"
    project_id: str = Field(min_length=1)
    username: str = Field(min_length=1)  # the service account's user name
    secret: SecretStr  # ... and its secret, through ${VAR}
    batch_size: int = Field(1000, ge=1, le=2_000)


def insert_id(message_id: str) -> str:
    """Mixpanel's `$insert_id` for a message: itself when Mixpanel allows it, else a stable digest."""
    return message_id if _INSERT_ID.match(message_id) else hashlib.sha256(message_id.encode()).hexdigest()[:36]


def _millis(value: Any) -> int | None:
    if isinstance(value, str):
        try:
            return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return None
    return None


def mixpanel_event(message: dict[str, Any]) -> dict[str, Any] | None:
    """The Import API event for one Segment message, or None (identify, group, alias)."""
    kind, name = message.get("type"), message.get("name")
    if kind == "track":
        event = message.get("event")
    elif kind in ("page", "screen"):
        noun = "Page" if kind == "page" else "Screen"
        event = f"Viewed {name} {noun}" if name else f"Loaded a {noun}"
    else:
        return None
    context = message.get("context") or {}
    os_ = context.get("os") if isinstance(context.get("os"), dict) else {}
    app = context.get("app") if isinstance(context.get("app"), dict) else {}
    properties: dict[str, Any] = dict(message.get("properties") or {})
    optional = {"$user_id": message.get("userId"), "$device_id": message.get("anonymousId"),
                "ip": context.get("ip"), "$os": os_.get("name"), "$app_version_string": app.get("version")}
    properties.update({key: value for key, value in optional.items() if value is not None})
    properties.update({"time": _millis(message.get("timestamp")), "mp_lib": "revetl",
                       "distinct_id": message.get("userId") or message.get("anonymousId") or "",
                       "$insert_id": insert_id(str(message["messageId"]))})
    return {"event": event, "properties": properties}


class Mixpanel(StreamDestination[MixpanelConfig]):
    type = "mixpanel"
    max_batch_events = 2_000
    max_batch_bytes = 10_000_000 - 65_536
    default_concurrency = 4

    def http_options(self) -> HttpOptions:
        pair = f"{self.config.username}:{self.config.secret.get_secret_value()}".encode()
        return HttpOptions(headers={"Authorization": "Basic " + base64.b64encode(pair).decode(),
                                    "Content-Type": "application/json", "Accept": "application/json"})

    @property
    def secrets(self) -> list[str]:
        pair = f"{self.config.username}:{self.config.secret.get_secret_value()}".encode()
        return [*super().secrets, base64.b64encode(pair).decode()]

    def prepare(self, message: dict[str, Any]) -> dict[str, Any] | None:
        return mixpanel_event(message)

    async def send(self, http: Http, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        response = await http.request("POST", f"/import?strict=1&project_id={self.config.project_id}",
                                      content=orjson.dumps(list(items)))
        status = response.status_code
        if status == 413 and len(items) > 1:
            return await self.in_halves(http, items)
        if status < 300:
            return [None] * len(items)
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        failed = answer.get("failed_records") if isinstance(answer, dict) else None
        if status != 400 or not isinstance(failed, list):
            raise self.fatal(f"mixpanel answered {status}: {str(answer.get('error') or response.text)[:200]}", status)
        verdicts: list[Verdict] = [None] * len(items)
        for record in failed:
            index = record.get("index") if isinstance(record, dict) else None
            if isinstance(index, int) and 0 <= index < len(items):
                verdicts[index] = f"mixpanel 400: {record.get('message') or record.get('field')}"
        return verdicts
