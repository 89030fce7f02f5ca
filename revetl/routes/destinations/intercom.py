"""Intercom for the stream: identify -> the contact, track -> a data event, as Intercom's Segment integration does.

    identify  POST /contacts {role: user, external_id, email, name, phone}; a 409 names the existing contact:
              PUT /contacts/{id}. Other traits are custom attributes, which must exist in the workspace:
              they are not sent (a sync with `create_attributes` creates them).
    track     POST /events {event_name, created_at (seconds), user_id, metadata}: metadata holds the
              properties that are text, numbers or booleans (Intercom takes no nested JSON and keeps the
              first 10 keys). Intercom de-duplicates an event by contact, name and created_at, so a resend
              after a crash is harmless.
page, screen, group and alias are not sent; an event without a userId neither (counted as unsupported).

Intercom has no batch endpoint: a batch is sent one event at a time, in order, and one batch at a time by
default (`concurrency: 1`), so a user's identify reaches Intercom before the events that follow it. A 404
(the user does not exist in Intercom) refuses that event with Intercom's message; 401 holds the route.
Limit: 10,000 calls a minute, enforced in 10-second windows (1,667 per 10 s).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson
from pydantic import SecretStr

from revetl.destinations.base import DestinationConfig, HttpOptions
from revetl.destinations.intercom import CONFLICT_ID, describe
from revetl.routes.destinations.base import StreamDestination, Verdict

if TYPE_CHECKING:
    from revetl.sync.http import Http

__all__ = ["IntercomStream", "IntercomStreamConfig", "intercom_request"]

_CONTACT_FIELDS = {"email": "email", "name": "name", "phone": "phone"}


class IntercomStreamConfig(DestinationConfig):
    base_url: str = "https://api.intercom.io"
    token: SecretStr


def _seconds(value: Any) -> int | None:
    if isinstance(value, str):
        try:
            return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return None
    return None


def intercom_request(message: dict[str, Any]) -> dict[str, Any] | None:
    """`{"contact": body}` or `{"event": body}` for one Segment message; None when Intercom takes no such call."""
    user = message.get("userId")
    if not user:
        return None
    if message.get("type") == "identify":
        traits = message.get("traits") or {}
        if not traits.get("name") and (traits.get("firstName") or traits.get("lastName")):
            traits = {**traits, "name": " ".join(filter(None, (traits.get("firstName"), traits.get("lastName"))))}
        fields = {name: traits[key] for key, name in _CONTACT_FIELDS.items() if traits.get(key) is not None}
        return {"contact": {"external_id": user, **fields}}
    if message.get("type") == "track":
        properties = message.get("properties") or {}
        metadata = {k: v for k, v in properties.items() if isinstance(v, (str, int, float, bool))}
        return {"event": {"event_name": message.get("event"), "created_at": _seconds(message.get("timestamp")),
                          "user_id": user, "metadata": dict(list(metadata.items())[:10])}}
    return None


class IntercomStream(StreamDestination[IntercomStreamConfig]):
    type = "intercom"
    max_batch_events = 50
    default_concurrency = 1
    published_rate_limit = (1667, 10.0)

    def http_options(self) -> HttpOptions:
        return HttpOptions(headers={"Authorization": f"Bearer {self.config.token.get_secret_value()}",
                                    "Content-Type": "application/json", "Accept": "application/json",
                                    "Intercom-Version": "2.11"}, describe=describe)

    def prepare(self, message: dict[str, Any]) -> dict[str, Any] | None:
        return intercom_request(message)

    async def send(self, http: Http, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        return [await (self._contact(http, item["contact"]) if "contact" in item else self._event(http, item["event"]))
                for item in items]

    async def _event(self, http: Http, body: dict[str, Any]) -> Verdict:
        response = await http.request("POST", "/events", content=orjson.dumps(body))
        if response.status_code < 300:
            return None
        return f"intercom {response.status_code}: {describe(response)}"

    async def _contact(self, http: Http, body: dict[str, Any]) -> Verdict:
        response = await http.request("POST", "/contacts", content=orjson.dumps({"role": "user", **body}))
        if response.status_code < 300:
            return None
        found = CONFLICT_ID.search(describe(response)) if response.status_code == 409 else None
        if found is None:
            return f"intercom {response.status_code}: {describe(response)}"
        fields = {k: v for k, v in body.items() if k != "external_id"}
        updated = await http.request("PUT", f"/contacts/{quote(found.group(1), safe='')}", content=orjson.dumps(fields))
        return None if updated.status_code < 300 else f"intercom {updated.status_code}: {describe(updated)}"
