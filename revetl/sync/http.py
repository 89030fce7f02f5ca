"""The one retry policy, and the one HTTP client every destination talks through (STYLE 4).

    RetryPolicy     exponential backoff with full jitter on the injected `Clock` (time, sleep and chance
                    from one place, so a test drives it without sleeping); predicates decide what is
                    retryable (`retry_if_status`, `retry_if_exception`, `retry_any`, as dlt's
                    sources/helpers/requests/retry.py). `run` retries a call that raises
                    RetryableDestinationError; `retry_items` resends just the items of a batch whose
                    answers say "try again" (Salesforce's UNABLE_TO_LOCK_ROW) on the same policy.
    RateLimiter     a token bucket under the vendor's fixed windows, paused by 429s and spent windows.
    Http.request()  acquire the limiter, send (sync/transport.py), and judge the answer: 429 / 408 /
                    5xx / timeouts / dropped connections are retried through the policy, honouring
                    `Retry-After` and `X-RateLimit-*`; 401 and 403 raise FatalDestinationError at once
                    (after one `reauthenticate` hook, for token-based APIs); any other answer is the
                    destination's to read.

Errors are built here scrubbed of the destination's secrets; no message includes a header.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import httpx

from revetl.errors import FatalDestinationError, RetriesExhausted, RetryableDestinationError
from revetl.runtime import SYSTEM, Clock
from revetl.sync.options import HttpOptions

if TYPE_CHECKING:  # the transport (aiohttp, TLS) loads when a client is made: a sync with nothing to send needs none
    from revetl.sync.transport import Body, Form, Params, Sender

__all__ = [
    "DEFAULT_RETRY", "Http", "HttpOptions", "RateLimiter", "RetryPolicy", "retry_after_seconds", "retry_any",
    "retry_if_exception", "retry_if_status",
]

T = TypeVar("T")
A = TypeVar("A")
Outcome = httpx.Response | BaseException  # what one try ended with
Predicate = Callable[[Outcome], bool]

# Errors after which the request may or may not have been applied: resending is safe only because
# every destination operation is idempotent (upserts by key, set-membership edits).
TRANSIENT_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)

# The longest a server's Retry-After / X-RateLimit-Reset may hold one request or the limiter: longer
# asks are vendor windows (a daily quota) that the destination handles, not the retry loop.
MAX_WAIT_SECONDS = 60.0


def retry_if_status(*statuses: int) -> Predicate:
    """Retry an answer with one of `statuses`."""
    wanted = frozenset(statuses)
    return lambda outcome: isinstance(outcome, httpx.Response) and outcome.status_code in wanted


def retry_if_exception(*types: type[BaseException]) -> Predicate:
    """Retry a try that raised one of `types`."""
    return lambda outcome: isinstance(outcome, types)


def retry_any(*predicates: Predicate) -> Predicate:
    """Retry when any of `predicates` says so."""
    return lambda outcome: any(predicate(outcome) for predicate in predicates)


DEFAULT_RETRY = retry_any(retry_if_status(408, 429, 500, 502, 503, 504), retry_if_exception(*TRANSIENT_ERRORS))


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter: after try n (from 0) wait uniform(0, min(cap, base * 2**n)),
    or longer when the server asked; at most `attempts` tries. `retry_if` judges each try's outcome,
    `fatal_statuses` stop at once. Time, sleep and chance come from `clock`."""

    attempts: int = 8
    base: float = 0.2
    cap: float = 20.0
    retry_if: Predicate = DEFAULT_RETRY
    fatal_statuses: frozenset[int] = frozenset({401, 403})
    clock: Clock = SYSTEM

    def delay(self, attempt: int) -> float:
        return self.clock.uniform(0, min(self.cap, self.base * 2**attempt))

    async def pause(self, attempt: int, asked: float | None = None) -> None:
        """Sleep after try `attempt` failed: the backoff, or what the server asked if longer."""
        await self.clock.sleep(max(self.delay(attempt), asked or 0.0))

    async def run(self, attempt: Callable[[int], Awaitable[T]], label: str) -> T:
        """`await attempt(n)` for n = 0, 1, ... until it returns; a RetryableDestinationError is paused
        on and tried again, and the last one becomes RetriesExhausted (naming `label`)."""
        number = 0
        while True:
            try:
                return await attempt(number)
            except RetryableDestinationError as exc:
                number += 1
                if number >= self.attempts:
                    raise RetriesExhausted(f"{label} still failing after {self.attempts} attempts; last: {exc}") from exc
                await self.pause(number - 1, exc.wait)

    async def retry_items(self, items: Sequence[T], send: Callable[[list[T]], Awaitable[Sequence[A]]],
                          retry_if: Callable[[A], bool]) -> list[A]:
        """Send `items`, then resend the ones whose answer `retry_if` accepts, pausing between tries, until
        none is left or the attempts run out (the last answers stand). One answer per item, in order."""
        answers = list(await send(list(items)))
        pending = [index for index, answer in enumerate(answers) if retry_if(answer)]
        for number in range(self.attempts - 1):
            if not pending:
                break
            await self.pause(number)
            for index, answer in zip(pending, await send([items[i] for i in pending])):
                answers[index] = answer
            pending = [index for index in pending if retry_if(answers[index])]
        return answers


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

    def __init__(self, limit: int | None, period: float = 1.0, clock: Clock = SYSTEM) -> None:
        self.limit = limit
        self.period = period
        self._clock = clock
        self.burst = max(1, (limit or 0) // 20)
        self.rate = max(limit - self.burst, 1) / period if limit else None
        self._tokens = float(self.burst)
        self._stamp = clock.monotonic()
        self._paused_until = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Wait for a token (and for any pause to end)."""
        async with self._lock:  # one waiter at a time keeps the order fair
            while True:
                now = self._clock.monotonic()
                if now < self._paused_until:
                    await self._clock.sleep(self._paused_until - now)
                    continue
                if self.rate is None:
                    return
                self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1 - 1e-9:  # float slack: a sleep of 1e-17 s would not move the clock
                    self._tokens -= 1
                    return
                await self._clock.sleep(max((1 - self._tokens) / self.rate, 1e-6))

    def pause(self, seconds: float) -> None:
        """Hold every request for `seconds` from now (a 429, or a spent window)."""
        self._paused_until = max(self._paused_until, self._clock.monotonic() + seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Follow the vendor's `X-RateLimit-Remaining`/`-Reset`: wait for the reset once none remain."""
        remaining = headers.get("x-ratelimit-remaining")
        if remaining is not None and remaining.strip().lstrip("-").isdigit() and int(remaining) <= 0:
            reset = {"x-ratelimit-reset": headers.get("x-ratelimit-reset", "")}
            wait = retry_after_seconds(reset, self._clock.time())
            if wait:
                self.pause(min(wait, MAX_WAIT_SECONDS))


class Http:
    """Requests to one destination, with retries and rate limiting. Use `async with`."""

    def __init__(
        self,
        base_url: str,
        options: HttpOptions = HttpOptions(),
        *,
        limiter: RateLimiter | None = None,
        policy: RetryPolicy = RetryPolicy(),
        timeout: float = 30.0,
        connections: int = 8,
        transport: httpx.AsyncBaseTransport | None = None,
        label: str = "destination",
        sync: str | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.label = label
        self.sync = sync
        self.secrets = tuple(secrets)
        self.limiter = limiter or RateLimiter(None, clock=policy.clock)
        self.policy = policy
        self._describe = options.describe or _describe
        self._reauthenticate = options.reauthenticate
        self._sign = options.sign
        from revetl.sync.transport import AiohttpSender, HttpxSender

        self._sender: Sender = (
            HttpxSender(base_url, options.headers, timeout, transport) if transport is not None
            else AiohttpSender(base_url, options.headers, timeout, connections)
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

        async def attempt(number: int) -> httpx.Response:
            nonlocal reauthenticated
            if number:
                self.retries += 1
            response = await self._send(method, url, content, params, data, headers)
            if response.status_code == 401 and self._reauthenticate and not reauthenticated:
                reauthenticated = True
                if await self._reauthenticate():
                    response = await self._send(method, url, content, params, data, headers)
            return self._judge(method, response)

        return await self.policy.run(attempt, self.label)

    async def _send(self, method: str, url: str, content: Body, params: Params, data: Form,
                    headers: Mapping[str, str] | None) -> httpx.Response:
        """One try, within the rate limit; a transient failure becomes RetryableDestinationError."""
        await self.limiter.acquire()
        self.requests += 1
        if self._sign is not None:  # after the limiter's wait: the signature's timestamp is the send's
            headers = {**(headers or {}), **self._sign(method, url, content, self.policy.clock.time())}
        try:
            response = await self._sender.send(method, url, content, params, data, headers)
        except Exception as exc:
            if not self.policy.retry_if(exc):
                raise
            raise RetryableDestinationError(None, f"{type(exc).__name__} on {method} {httpx.URL(url).path}",
                                            secrets=self.secrets) from exc
        self.limiter.observe(response.headers)
        return response

    def _judge(self, method: str, response: httpx.Response) -> httpx.Response:
        """The response, or the error it means: fatal, or retryable (with the wait the server asked)."""
        status, path = response.status_code, response.url.path
        if status in self.policy.fatal_statuses:
            raise FatalDestinationError(self.sync, status, f"{self.label} answered {status} to {method} {path}: "
                                        f"{self._describe(response)}", secrets=self.secrets)
        if not self.policy.retry_if(response):
            return response
        asked = None
        # A 429 waits for the window the server names; a 5xx only for an explicit Retry-After (its
        # X-RateLimit-Reset tells when the window ends, not when the server will be well again).
        if status == 429 or "retry-after" in response.headers:
            asked = retry_after_seconds(response.headers, self.policy.clock.time())
            if asked is not None:
                asked = min(asked, MAX_WAIT_SECONDS)
                if status == 429:
                    self.limiter.pause(asked)  # the whole app is limited, not just this request
        raise RetryableDestinationError(response, f"{status} on {method} {path}: {self._describe(response)}",
                                        wait=asked, secrets=self.secrets)


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
