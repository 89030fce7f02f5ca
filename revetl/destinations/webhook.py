"""Generic webhook: JSON batches of adds, changes and removes POSTed to any URL, signed with HMAC-SHA256.

One request per batch (`batch_size` rows, 100 by default), `POST base_url`:

    {"sync": "churn_to_crm", "audience": "churn_risk", "identity": "external_id", "batch": "<idempotency key>",
     "adds":    [{"key": "u1", "fields": {...}}],
     "changes": [{"key": "u2", "fields": {...}, "previous": {...}}],
     "removes": [{"key": "u3", "fields": {...last acknowledged}}]}

Entries are sorted by key, so the same rows make the same bytes. Headers: `Idempotency-Key` (the
batch's key: a digest of the sync and of each row's op, key and row hash, so a resend of the same batch,
after a crash too, carries the same key), `X-Revetl-Timestamp` (Unix seconds, fresh on every try) and
`X-Revetl-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` (revetl/signing.py), plus the configured `headers`
(their values are secrets: scrubbed from every message, never logged).

The answer (README, "Webhook"): 2xx acknowledges every row but those listed in a JSON body
`{"rejected": [{"key": ..., "reason": ...}]}`; 408, 429 and 5xx are retried by the shared policy
(`Retry-After` honoured); 401/403 stop the run; 404/405/410 and 3xx (a wrong URL) and 413 (lower
`batch_size`) stop it too; any other 4xx rejects every row of the batch with the receiver's message.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import Field, SecretStr, field_validator

from revetl.destinations.base import ACKNOWLEDGED, Destination, DestinationConfig, HttpOptions, Row, RowResult
from revetl.errors import ConfigError
from revetl.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature

if TYPE_CHECKING:
    import httpx

    from revetl.sync.http import Http

__all__ = ["SIGNATURE_HEADER", "TIMESTAMP_HEADER", "Webhook", "WebhookConfig", "batch_key", "describe", "header_secrets",
           "receiver_options", "refuse_membership", "signature"]

IDEMPOTENCY_HEADER = "Idempotency-Key"
RESERVED = {name.lower() for name in ("Content-Type", "Content-Length", "Host", IDEMPOTENCY_HEADER,
                                      SIGNATURE_HEADER, TIMESTAMP_HEADER)}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # RFC 9110 field-name
OPS = (("add", "adds"), ("change", "changes"), ("remove", "removes"))


class WebhookConfig(DestinationConfig):
    secret: SecretStr  # the HMAC key shared with the receiver, through ${VAR}
    batch_size: int = Field(100, ge=1, le=10_000)
    headers: dict[str, SecretStr] = {}  # extra headers (auth for the receiver); values are secrets

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 16:  # the message never says what it was
            raise ValueError("must be at least 16 characters: a random string shared with the receiver")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, text in value.items():
            if not _TOKEN.match(name):
                raise ValueError(f"`{name}` is not a valid header name")
            if name.lower() in RESERVED:
                raise ValueError(f"`{name}` is set by revetl itself and cannot be configured")
            if any(c in text.get_secret_value() for c in "\r\n\0"):
                raise ValueError(f"the value of `{name}` holds a line break")  # the value itself is never echoed
        return value


def batch_key(sync: str, rows: Sequence[Row]) -> str:
    """The batch's idempotency key: the same rows (op, key, row hash), in any order, give the same key."""
    digest = hashlib.sha256(sync.encode() + b"\n")
    for op, key, _, row_hash, _, _ in sorted(rows, key=lambda row: row.key):
        digest.update(f"{op}\t{key}\t{row_hash or ''}\n".encode())
    return digest.hexdigest()[:40]


def header_secrets(config: WebhookConfig) -> list[str]:
    """Each configured header value, and its words ("Bearer <token>": a receiver may quote the token)."""
    values = [value.get_secret_value() for value in config.headers.values()]
    return [*values, *(word for value in values for word in value.split() if len(word) >= 8)]


def receiver_options(config: WebhookConfig, agent: str) -> HttpOptions:
    """What `Http` sends a signed receiver: the configured headers, JSON, and a fresh signature on each try."""
    headers = {name: value.get_secret_value() for name, value in config.headers.items()}
    headers["Content-Type"] = "application/json"
    headers.setdefault("User-Agent", agent)
    secret = config.secret.get_secret_value().encode()

    def sign(method: str, url: str, body: bytes | None, now: float) -> Mapping[str, str]:
        timestamp = str(int(now))
        return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: signature(secret, timestamp, body or b"")}

    return HttpOptions(headers=headers, describe=describe, sign=sign)


def refuse_membership(destination: Destination[Any]) -> None:
    """A sync's `membership:` means nothing to a webhook or a digest (membership is the batch's own
    adds and removes): say so rather than ignore it."""
    if destination.sync.membership:
        raise ConfigError(f"{destination.sync.path}: {destination.type} takes no `membership` (who is in the "
                          "audience is what the adds and removes say); remove it")


def describe(response: httpx.Response) -> str:
    """A receiver's error body in a few words: its `error`/`message`, else the start of the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for name in ("error", "message", "detail"):
            if isinstance(body.get(name), str) and body[name]:
                return body[name][:200]
    return " ".join(response.text.split())[:200] or response.reason_phrase


class Webhook(Destination[WebhookConfig]):
    type = "webhook"
    max_batch_size = 10_000
    default_concurrency = 4  # a receiver is somebody's own service: few requests in flight unless raised

    def configure(self) -> None:
        refuse_membership(self)

    @property
    def batch_size(self) -> int:
        return self.config.batch_size

    @property
    def secrets(self) -> list[str]:
        return [*super().secrets, *header_secrets(self.config)]

    def http_options(self) -> HttpOptions:
        return receiver_options(self.config, "revetl-webhook")

    def body(self, rows: Sequence[Row], key: str) -> bytes:
        """The batch as the receiver gets it (entries sorted by key: the same rows, the same bytes)."""
        groups: dict[str, list[dict[str, Any]]] = {name: [] for _, name in OPS}
        names = dict(OPS)
        for row in sorted(rows, key=lambda row: row.key):
            entry: dict[str, Any] = {"key": row.key, "fields": row.fields}
            if row.op == "change" and row.previous:
                entry["previous"] = orjson.loads(row.previous)
            groups[names[row.op]].append(entry)
        head = {"sync": self.sync.name, "audience": self.sync.audience, "identity": self.sync.identity.to,
                "batch": key}
        return orjson.dumps({**head, **groups})

    async def send(self, http: Http, rows: Sequence[Row]) -> list[RowResult]:
        key = batch_key(self.sync.name, rows)
        response = await http.request("POST", self.config.base_url, content=self.body(rows, key),
                                      headers={IDEMPOTENCY_HEADER: key})
        status = response.status_code
        if status in (404, 405, 410):  # every batch would get it: the URL is wrong
            raise self.fatal(f"webhook answered {status}: is base_url right? ({describe(response)})", status)
        if 300 <= status < 400:  # a POST is not followed through a redirect: its rows were not received
            raise self.fatal(f"webhook answered {status} (a redirect to {response.headers.get('location', '?')}): "
                             "give base_url the receiver's final URL", status)
        if status == 413:
            raise self.fatal(f"webhook answered 413 to a batch of {len(rows)} rows: lower batch_size "
                             f"({describe(response)})", status)
        if status >= 400:
            reason = self.rejected(None, f"webhook {status}: {describe(response)}").reason
            return [RowResult.rejected(reason)] * len(rows)
        return self._results(rows, response)

    def _results(self, rows: Sequence[Row], response: httpx.Response) -> list[RowResult]:
        """Every row acknowledged, but those the body lists as rejected (with the receiver's reason)."""
        try:
            answer = response.json() if response.content else None
        except ValueError:
            answer = None
        rejected = answer.get("rejected") if isinstance(answer, dict) else None
        if not isinstance(rejected, list) or not rejected:
            return [ACKNOWLEDGED] * len(rows)
        reasons = {}
        for item in rejected:
            if isinstance(item, dict) and isinstance(item.get("key"), str):
                reasons[item["key"]] = str(item.get("reason") or "rejected by the webhook")[:500]
        return [RowResult.rejected(self.rejected(row.key, reasons[row.key]).reason) if row.key in reasons
                else ACKNOWLEDGED for row in rows]
