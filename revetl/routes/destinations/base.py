"""The interface of a stream destination: events, as they arrive, to one vendor API.

A stream destination declares; the router (`routes/deliver.py`) does the rest, through the same HTTP
client, retry policy and rate limiter as syncs (`revetl/sync/http.py`):

    class Amplitude(StreamDestination[AmplitudeConfig])   generic over its strict config model (the route
                    file's `destination:` block; secrets as SecretStr through ${VAR})
    max_batch_events, max_batch_bytes, default_concurrency, published_rate_limit
                    the most events (and bytes of prepared events) one request carries, requests in
                    flight, the vendor's limit
    prepare(message)  a Segment-spec message (routes/mapping.py) -> the vendor's object, or None when the
                    vendor has no such call (counted as `unsupported`, never sent)
    send(http, items) one batch of prepared objects -> one verdict per item: None (acknowledged) or the
                    reason the vendor refused it for good (it goes to the route's dead letters)

Retryable trouble (429, 5xx, timeouts) is `Http`'s; a destination raises `self.fatal(...)` for an answer
that no resend of this batch can fix until someone acts (a wrong key): the route holds its cursor and
tries again later, dead-lettering only past its backlog's bounds. Every event carries its `messageId`
as the vendor's idempotency key (`insert_id`, `$insert_id`, `Idempotency-Key`), so a resend after a
crash is harmless.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from revetl.destinations.base import DestinationConfig, HttpOptions, configured_limit, generic_config, secret_values
from revetl.errors import FatalDestinationError
from revetl.runtime import SYSTEM, Clock

if TYPE_CHECKING:
    import httpx

    from revetl.sync.http import Http

__all__ = ["StreamConfigT", "StreamDestination", "Verdict"]

StreamConfigT = TypeVar("StreamConfigT", bound=DestinationConfig)
Verdict = str | None  # None: acknowledged; text: refused for good, with the vendor's reason


class StreamDestination(ABC, Generic[StreamConfigT]):
    """A configured stream destination for one route."""

    type: ClassVar[str]
    config_model: ClassVar[type[DestinationConfig]] = DestinationConfig
    max_batch_events: ClassVar[int] = 100
    max_batch_bytes: ClassVar[int] = 1_000_000
    default_concurrency: ClassVar[int] = 4
    published_rate_limit: ClassVar[tuple[int, float] | None] = None

    def __init__(self, route: str, config: StreamConfigT) -> None:
        self.route = route
        self.config = config
        self.concurrency = config.concurrency or self.default_concurrency  # requests in flight

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.config_model = generic_config(cls, StreamDestination) or cls.config_model

    @property
    def secrets(self) -> list[str]:
        """Scrubbed from every error this destination builds."""
        return secret_values(self.config)

    @property
    def batch_events(self) -> int:
        """Events a request: the config's `batch_size` where it has one, else the most the vendor takes."""
        return int(getattr(self.config, "batch_size", self.max_batch_events))

    def http_options(self) -> HttpOptions:
        return HttpOptions(headers={"Content-Type": "application/json"})

    def fatal(self, message: str, status: int | None = None) -> FatalDestinationError:
        """The error that holds the route (raise it): retried later, never with a secret in it."""
        return FatalDestinationError(f"route {self.route}", status, message, secrets=self.secrets)

    def client(self, transport: httpx.AsyncBaseTransport | None = None, clock: Clock = SYSTEM) -> Http:
        """The shared HTTP client (sync/http.py) for this destination: its limiter, retry policy, secrets."""
        from revetl.sync.http import Http, RateLimiter, RetryPolicy

        requests_per = configured_limit(self.config, self.published_rate_limit)
        return Http(self.config.base_url, self.http_options(),
                    limiter=RateLimiter(*requests_per, clock=clock) if requests_per else None,
                    policy=RetryPolicy(attempts=self.config.attempts, clock=clock), timeout=self.config.timeout,
                    connections=self.concurrency, transport=transport, label=f"{self.type} (route {self.route})",
                    sync=f"route {self.route}", secrets=self.secrets)

    @abstractmethod
    def prepare(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """The vendor's object for one Segment-spec message; None when the vendor has no such call."""

    @abstractmethod
    async def send(self, http: Http, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        """Deliver one batch; one verdict per item, in order."""

    async def in_halves(self, http: Http, items: Sequence[dict[str, Any]]) -> list[Verdict]:
        """`send` each half of a batch the vendor found too large (a 413): the verdicts of both, in order."""
        half = len(items) // 2
        return [*await self.send(http, items[:half]), *await self.send(http, items[half:])]
