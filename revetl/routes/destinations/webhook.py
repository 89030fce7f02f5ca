"""The generic webhook for the stream: batches of Segment-spec events POSTed to any URL, signed.

One request per batch (`batch_size` events, 100 by default), `POST base_url`:

    {"route": "payments_to_crm", "batch": "<idempotency key>", "events": [<Segment-spec message>, ...]}

Headers as the sync webhook sends them (README "Webhook"): `Idempotency-Key` (a digest of the batch's
message ids: a resend of the same batch, after a crash too, carries the same key), `X-Revetl-Timestamp`
and `X-Revetl-Signature` (revetl/signing.py, fresh on every try), plus the configured `headers`. Each
event also carries its `messageId`, for receivers that deduplicate per event.

The answer: 2xx acknowledges every event but those listed in `{"rejected": [{"messageId", "reason"}]}`;
408, 429 and 5xx are retried (shared policy); 401/403, 404/405/410, 3xx and 413 hold the route (a wrong
secret, URL or batch size); any other 4xx refuses every event of the batch with the receiver's message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import Field

from revetl.destinations.base import HttpOptions
from revetl.destinations.webhook import IDEMPOTENCY_HEADER, WebhookConfig, describe, header_secrets, receiver_options
from revetl.routes.destinations.base import StreamDestination, Verdict

if TYPE_CHECKING:
    from revetl.sync.http import Http

__all__ = ["StreamWebhook", "StreamWebhookConfig", "events_key"]


class StreamWebhookConfig(WebhookConfig):
    batch_size: int = Field(100, ge=1, le=2_500)


def events_key(route: str, items: Sequence[dict[str, Any]]) -> str:
    """The batch's idempotency key: the route and its events' message ids, in order."""
    digest = hashlib.sha256(route.encode() + b"\n")
    for item in items:
        digest.update(f"{item.get('messageId')}\n".encode())
    return digest.hexdigest()[:40]


class StreamWebhook(StreamDestination[StreamWebhookConfig]):
    type = "webhook"
    max_batch_events = 2_500
    max_batch_bytes = 4_000_000

    @property
    def secrets(self) -> list[str]:
        return [*super().secrets, *header_secrets(self.config)]

    def http_options(self) -> HttpOptions:
        return receiver_options(self.config, "revetl-routes")

    def prepare(self, message: dict[str, Any]) -> dict[str, Any]:
        return message

    async def send(self, http: Http, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        key = events_key(self.route, items)
        body = orjson.dumps({"route": self.route, "batch": key, "events": list(items)})
        response = await http.request("POST", self.config.base_url, content=body, headers={IDEMPOTENCY_HEADER: key})
        status = response.status_code
        if status in (404, 405, 410, 413) or 300 <= status < 400:
            raise self.fatal(f"webhook answered {status} ({describe(response)}): check base_url and batch_size",
                             status)
        if status >= 400:
            return [f"webhook {status}: {describe(response)}"] * len(items)
        try:
            answer = response.json() if response.content else None
        except ValueError:
            answer = None
        listed = answer.get("rejected") if isinstance(answer, dict) else None
        reasons = {str(entry.get("messageId")): str(entry.get("reason") or "rejected by the webhook")[:500]
                   for entry in listed or () if isinstance(entry, dict)}
        return [reasons.get(str(item.get("messageId"))) for item in items]
