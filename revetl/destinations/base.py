"""The interface every destination implements, built-in or third-party (DESIGN 7, STYLE 9).

A destination declares; the engine (`sync/apply.py`, `sync/http.py`) does everything else:

    class Braze(Destination[BrazeConfig])   generic over its strict config model: that sets
                    `config_model` (the sync file's `destination:` block, secrets as SecretStr) and
                    types `self.config`, so no destination casts its config
    identifiers     the `identity.to` values it accepts, checked here once (`identity_problem` for a rule
                    that is not a list); `configure()` then reads the sync's own settings (membership)
    max_batch_size, default_concurrency, published_rate_limit
                    the most rows one `send` takes, requests in flight, the vendor's limit
    http_options()  HttpOptions: auth headers, how to read an error body, how to renew a token
    setup(http)     once, before the first batch (fetch a token, create a tag)
    send(http, rows)  a batch of planned rows -> requests through `Http` -> one RowResult per row
    teardown(http)  once, after the last batch: always, also when the run failed or was cancelled
    check()         warnings about the sync's mapping for `revetl audiences check`

The engine sends inside `async with destination.connect(transport=...) as http`: an `Http` built from
the declarations above (base URL, options, rate limiter, retry policy, connections, secrets), set up,
torn down on the way out.

Retries, backoff, rate limiting, state, failures and progress are not a destination's business:
`Http.request` retries what can be retried and raises what is fatal; `send` only reads answers. What a
destination raises says what to do next (errors.py): `self.fatal(...)` stops the sync,
`self.rejected(key, reason)` refuses one row (caught into `RowResult.rejected`), both scrubbed of the
config's secrets. Register a destination under the entry-point group `revetl.destinations` (built-ins
do too) and run `revetl.testing`'s contract suite against it.
"""

from __future__ import annotations

import contextlib
import typing
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NamedTuple, TypeVar

import orjson
from pydantic import Field, SecretStr, field_validator

from revetl.config import Strict, SyncConfig
from revetl.errors import ConfigError, FatalDestinationError, RowRejected
from revetl.runtime import SYSTEM, Clock
from revetl.sync.options import HttpOptions

if TYPE_CHECKING:  # the HTTP client loads when a destination connects: a sync with nothing to send makes none
    import httpx

    from revetl.sync.http import Http

__all__ = [
    "ACKNOWLEDGED", "ConfigT", "Destination", "DestinationConfig", "HttpOptions", "RateLimitConfig", "Row",
    "RowResult", "configured_limit", "generic_config", "secret_values",
]


class Row(NamedTuple):
    """One planned change, as the plan holds it: JSON text, parsed only if a destination asks.

    A NamedTuple in the plan's column order (`select op, key, payload, row_hash, dest_ref,
    previous_payload from revetl_diff`): a sync builds one per row straight from those columns, and
    a tuple costs a fraction of a dataclass. Destinations read the fields by name (`row.op`,
    `row.key`, `row.fields`), never by position. `Row.of` builds one from a dict of fields (tests).
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
    """The destination's verdict on one row: acknowledged (with the destination's id for it, if any,
    stored as the row's `dest_ref`), or rejected with the reason stored in the failures table."""

    ok: bool
    reason: str | None = None
    dest_ref: str | None = None

    @classmethod
    def rejected(cls, reason: str) -> RowResult:
        return cls(False, reason)

    @classmethod
    def of(cls, rejection: RowRejected) -> RowResult:
        """The result of a row the destination refused (a caught RowRejected)."""
        return cls(False, rejection.reason)


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


def generic_config(cls: type, generic: type) -> Any:
    """The config model a subclass names as `generic[Model]` (its `config_model`), or None."""
    for base in cls.__dict__.get("__orig_bases__", ()):
        args = typing.get_args(base)
        if typing.get_origin(base) is generic and args and isinstance(args[0], type):
            return args[0]
    return None


def configured_limit(config: DestinationConfig, published: tuple[int, float] | None) -> tuple[int, float] | None:
    """The rate limit a client holds itself to: none when `unlimited`, the configured one, else `published`."""
    if config.unlimited:
        return None
    if config.rate_limit:
        return config.rate_limit.requests, config.rate_limit.per_seconds
    return published


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


ConfigT = TypeVar("ConfigT", bound=DestinationConfig)
ConfigModel = type[DestinationConfig]  # named here: inside Destination, `type` is the destination's name


@dataclass
class Destination(ABC, Generic[ConfigT]):
    """A configured destination for one sync. Subclass as `Destination[MyConfig]`, set the class
    variables, `send`, and the hooks you need."""

    type: ClassVar[str]
    config_model: ClassVar[ConfigModel] = DestinationConfig  # set from Destination[ConfigT]
    identifiers: ClassVar[tuple[str, ...]] = ()  # what `identity.to` may name; () : anything
    max_batch_size: ClassVar[int] = 100
    default_concurrency: ClassVar[int] = 8
    published_rate_limit: ClassVar[tuple[int, float] | None] = None

    sync: SyncConfig
    config: ConfigT
    notes: list[str] = field(default_factory=list)  # one-line remarks for the run summary

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.config_model = generic_config(cls, Destination) or cls.config_model

    def __post_init__(self) -> None:
        """Check `identity.to` against what the destination declares, then `configure`."""
        problem = self.identity_problem(self.sync.identity.to)
        if problem:
            raise ConfigError(f"{self.sync.path}: `identity.to` for {self.type} {problem}, "
                              f"not {self.sync.identity.to!r}")
        self.configure()

    def identity_problem(self, to: str) -> str | None:
        """None when `identity.to` may be `to`; else what it must be, as in "`identity.to` for TYPE
        <is one of a, b>". Default: one of `identifiers`, when any are declared."""
        if self.identifiers and to not in self.identifiers:
            return f"is one of {', '.join(self.identifiers)}"
        return None

    def configure(self) -> None:
        """Read and check the sync's destination-specific settings (membership, mapping) once, raising
        ConfigError that names the sync file. Default: nothing."""

    @property
    def batch_size(self) -> int:
        return self.max_batch_size

    @property
    def concurrency(self) -> int:
        return self.config.concurrency or self.default_concurrency

    @property
    def secrets(self) -> list[str]:
        """The config's secrets: scrubbed from every error this destination builds."""
        return secret_values(self.config)

    def rate_limit(self) -> tuple[int, float] | None:
        """(requests, seconds) the client holds itself to; None: unlimited."""
        return configured_limit(self.config, self.published_rate_limit)

    def http_options(self) -> HttpOptions:
        """Headers (auth), and optionally how to read an error body and renew a token. Default: none."""
        return HttpOptions()

    def fatal(self, message: str, status: int | None = None) -> FatalDestinationError:
        """The error that stops this sync now (raise it), without the config's secrets."""
        return FatalDestinationError(self.sync.name, status, message, secrets=self.secrets)

    def rejected(self, key: str | None, reason: str) -> RowRejected:
        """The error that refuses one row (raise it, catch it into `RowResult.of`), without secrets."""
        return RowRejected(key, reason, secrets=self.secrets)

    @contextlib.asynccontextmanager
    async def connect(self, *, transport: httpx.AsyncBaseTransport | None = None,
                      clock: Clock = SYSTEM) -> AsyncIterator[Http]:
        """An `Http` for this destination, set up for its first batch and torn down on the way out,
        whether the batches inside finished, failed or were cancelled (a teardown error then gives way
        to the error that stopped the run). `transport` replaces the network (unit tests)."""
        from revetl.sync.http import Http, RateLimiter, RetryPolicy

        limit = self.rate_limit()
        http = Http(
            self.config.base_url, self.http_options(),
            limiter=RateLimiter(*limit, clock=clock) if limit else None,
            policy=RetryPolicy(attempts=self.config.attempts, clock=clock),
            timeout=self.config.timeout,
            connections=self.concurrency,  # each request in flight has a connection of its own
            transport=transport,
            label=f"{self.type} (sync {self.sync.name})",
            sync=self.sync.name,
            secrets=self.secrets,
        )
        async with http:
            try:
                await self.setup(http)
                yield http
            except BaseException:
                with contextlib.suppress(Exception):
                    await self.teardown(http)
                raise
            await self.teardown(http)

    async def setup(self, http: Http) -> None:
        """Once, before the first batch (fetch a token, find a list). Default: nothing."""

    @abstractmethod
    async def send(self, http: Http, rows: Sequence[Row]) -> list[RowResult]:
        """Apply `rows` (at most `batch_size`); return one result per row, in order."""

    async def teardown(self, http: Http) -> None:
        """Once, after the last batch, also when the run failed or was cancelled. Default: nothing."""

    def check(self) -> list[str]:
        """Warnings about the sync's mapping for `revetl audiences check`. Default: none."""
        return []
