"""Mixpanel's Import API, faithful in what a sender must handle (docs.mixpanel.com/reference/import-events).

- `POST /import?strict=1&project_id=ID`, HTTP Basic with a service account (user name and secret) and the
  project's id: anything else is `401 {"code": 401, "error": "Invalid credentials", "status": "Unauthorized"}`.
- A JSON array (or `application/x-ndjson` lines) of `{"event", "properties"}`; more than 2,000 events or 10 MB:
  `413`. Each event needs `properties.time` (seconds or milliseconds, after 1971-01-01 and at most an hour
  ahead), a `distinct_id` (a string; placeholders such as `anonymous`, `null`, `undefined` are refused) and a
  `$insert_id` (at most 36 letters, digits and '-').
- Strict mode: the valid events are imported and the others listed, `400 {"code": 400, "error": "some data
  points in the request failed validation", "failed_records": [{"index", "insert_id", "field", "message"}],
  "num_records_imported": N, "status": "Bad Request"}`; all valid: `200 {"code": 200,
  "num_records_imported": N, "status": "OK"}`. An event with the same name, distinct_id, time (to the
  second) and `$insert_id` as one imported before is counted and not stored again (Mixpanel's dedup).

Options beyond the common ones: `project_id` ("1"), `username` ("revetl-dev.sa"), `secret` (default
$MIXPANEL_SECRET, else "dev-mixpanel-secret"). Control: `GET /_emulator/events` (what was imported, in order).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable
from typing import Any

import orjson

from revetl.emulators.base import Emulator, Request, Response, Route

__all__ = ["MixpanelEmulator"]

MAX_EVENTS = 2_000
MAX_BYTES = 10_000_000
_INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}\Z")
_PLACEHOLDERS = {"anon", "anonymous", "nil", "none", "null", "n/a", "na", "undefined", "unknown", "lmy47d", "0",
                 "-1", "00000000-0000-0000-0000-000000000000", "[]", "{}"}
_EPOCH_1971 = 31_536_000


class MixpanelEmulator(Emulator):
    name = "mixpanel"
    default_port = 8097
    max_body_bytes = 16 * 1024 * 1024
    extra_options = {"project_id": "1", "username": "revetl-dev.sa", "secret": None}

    def __init__(self, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        secret = self.config["secret"] or os.environ.get("MIXPANEL_SECRET") or "dev-mixpanel-secret"
        pair = f"{self.config['username']}:{secret}".encode()
        self._authorization = "Basic " + base64.b64encode(pair).decode()

    def routes(self) -> Iterable[Route]:
        return [Route("POST", "/import", self.import_events)]

    def control_routes(self) -> Iterable[Route]:
        return [Route("GET", "/_emulator/events", lambda _: Response(200, {"count": len(self.events),
                                                                           "events": self.events}))]

    def reset_state(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._keys: set[tuple[Any, ...]] = set()

    def authenticate(self, request: Request) -> Response | None:
        if (request.headers.get("authorization") != self._authorization
                or request.query.get("project_id") != self.config["project_id"]):
            return Response(401, {"code": 401, "error": "Invalid credentials", "status": "Unauthorized"})
        return None

    def too_large(self) -> Response:
        return Response(413, {"code": 413, "error": "request too large", "status": "Payload Too Large"})

    def import_events(self, request: Request) -> Response:
        try:
            if "ndjson" in request.headers.get("content-type", ""):
                events = [orjson.loads(line) for line in request.body.splitlines() if line.strip()]
            else:
                events = request.json()
        except ValueError:
            return Response(400, {"code": 400, "error": "unable to parse the request body", "status": "Bad Request"})
        if not isinstance(events, list):
            events = [events]
        if len(events) > MAX_EVENTS or len(request.body) > MAX_BYTES:
            return self.too_large()
        failed = []
        imported = 0
        for index, event in enumerate(events):
            problem = _problem(event, self.clock())
            if problem:
                properties = event.get("properties") if isinstance(event, dict) else None
                insert = properties.get("$insert_id") if isinstance(properties, dict) else None
                failed.append({"index": index, "insert_id": insert, "field": problem[0], "message": problem[1]})
                continue
            imported += 1
            properties = event["properties"]
            time = properties["time"] // 1000 if properties["time"] > 10**11 else properties["time"]
            key = (event["event"], properties["distinct_id"], int(time), properties["$insert_id"])
            if key not in self._keys:
                self._keys.add(key)
                self.events.append(event)
        self.count_applied("events", imported)
        if failed:
            return Response(400, {"code": 400, "error": "some data points in the request failed validation",
                                  "failed_records": failed, "num_records_imported": imported, "status": "Bad Request"})
        return Response(200, {"code": 200, "num_records_imported": imported, "status": "OK"})


def _problem(event: Any, now: float) -> tuple[str, str] | None:
    """(field, message) for an event Mixpanel refuses, else None."""
    if not isinstance(event, dict) or not isinstance(event.get("event"), str) or not event["event"]:
        return "event", "'event' must be a non-empty string"
    properties = event.get("properties")
    if not isinstance(properties, dict):
        return "properties", "'properties' must be an object"
    time = properties.get("time")
    if isinstance(time, bool) or not isinstance(time, (int, float)):
        return "properties.time", "'properties.time' is invalid: must be specified as seconds since epoch"
    seconds = time / 1000 if time > 10**11 else time
    if seconds < _EPOCH_1971 or seconds > now + 3600:
        return "properties.time", "'properties.time' is invalid: must be after 1971-01-01 and at most 1 hour ahead"
    distinct = properties.get("distinct_id")
    if not isinstance(distinct, str) or distinct.strip().lower() in _PLACEHOLDERS:
        return "properties.distinct_id", "'properties.distinct_id' is invalid"
    insert = properties.get("$insert_id")
    if not isinstance(insert, str) or not _INSERT_ID.match(insert):
        return "properties.$insert_id", "'properties.$insert_id' is invalid: at most 36 alphanumeric characters or '-'"
    return None
