"""What a destination tells the HTTP client about its API: a module of its own, so that declaring a
destination loads no HTTP client (a sync with nothing to send never makes one)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpOptions"]


@dataclass(frozen=True)
class HttpOptions:
    """What a destination tells `Http` about its API (`Destination.http_options()`)."""

    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every request (auth, version)
    describe: Callable[[httpx.Response], str] | None = None  # an error body as a short, secret-free sentence
    reauthenticate: Callable[[], Awaitable[bool]] | None = None  # on a 401: renew the credential; True: resend
    # Headers computed for each try from (method, url, body, now: the clock's epoch seconds): a signature over a
    # fresh timestamp, so that a request retried minutes later is not refused as a replay (the webhook's HMAC).
    sign: Callable[[str, str, bytes | None, float], Mapping[str, str]] | None = None
