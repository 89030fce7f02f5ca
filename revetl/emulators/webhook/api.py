"""A webhook receiver written the way the README tells receivers to be written (README, "Webhook").

- `POST /webhook`: the body must carry a valid `X-Revetl-Signature` (HMAC-SHA256 of
  "<X-Revetl-Timestamp>.<body>" with the shared secret) and a timestamp within `tolerance` seconds of
  the receiver's clock, else `401 {"error": ...}` and nothing is applied (a forged or replayed request).
- `Idempotency-Key` is required (400 without). A key seen before with the same body is answered with
  the first answer again (`Idempotent-Replayed: true`) and not applied twice; with another body, `422`.
- Adds and changes set a member's fields, removes delete the member. A receiver may refuse single
  rows: this one refuses a row whose `email` field is set and not an email address, listing it in
  `{"rejected": [{"key", "reason"}]}` of its 200 while the other rows are applied.
- A route's batch, `{"route", "batch", "events": [...]}`: each event is kept once by its `messageId`
  (`GET /_emulator/events`); one without a `messageId` is listed under `rejected`.
- More than `max_rows` rows in one batch: `413`. Bodies over 4 MB: `413`. Not JSON: `400`.

Options beyond the common ones: `secret` (default $WEBHOOK_SECRET, else "dev-webhook-secret-0123"),
`tolerance` (300 s), `max_rows` (10,000). Control: `GET /_emulator/members`, `GET /_emulator/batches`
(each key with how many times it was received and applied).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterable
from typing import Any

from revetl.emulators.base import Emulator, Request, Response, Route
from revetl.errors import ConfigError
from revetl.signing import signature

__all__ = ["DEFAULT_SECRET", "WebhookEmulator"]

DEFAULT_SECRET = "dev-webhook-secret-0123"
GROUPS = ("adds", "changes", "removes")


class WebhookEmulator(Emulator):
    """`POST /webhook`, checking signatures and idempotency keys as a careful receiver does."""

    name = "webhook"
    default_port = 8094
    extra_options = {"secret": None, "tolerance": 300.0, "max_rows": 10_000}

    def __init__(self, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        secret = self.config["secret"] or os.environ.get("WEBHOOK_SECRET") or DEFAULT_SECRET
        self._secret = secret.encode()  # compared, never logged or echoed
        for name in ("tolerance", "max_rows"):
            value = self.config[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"Webhook option {name!r} must be a positive number.")

    def routes(self) -> Iterable[Route]:
        return [Route("POST", "/webhook", self.receive)]

    def control_routes(self) -> Iterable[Route]:
        return [Route("GET", "/_emulator/members", self.list_members),
                Route("GET", "/_emulator/batches", lambda _: Response(200, {"batches": self.batches})),
                Route("GET", "/_emulator/events", lambda _: Response(200, {"count": len(self.events),
                                                                           "events": self.events}))]

    def reset_state(self) -> None:
        self.members: dict[str, dict[str, Any]] = {}
        self.answers: dict[str, tuple[str, Response]] = {}  # idempotency key -> (body digest, first answer)
        self.batches: dict[str, dict[str, int]] = {}  # idempotency key -> {"received", "applied"}
        self.events: list[dict[str, Any]] = []  # routes' events (`{"events": [...]}` bodies), once each
        self.event_ids: set[str] = set()

    def authenticate(self, request: Request) -> Response | None:
        timestamp = request.headers.get("x-revetl-timestamp", "")
        given = request.headers.get("x-revetl-signature", "")
        expected = signature(self._secret, timestamp, request.body)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return Response(401, {"error": "invalid signature"})
        try:
            age = abs(self.clock() - int(timestamp))
        except ValueError:
            return Response(401, {"error": "invalid timestamp"})
        if age > self.config["tolerance"]:
            return Response(401, {"error": f"timestamp outside the {self.config['tolerance']:g} s tolerance"})
        return None

    def receive(self, request: Request) -> Response:
        key = request.headers.get("idempotency-key", "")
        if not key:
            return Response(400, {"error": "Idempotency-Key is required"})
        digest = hashlib.sha256(request.body).hexdigest()
        seen = self.batches.setdefault(key, {"received": 0, "applied": 0})
        seen["received"] += 1
        if key in self.answers:
            first_digest, first = self.answers[key]
            if first_digest != digest:
                return Response(422, {"error": "Idempotency-Key reused with another body"})
            return Response(first.status, first.body, {"Idempotent-Replayed": "true"})
        try:
            body = request.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("events"), list):
            answer = self._stream(body["events"])
            self.answers[key] = (digest, answer)
            seen["applied"] += answer.status == 200
            return answer
        if not isinstance(body, dict) or not all(isinstance(body.get(g, []), list) for g in GROUPS):
            return Response(400, {"error": "the body must be a JSON object with lists adds, changes, removes"})
        if sum(len(body.get(g, [])) for g in GROUPS) > self.config["max_rows"]:
            return Response(413, {"error": f"at most {self.config['max_rows']} rows a batch"})
        rejected = self._apply(body)
        answer = Response(200, {"accepted": sum(len(body.get(g, [])) for g in GROUPS) - len(rejected),
                                "rejected": rejected})
        self.answers[key] = (digest, answer)
        seen["applied"] += 1
        return answer

    def _stream(self, events: list[Any]) -> Response:
        """A route's batch of events: each kept once by `messageId` (a receiver deduplicating per event)."""
        if len(events) > self.config["max_rows"]:
            return Response(413, {"error": f"at most {self.config['max_rows']} events a batch"})
        rejected = []
        for event in events:
            message_id = event.get("messageId") if isinstance(event, dict) else None
            if not isinstance(message_id, str):
                rejected.append({"messageId": message_id, "reason": "an event needs a messageId"})
            elif message_id not in self.event_ids:
                self.event_ids.add(message_id)
                self.events.append(event)
        self.count_applied("events", len(events) - len(rejected))
        return Response(200, {"accepted": len(events) - len(rejected), "rejected": rejected})

    def _apply(self, body: dict[str, Any]) -> list[dict[str, str]]:
        rejected = []
        for group in GROUPS:
            for entry in body.get(group, []):
                if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                    continue
                key, fields = entry["key"], entry.get("fields")
                if not isinstance(fields, dict):
                    rejected.append({"key": key, "reason": "fields must be an object"})
                elif group == "removes":
                    self.members.pop(key, None)
                elif fields.get("email") is not None and not (isinstance(fields["email"], str) and "@" in fields["email"]):
                    rejected.append({"key": key, "reason": "email is not an email address"})
                else:
                    self.members[key] = fields
                self.count_applied(group)
        return rejected

    def list_members(self, request: Request) -> Response:
        return Response(200, {"count": len(self.members),
                              "members": [{"key": k, "fields": v} for k, v in sorted(self.members.items())]})
