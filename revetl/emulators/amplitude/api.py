"""Amplitude's HTTP V2 API, faithful in what a sender must handle (amplitude.com/docs/apis/analytics/http-v2).

- `POST /2/httpapi` takes `{"api_key", "events": [...], "options": {"min_id_length"}}`. The key is in the
  body: a wrong one is `400 {"code": 400, "error": "Invalid API key: ..."}` (the key is never echoed here).
- A request of more than 2,000 events, or over 1 MB, is `413 {"code": 413, "error": "Payload too large"}`.
- Every event needs `event_type` and a `user_id` or `device_id`; ids shorter than `min_id_length` (5 by
  default) are invalid, so is a `time` that is not an integer of milliseconds. If any event is wrong,
  nothing is ingested: `400` with `events_with_invalid_fields` / `events_with_missing_fields`
  (field -> indexes), as Amplitude answers.
- A device or user that already sent `eps_threshold` (30) events this second: `429` with
  `throttled_devices` / `throttled_users` / `throttled_events`, nothing ingested.
- Success: `200 {"code": 200, "events_ingested": N, "payload_size_bytes": B, "server_upload_time": ms}`.
  An event whose `insert_id` was ingested before is acknowledged and not stored again (Amplitude's
  7-day deduplication).

Options beyond the common ones: `api_key` (default $AMPLITUDE_API_KEY, else "dev-amplitude-key"),
`eps_threshold` (30), `max_events` (2,000: a lower one makes a sender's batches meet 413). Control: `GET /_emulator/events` (what was ingested, in order),
`GET /_emulator/received` (insert_id -> times it arrived in an accepted request).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from revetl.emulators.base import Emulator, Request, Response, Route

__all__ = ["DEFAULT_KEY", "AmplitudeEmulator"]

DEFAULT_KEY = "dev-amplitude-key"
MAX_EVENTS = 2_000
MAX_BYTES = 1_000_000


class AmplitudeEmulator(Emulator):
    name = "amplitude"
    default_port = 8096
    max_body_bytes = 4 * 1024 * 1024
    extra_options = {"api_key": None, "eps_threshold": 30, "max_events": MAX_EVENTS}

    def __init__(self, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        self._key = self.config["api_key"] or os.environ.get("AMPLITUDE_API_KEY") or DEFAULT_KEY

    def routes(self) -> Iterable[Route]:
        return [Route("POST", "/2/httpapi", self.upload)]

    def control_routes(self) -> Iterable[Route]:
        return [Route("GET", "/_emulator/events", lambda _: Response(200, {"count": len(self.events),
                                                                           "events": self.events})),
                Route("GET", "/_emulator/received", lambda _: Response(200, self.received))]

    def reset_state(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.received: dict[str, int] = defaultdict(int)
        self._ingested: set[str] = set()
        self._second = 0
        self._per_id: dict[str, int] = defaultdict(int)

    def too_large(self) -> Response:
        return Response(413, {"code": 413, "error": "Payload too large"})

    def upload(self, request: Request) -> Response:
        try:
            body = request.json()
        except ValueError:
            return Response(400, {"code": 400, "error": "Invalid JSON request body"})
        if not isinstance(body, dict) or not body.get("api_key"):
            return Response(400, {"code": 400, "error": "Request missing required field", "missing_field": "api_key"})
        if body["api_key"] != self._key:
            return Response(400, {"code": 400, "error": "Invalid API key"})
        events = body.get("events")
        if not isinstance(events, list) or not events:
            return Response(400, {"code": 400, "error": "Request missing required field", "missing_field": "events"})
        if len(events) > self.config["max_events"] or len(request.body) > MAX_BYTES:
            return self.too_large()
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        problems = _problems(events, int(options.get("min_id_length") or 5))
        if problems:
            return Response(400, {"code": 400, "error": "Request missing required field or invalid field", **problems})
        throttled = self._throttle(events)
        if throttled:
            return Response(429, {"code": 429, "error": "Too many requests for some devices and users",
                                  "eps_threshold": self.config["eps_threshold"], **throttled})
        for event in events:
            self.received[event.get("insert_id") or ""] += 1
            if event.get("insert_id") and event["insert_id"] in self._ingested:
                continue
            if event.get("insert_id"):
                self._ingested.add(event["insert_id"])
            self.events.append(event)
        self.count_applied("events", len(events))
        return Response(200, {"code": 200, "events_ingested": len(events), "payload_size_bytes": len(request.body),
                              "server_upload_time": int(self.clock() * 1000)})

    def _throttle(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Amplitude's per-device and per-user limit, counted in one-second windows."""
        second = math.floor(self.clock())
        if second != self._second:
            self._second, self._per_id = second, defaultdict(int)
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for event in events:
            for field in ("device_id", "user_id"):
                if event.get(field):
                    counts[(field, event[field])] += 1
        limit = self.config["eps_threshold"]
        # Amplitude measures a device's rate over its recent requests: one already over the threshold
        # in this second is throttled (a single request is never refused for its own size alone).
        over = {key: count for key, count in counts.items() if self._per_id[f"{key[0]}:{key[1]}"] >= limit}
        if not over:
            for (field, value), count in counts.items():
                self._per_id[f"{field}:{value}"] += count
            return {}
        return {"throttled_devices": {v: limit for (f, v) in over if f == "device_id"},
                "throttled_users": {v: limit for (f, v) in over if f == "user_id"},
                "throttled_events": [i for i, e in enumerate(events)
                                     if any(e.get(f) == v for (f, v) in over)]}


def _problems(events: list[Any], min_id_length: int) -> dict[str, Any]:
    invalid: dict[str, list[int]] = defaultdict(list)
    missing: dict[str, list[int]] = defaultdict(list)
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            invalid["event"].append(index)
            continue
        if not isinstance(event.get("event_type"), str) or not event["event_type"]:
            missing["event_type"].append(index)
        ids = [event.get(field) for field in ("user_id", "device_id")]
        if not any(ids):
            missing["user_id"].append(index)
        for field, value in zip(("user_id", "device_id"), ids):
            if value is not None and (not isinstance(value, str) or len(value) < min_id_length):
                invalid[field].append(index)
        if "time" in event and (isinstance(event["time"], bool) or not isinstance(event["time"], int)):
            invalid["time"].append(index)
    found: dict[str, Any] = {}
    if invalid:
        found["events_with_invalid_fields"] = dict(invalid)
    if missing:
        found["events_with_missing_fields"] = dict(missing)
    return found
