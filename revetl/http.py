"""The one HTTP client every destination talks through: timeouts, retries, rate limiting (STYLE 4).

    Http.request()  acquire the rate limiter, send, and on 429 / 5xx / timeouts / dropped
                    connections back off exponentially with jitter, honouring `Retry-After` and
                    `X-RateLimit-*`; 401 and 403 raise FatalDestinationError at once (after one
                    `reauthenticate` hook, for token-based APIs); any other answer is the
                    destination's to read.

Why several httpx clients: one `httpx.AsyncClient` stops scaling past a handful of requests in
flight (encode/httpx#3215, measured near 500 requests/s here). `Http` spreads requests over a few
clients, each with a small connection pool (`bench/sync_bench.py` picks the numbers).

Secrets live only in the default headers handed to the clients; no message built here includes
a header, and URLs never carry credentials.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from revetl.errors import FatalDestinationError, RetriesExhausted

__all__ = ["Http", "RateLimiter", "RetryPolicy", "retry_after_seconds"]

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

# Errors after which the request may or may not have been applied: resending is safe only because
# every destination operation is idempotent (upserts by key, set-membership edits).
TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

# The longest a server's Retry-After / X-RateLimit-Reset may hold one request or the limiter: longer
# asks are vendor windows (a daily quota) that the destination handles, not the retry loop.
MAX_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits uniform(0, min(cap, base * 2**n))."""

    attempts: int = 8
    base: float = 0.2
    cap: float = 20.0
    retry_statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
    fatal_statuses: frozenset[int] = frozenset({401, 403})

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.cap, self.base * 2**attempt))


def retry_after_seconds(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds the server asked us to wait: `Retry-After` (seconds or HTTP date), else a spent
    `X-RateLimit-Reset` (epoch seconds, or seconds from now when small)."""
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - now)
    reset = headers.get("x-ratelimit-reset")
    if reset:
        try:
            seconds = float(reset)
        except ValueError:
            return None
        return max(0.0, seconds - now) if seconds > 1_000_000_000 else seconds
    return None


class RateLimiter:
    """A token bucket sized so that no fixed window of `period` seconds sees more than `limit` requests.

    Vendors count requests in fixed windows (Braze 3 s, Intercom 10 s). A bucket holding `burst`
    tokens refilled at (limit - burst) / period never exceeds the window however the windows
    align, and keeps ~95% of the limit busy. `pause_until` stops everyone after a 429 or when the
    server says the window is spent.
    """

    def __init__(self, limit: int | None, period: float = 1.0, clock: Clock = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.limit = limit
        self.period = period
        self._clock = clock
        self._sleep = sleep
        self.burst = max(1, (limit or 0) // 20)
        self.rate = max(limit - self.burst, 1) / period if limit else None
        self._tokens = float(self.burst)
        self._stamp = clock()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for a token (and for any pause to end)."""
        async with self._lock:  # one waiter at a time keeps the order fair
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await self._sleep(self._paused_until - now)
                    continue
                if self.rate is None:
                    return
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1 - 1e-9:  # float slack: a sleep of 1e-17 s would not move the clock
                    self._tokens -= 1
                    return
                await self._sleep(max((1 - self._tokens) / self.rate, 1e-6))

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` from now (a 429, or a spent window)."""
        self._paused_until = max(self._paused_until, self._clock() + seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Follow the vendor's `X-RateLimit-Remaining`/`-Reset`: wait for the reset once none remain."""
        remaining = headers.get("x-ratelimit-remaining")
        if remaining is not None and remaining.strip().lstrip("-").isdigit() and int(remaining) <= 0:
            wait = retry_after_seconds({"x-ratelimit-reset": headers.get("x-ratelimit-reset", "")}, time.time())
            if wait:
                self.pause(min(wait, MAX_WAIT_SECONDS))


class Http:
    """Requests to one destination, with retries and rate limiting. Use `async with`."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        limiter: RateLimiter | None = None,
        policy: RetryPolicy = RetryPolicy(),
        timeout: float = 30.0,
        clients: int = 2,
        connections_per_client: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
        describe: Callable[[httpx.Response], str] | None = None,
        reauthenticate: Callable[[], Awaitable[bool]] | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        label: str = "destination",
    ) -> None:
        self.label = label
        self.limiter = limiter or RateLimiter(None)
        self.policy = policy
        self._describe = describe or _describe
        self._reauthenticate = reauthenticate
        self._sleep = sleep
        self._rng = rng or random.Random()
        limits = httpx.Limits(max_connections=connections_per_client, max_keepalive_connections=connections_per_client)
        self._clients = [
            httpx.AsyncClient(
                base_url=base_url,
                headers=dict(headers or {}),
                timeout=httpx.Timeout(timeout, pool=None),
                limits=limits,
                transport=transport,
            )
            for _ in range(1 if transport is not None else clients)
        ]
        self._next = itertools.cycle(self._clients)
        self.requests = 0  # sent, retries included: benchmarks report it
        self.retries = 0

    def set_header(self, name: str, value: str) -> None:
        """Change a default header on every client (a refreshed token)."""
        for client in self._clients:
            client.headers[name] = value

    async def __aenter__(self) -> Http:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await asyncio.gather(*(client.aclose() for client in self._clients))

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send with retries; returns any response that is neither retryable nor fatal."""
        reauthenticated = False
        last = ""
        for attempt in range(self.policy.attempts):
            await self.limiter.acquire()
            self.requests += 1
            try:
                response = await next(self._next).request(method, url, **kwargs)
            except TRANSIENT_ERRORS as exc:
                last = f"{type(exc).__name__} on {method} {httpx.URL(url).path}"
                await self._backoff(attempt, None)
                continue
            self.limiter.observe(response.headers)
            status = response.status_code
            if status in self.policy.fatal_statuses:
                if status == 401 and self._reauthenticate and not reauthenticated:
                    reauthenticated = True
                    if await self._reauthenticate():
                        continue
                raise FatalDestinationError(f"{self.label} answered {status} to {method} {response.url.path}: "
                                            f"{self._describe(response)}")
            if status in self.policy.retry_statuses:
                last = f"{status} on {method} {response.url.path}: {self._describe(response)}"
                await self._backoff(attempt, response)
                continue
            return response
        raise RetriesExhausted(f"{self.label} still failing after {self.policy.attempts} attempts; last: {last}")

    async def _backoff(self, attempt: int, response: httpx.Response | None) -> None:
        self.retries += 1
        delay = self.policy.delay(attempt, self._rng)
        # A 429 waits for the window the server names; a 5xx only for an explicit Retry-After (its
        # X-RateLimit-Reset tells when the window ends, not when the server will be well again).
        if response is not None and (response.status_code == 429 or "retry-after" in response.headers):
            asked = retry_after_seconds(response.headers, time.time())
            if asked is not None:
                asked = min(asked, MAX_WAIT_SECONDS)
                if response.status_code == 429:
                    self.limiter.pause(asked)  # the whole app is limited, not just this request
                delay = max(delay, asked)
        await self._sleep(delay)


def _describe(response: httpx.Response) -> str:
    """A short, secret-free reading of an error body: its `message`/`error` field, else its start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if isinstance(body, dict):
        for name in ("message", "error_description", "error", "errors"):
            if body.get(name):
                return str(body[name])[:200]
    return str(body)[:200]
