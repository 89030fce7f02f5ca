"""The one HTTP client every destination talks through: timeouts, retries, rate limiting (STYLE 4).

    Http.request()  acquire the rate limiter, send, and on 429 / 5xx / timeouts / dropped
                    connections back off exponentially with jitter, honouring `Retry-After` and
                    `X-RateLimit-*`; 401 and 403 raise FatalDestinationError at once (after one
                    `reauthenticate` hook, for token-based APIs); any other answer is the
                    destination's to read.

Why aiohttp under httpx: httpx's own connection pool (httpcore) costs about 1.75 ms of CPU per
request and stops scaling past a handful of requests in flight (encode/httpx#3215): two clients of
4 connections peaked at 570 requests/s against the Braze emulator here. The same httpx requests sent
through an aiohttp transport cost 0.8 ms and reached 1,230 requests/s, aiohttp alone 0.34 ms and
1,850 requests/s (measured 2026-11-23, 75-object bodies, 8 in flight). So `Http` sends with aiohttp
and hands destinations `httpx.Response`s; given an httpx transport (unit tests' MockTransport) it
sends through httpx instead.

Secrets live only in the default headers handed to the clients; no message built here includes
a header, and URLs never carry credentials.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import ssl
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import aiohttp
import certifi
import httpx
import yarl

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


Body = bytes | None
Params = Mapping[str, str] | None
Form = Mapping[str, str] | None  # sent form-encoded (OAuth token requests)


class _Aiohttp:
    """Requests over one aiohttp session, answered as `httpx.Response`s with the whole body read.

    aiohttp's errors become the httpx errors they mean, so retries read both senders alike: refused
    -> ConnectError, closed without an answer -> RemoteProtocolError, other socket trouble ->
    ReadError, no answer in time -> ReadTimeout. Proxies come from the environment (HTTPS_PROXY,
    NO_PROXY), looked up once per host; ~/.netrc is never read (aiohttp's `trust_env` reads it on
    every request: a quarter of the CPU a request cost).
    """

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout: float, connections: int) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers)
        self.timeout = timeout
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}
        self._targets: dict[tuple[str, str], tuple[yarl.URL, str | None, httpx.Request]] = {}

    def _open(self) -> aiohttp.ClientSession:  # inside the running loop, on first use
        context = ssl.create_default_context(cafile=certifi.where())
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections, ssl=context),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.timeout, sock_read=self.timeout),
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
        )
        return self._session

    def _target(self, method: str, url: str, params: Params) -> tuple[yarl.URL, str | None, httpx.Request]:
        """The parsed URL, its proxy and the `httpx.Request` answers carry (read-only, so shared): parsed
        once per method and URL, since a sync sends thousands of requests to the same few."""
        known = self._targets.get((method, url)) if params is None else None
        if known is None:
            full = self.base_url + url if url.startswith("/") else url
            target = yarl.URL(full)
            known = target, self._proxy(target), httpx.Request(method, full, params=params)
            if params is None and len(self._targets) < 256:  # per-contact URLs are many: keep a few
                self._targets[(method, url)] = known
        return known

    def _proxy(self, url: yarl.URL) -> str | None:
        origin = f"{url.scheme}://{url.host}"
        if origin not in self._proxies:
            bypass = not url.host or urllib.request.proxy_bypass_environment(url.host)
            self._proxies[origin] = None if bypass else urllib.request.getproxies_environment().get(url.scheme)
        return self._proxies[origin]

    async def send(self, method: str, url: str, content: Body, params: Params, data: Form,
                   headers: Mapping[str, str] | None) -> httpx.Response:
        session = self._session or self._open()
        target, proxy, request = self._target(method, url, params)
        try:
            async with session.request(method, target, params=params, data=content if data is None else dict(data),
                                       headers={**self.headers, **headers} if headers else self.headers,
                                       allow_redirects=False, proxy=proxy) as answer:
                body = await answer.read()
        except (asyncio.TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise httpx.ReadTimeout(f"no answer within {self.timeout} s", request=request) from exc
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc
        except aiohttp.ServerDisconnectedError as exc:
            raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request) from exc
        except (aiohttp.ClientOSError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
        return httpx.Response(answer.status, headers=answer.raw_headers, content=body, request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class _Httpx:
    """The same through an `httpx.AsyncClient` on a given transport (unit tests' MockTransport)."""

    def __init__(self, base_url: str, headers: Mapping[str, str], timeout: float,
                 transport: httpx.AsyncBaseTransport) -> None:
        self.headers = dict(headers)
        self._client = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(timeout, pool=None),
                                         transport=transport)

    async def send(self, method: str, url: str, content: Body, params: Params, data: Form,
                   headers: Mapping[str, str] | None) -> httpx.Response:
        return await self._client.request(method, url, content=content, params=params, data=data,
                                          headers={**self.headers, **(headers or {})})

    async def aclose(self) -> None:
        await self._client.aclose()


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
        connections: int = 8,
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
        self._sender = (
            _Httpx(base_url, headers or {}, timeout, transport) if transport is not None
            else _Aiohttp(base_url, headers or {}, timeout, connections)
        )
        self.requests = 0  # sent, retries included: benchmarks report it
        self.retries = 0

    def set_header(self, name: str, value: str) -> None:
        """Change a default header on every client (a refreshed token)."""
        self._sender.headers[name] = value

    async def __aenter__(self) -> Http:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._sender.aclose()

    async def request(self, method: str, url: str, *, content: Body = None, params: Params = None, data: Form = None,
                      headers: Mapping[str, str] | None = None) -> httpx.Response:
        """Send with retries; returns any response that is neither retryable nor fatal.

        `url` is a path under the base URL or an absolute URL; `content` a ready body (JSON bytes),
        `data` a form; `headers` add to the defaults for this request."""
        reauthenticated = False
        last = ""
        for attempt in range(self.policy.attempts):
            await self.limiter.acquire()
            self.requests += 1
            try:
                response = await self._sender.send(method, url, content, params, data, headers)
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
    """A short, secret-free reading of an error body: its `message`/`error` field, an HTML page's
    title (a proxy's error page), else its start."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        if text.startswith("<"):
            title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
            text = title.group(1) if title else re.sub(r"<[^>]+>", " ", text)
        return " ".join(text.split())[:200] or response.reason_phrase
    if isinstance(body, dict):
        for name in ("message", "error_description", "error", "errors"):
            if body.get(name):
                return str(body[name])[:200]
    return str(body)[:200]
