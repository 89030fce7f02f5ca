"""The shared HTTP client: one retry policy, rate limiting, fatal errors without secrets."""

from __future__ import annotations

import asyncio
import random

import httpx
import pytest

from revetl.errors import FatalDestinationError, RetriesExhausted
from revetl.sync.http import Http, RateLimiter, RetryPolicy, retry_after_seconds

SECRET = "sk-live-do-not-print"


class FakeTime:
    """A clock and a sleep that only advance when slept on: rate tests run instantly."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def client(handler, fake: FakeTime | None = None, **kwargs) -> Http:
    fake = fake or FakeTime()
    return Http(
        "http://dest.test",
        headers={"Authorization": f"Bearer {SECRET}"},
        transport=httpx.MockTransport(handler),
        sleep=fake.sleep,
        rng=random.Random(1),
        label="braze (sync s)",
        **kwargs,
    )


def scripted(*answers):
    """A handler answering each request with the next item (a Response, or an exception to raise)."""
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        answer = answers[min(len(calls), len(answers) - 1)]
        calls.append(request)
        if isinstance(answer, Exception):
            raise answer
        return answer

    handler.calls = calls
    return handler


def test_retry_after_reads_seconds_dates_and_resets():
    assert retry_after_seconds({"retry-after": "3"}, 0) == 3
    assert retry_after_seconds({"retry-after": "Thu, 01 Jan 1970 00:00:10 GMT"}, 4) == 6
    assert retry_after_seconds({"x-ratelimit-reset": "1700000010"}, 1700000000) == 10
    assert retry_after_seconds({"x-ratelimit-reset": "7"}, 1700000000) == 7  # seconds from now
    assert retry_after_seconds({}, 0) is None


def test_5xx_and_dropped_connections_are_retried_then_succeed():
    handler = scripted(
        httpx.Response(503, json={"message": "busy"}),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.Response(201, json={"message": "success"}),
    )
    fake = FakeTime()

    async def go():
        async with client(handler, fake) as http:
            response = await http.request("POST", "/users/track", content=b"{}")
            return response, http.retries

    response, retries = asyncio.run(go())
    assert response.status_code == 201
    assert retries == 3 and len(handler.calls) == 4
    assert len(fake.slept) == 3  # backed off before each retry


def test_429_waits_as_long_as_retry_after_asks():
    handler = scripted(httpx.Response(429, headers={"Retry-After": "5"}), httpx.Response(201, json={}))
    fake = FakeTime()

    async def go():
        async with client(handler, fake, limiter=RateLimiter(100, 1.0, clock=fake.clock, sleep=fake.sleep)) as http:
            await http.request("POST", "/users/track")

    asyncio.run(go())
    assert sum(fake.slept) >= 5


def test_5xx_backs_off_briefly_even_when_the_window_resets_later():
    window = {"X-RateLimit-Remaining": "2900", "X-RateLimit-Reset": "3000000000"}  # far in the future
    handler = scripted(httpx.Response(502, headers=window), httpx.Response(201, json={}))
    fake = FakeTime()

    async def go():
        async with client(handler, fake, limiter=RateLimiter(100, 1.0, clock=fake.clock, sleep=fake.sleep)) as http:
            await http.request("POST", "/users/track")

    asyncio.run(go())
    assert len(handler.calls) == 2 and sum(fake.slept) < RetryPolicy().cap


def test_401_is_fatal_at_once_and_names_no_secret():
    handler = scripted(httpx.Response(401, json={"message": "Invalid API key: " + SECRET}))

    async def go():
        async with client(handler) as http:
            await http.request("POST", "/users/track")

    with pytest.raises(FatalDestinationError) as caught:
        asyncio.run(go())
    assert len(handler.calls) == 1
    assert "401" in str(caught.value) and "/users/track" in str(caught.value)
    # the engine scrubs known secrets from messages it stores; the client adds no header itself
    assert "Bearer" not in str(caught.value)


def test_401_reauthenticates_once_then_retries():
    handler = scripted(httpx.Response(401, json={"error": "INVALID_SESSION_ID"}), httpx.Response(200, json={}))
    refreshed = []

    async def reauthenticate() -> bool:
        refreshed.append(True)
        return True

    async def go():
        async with client(handler, reauthenticate=reauthenticate) as http:
            return await http.request("GET", "/x")

    assert asyncio.run(go()).status_code == 200
    assert refreshed == [True]


def test_other_4xx_is_returned_to_the_destination_unretried():
    handler = scripted(httpx.Response(400, json={"message": "bad"}))

    async def go():
        async with client(handler) as http:
            return await http.request("POST", "/x")

    assert asyncio.run(go()).status_code == 400
    assert len(handler.calls) == 1


def test_retries_run_out():
    handler = scripted(httpx.Response(500, json={"message": "boom"}))

    async def go():
        async with client(handler, policy=RetryPolicy(attempts=3)) as http:
            await http.request("POST", "/x")

    with pytest.raises(RetriesExhausted, match="after 3 attempts; last: 500"):
        asyncio.run(go())


def test_rate_limiter_never_exceeds_a_fixed_window():
    fake = FakeTime()
    limiter = RateLimiter(300, 3.0, clock=fake.clock, sleep=fake.sleep)
    stamps = []

    async def go():
        for _ in range(2000):
            await limiter.acquire()
            stamps.append(fake.now)

    asyncio.run(go())
    for start in range(int(stamps[0]), int(stamps[-1])):  # every window alignment, 1 s apart
        assert sum(1 for s in stamps if start <= s < start + 3) <= 300
    elapsed = stamps[-1] - stamps[0]
    assert 2000 / elapsed >= 0.9 * 100  # and keeps the limit busy (>= 90% of 100/s)


def test_rate_limiter_pauses_when_the_server_says_the_window_is_spent():
    fake = FakeTime()
    limiter = RateLimiter(None, clock=fake.clock, sleep=fake.sleep)
    limiter.pause(4)

    asyncio.run(limiter.acquire())
    assert fake.slept == [4]
