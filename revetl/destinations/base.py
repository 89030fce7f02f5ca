"""The interface every destination implements, built-in or third-party (DESIGN 7, STYLE 9).

A destination declares; the engine (`sync/apply.py`, `sync/http.py`) does everything else:

    config_model   strict schema of the sync file's `destination:` block (secrets as SecretStr)
    batch_size     the most rows one `send` call takes (the vendor's per-request limit)
    rate_limit()   (requests, seconds) to start from: the vendor's published limit, or the config's
    http_options() base URL, auth headers and how to read an error body
    open()         one-time set-up before the first batch (fetch a token, create a tag)
    send()         a batch of planned rows -> requests through `Http` -> one RowResult per row

Retries, backoff, rate limiting, state, failures and progress are not a destination's business:
`Http.request` retries what can be retried and raises what is fatal; `send` only reads answers.
Register a destination under the entry-point group `revetl.destinations` (built-ins do too).
"""

from __future__ import annotations

import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import orjson
from pydantic import Field, SecretStr, field_validator

from revetl.config import Strict, SyncConfig
from revetl.sync.http import Http

__all__ = ["Destination", "DestinationConfig", "RateLimitConfig", "Row", "RowResult", "secret_values"]


class Row(NamedTuple):
    """One planned change, as the plan holds it: JSON text, parsed only if a destination asks.

    A NamedTuple in the plan's column order (`select op, key, payload, row_hash, dest_ref,
    previous_payload from revetl_diff`): a sync builds one per row straight from those columns, and
    a tuple costs a fraction of a dataclass. `Row.of` builds one from a dict of fields (tests).
    """

    op: str  # "add" | "change" | "remove"
    key: str
    payload: str | None = None  # JSON object of the mapped fields (None for a remove): stored once acknowledged
    row_hash: str | None = None
    dest_ref: str | None = None  # the destination's own id for this key, from an earlier run
    previous: str | None = None  # the payload last acknowledged: a remove's fields

    @property
    def fields(self) -> dict[str, Any]:
        """The mapped fields, destination name -> value; for a remove, those last acknowledged.
        Parsed on every access: read it once per row."""
        return orjson.loads(self.payload or self.previous or "{}")

    @classmethod
    def of(cls, op: str, key: str, fields: dict[str, Any], dest_ref: str | None = None) -> Row:
        text = orjson.dumps(fields).decode()
        if op == "remove":
            return cls(op, key, None, None, dest_ref, text)
        return cls(op, key, text, None, dest_ref)


class RowResult(NamedTuple):
    """The destination's verdict on one row: acknowledged, or rejected with its reason."""

    ok: bool
    reason: str | None = None
    dest_ref: str | None = None

    @classmethod
    def rejected(cls, reason: str) -> RowResult:
        return cls(False, reason)


ACKNOWLEDGED = RowResult(True)


class RateLimitConfig(Strict):
    requests: int = Field(gt=0)
    per_seconds: float = Field(gt=0)


class DestinationConfig(Strict):
    """Keys every destination accepts besides its own."""

    type: str
    base_url: str
    timeout: float = Field(30.0, gt=0)
    concurrency: int | None = Field(None, ge=1, le=256)  # requests in flight; default: the destination's
    rate_limit: RateLimitConfig | None = None  # override the published limit (e.g. your plan's)
    unlimited: bool = False  # no client-side limit (emulators, benchmarks)
    attempts: int = Field(8, ge=1, le=30)  # tries per request through 429/5xx/timeouts before the run stops

    @field_validator("base_url")
    @classmethod
    def _no_credentials(cls, value: str) -> str:
        # Every destination authenticates with its own keys (headers); a user:password@ in the URL would
        # clash with them, and would be printed wherever the URL is. The message never repeats the value.
        parts = urllib.parse.urlsplit(value)
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "must not hold credentials (user:password@); give the destination's own keys through ${VAR}"
            )
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value


def secret_values(config: Strict) -> list[str]:
    """Every secret in a config, to scrub from any text that could leave the process: SecretStr values
    and the credentials of URLs (`https://user:PASS@host`)."""
    found = []
    for value in config.__dict__.values():
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, str) and "@" in value and "://" in value:
            password = urllib.parse.urlsplit(value).password
            if password:
                found += [password, urllib.parse.unquote(password)]
    return found


@dataclass
class Destination(ABC):
    """A configured destination for one sync. Subclasses set the class variables and `send`."""

    type: ClassVar[str]
    config_model: ClassVar[type[DestinationConfig]] = DestinationConfig
    max_batch_size: ClassVar[int] = 100
    default_concurrency: ClassVar[int] = 8
    published_rate_limit: ClassVar[tuple[int, float] | None] = None

    sync: SyncConfig
    config: DestinationConfig
    notes: list[str] = field(default_factory=list)  # one-line remarks for the run summary

    def __post_init__(self) -> None:
        """Validate the sync's destination-specific settings (identity, membership). Default: none."""

    @property
    def batch_size(self) -> int:
        return self.max_batch_size

    @property
    def concurrency(self) -> int:
        return self.config.concurrency or self.default_concurrency

    def rate_limit(self) -> tuple[int, float] | None:
        """(requests, seconds) the client holds itself to; None: unlimited."""
        if self.config.unlimited:
            return None
        if self.config.rate_limit:
            return self.config.rate_limit.requests, self.config.rate_limit.per_seconds
        return self.published_rate_limit

    def http_options(self) -> dict[str, Any]:
        """Keyword arguments for `Http`: at least `headers`; may add `describe`, `reauthenticate`."""
        return {"headers": {}}

    async def open(self, http: Http) -> None:
        """Set-up before the first batch. Default: nothing."""

    @abstractmethod
    async def send(self, http: Http, rows: Sequence[Row]) -> list[RowResult]:
        """Apply `rows` (at most `batch_size`); return one result per row, in order."""

    def check(self) -> list[str]:
        """Warnings about the sync's mapping for `revetl audiences check`. Default: none."""
        return []
