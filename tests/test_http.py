"""The shared HTTP client and the one retry policy: retries, rate limiting, fatal errors without secrets.

Every test runs on a FakeClock: backoff and rate limits are asserted from what was slept, never waited for.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from revetl.errors import FatalDestinationError, RetriesExhausted, RetryableDestinationError
from revetl.sync.http import (
    Http,
    HttpOptions,
    RateLimiter,
    RetryPolicy,
    retry_after_seconds,
    retry_any,
    retry_if_exception,
    retry_if_status,
)
from revetl.testing import FakeClock

SECRET = "sk-live-do-not-print"


def client(handler, fake: FakeClock | None = None, *, attempts: int = 8, reauthenticate=None, **kwargs) -> Http:
    fake = fake or FakeClock()
    return Http(
        "http://dest.test",
        HttpOptions(headers={"Authorization": f"Bearer {SECRET}"}, reauthenticate=reauthenticate),
        transport=httpx.MockTransport(handler),
        policy=RetryPolicy(attempts=attempts, clock=fake.clock),
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
    fake = FakeClock()

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
    fake = FakeClock()

    async def go():
        async with client(handler, fake, limiter=RateLimiter(100, 1.0, clock=fake.clock)) as http:
            await http.request("POST", "/users/track")

    asyncio.run(go())
    assert sum(fake.slept) >= 5


def test_5xx_backs_off_briefly_even_when_the_window_resets_later():
    window = {"X-RateLimit-Remaining": "2900", "X-RateLimit-Reset": "3000000000"}  # far in the future
    handler = scripted(httpx.Response(502, headers=window), httpx.Response(201, json={}))
    fake = FakeClock()

    async def go():
        async with client(handler, fake, limiter=RateLimiter(100, 1.0, clock=fake.clock)) as http:
            await http.request("POST", "/users/track")

    asyncio.run(go())
    assert len(handler.calls) == 2 and sum(fake.slept) < RetryPolicy().cap


def test_401_is_fatal_at_once_and_names_no_secret():
    # The body echoes the key back (some APIs do): the error is scrubbed where it is built.
    handler = scripted(httpx.Response(401, json={"message": "Invalid API key: " + SECRET}))

    async def go():
        async with client(handler, sync="s", secrets=[SECRET]) as http:
            await http.request("POST", "/users/track")

    with pytest.raises(FatalDestinationError) as caught:
        asyncio.run(go())
    assert len(handler.calls) == 1
    assert str(caught.value) == "braze (sync s) answered 401 to POST /users/track: Invalid API key: ***"
    assert (caught.value.sync, caught.value.status) == ("s", 401)


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


def test_retries_run_out_with_the_last_answer_as_cause():
    handler = scripted(httpx.Response(500, json={"message": "boom"}))
    fake = FakeClock()

    async def go():
        async with client(handler, fake, attempts=3) as http:
            await http.request("POST", "/x")

    with pytest.raises(RetriesExhausted, match="after 3 attempts; last: 500 on POST /x: boom") as caught:
        asyncio.run(go())
    last = caught.value.__cause__
    assert isinstance(last, RetryableDestinationError) and last.response.status_code == 500
    assert len(handler.calls) == 3 and len(fake.slept) == 2  # no pause after the last try


class Failing:
    """An attempt that raises RetryableDestinationError on its first `times` tries; lists the tries."""

    def __init__(self, times: int, wait: float | None = None) -> None:
        self.times, self.wait = times, wait
        self.tries: list[int] = []

    async def __call__(self, number: int) -> str:
        self.tries.append(number)
        if len(self.tries) <= self.times:
            raise RetryableDestinationError(None, "busy", wait=self.wait)
        return "done"


def test_backoff_is_exponential_with_full_jitter_on_the_injected_clock():
    fake, again = FakeClock(seed=7), FakeClock(seed=7)
    attempt = Failing(5)
    assert asyncio.run(RetryPolicy(attempts=6, base=0.5, cap=4.0, clock=fake.clock).run(attempt, "x")) == "done"
    assert attempt.tries == [0, 1, 2, 3, 4, 5]
    assert all(0 <= s <= min(4.0, 0.5 * 2**n) for n, s in enumerate(fake.slept)) and len(fake.slept) == 5
    assert len(set(fake.slept)) == 5  # jittered, not a fixed ladder
    # The same seed gives the same waits: chance comes from the clock, nowhere else.
    asyncio.run(RetryPolicy(attempts=6, base=0.5, cap=4.0, clock=again.clock).run(Failing(5), "x"))
    assert again.slept == fake.slept


def test_a_server_asking_for_longer_than_the_backoff_is_obeyed():
    fake = FakeClock()
    asyncio.run(RetryPolicy(attempts=2, base=0.1, clock=fake.clock).run(Failing(1, wait=9.0), "x"))
    assert fake.slept == [9.0]


def test_retry_items_resends_only_the_items_still_retryable_then_keeps_the_last_answers():
    fake = FakeClock()
    policy = RetryPolicy(attempts=3, base=0.25, clock=fake.clock)
    busy = {"b": 1, "c": 5}  # b is locked for one try, c for longer than the policy lasts
    sent = []

    async def send(items: list[str]) -> list[str]:
        sent.append(items)
        answers = []
        for item in items:
            answers.append("locked" if busy.get(item, 0) > 0 else "ok")
            busy[item] = busy.get(item, 0) - 1
        return answers

    answers = asyncio.run(policy.retry_items(["a", "b", "c", "d"], send, lambda answer: answer == "locked"))
    assert answers == ["ok", "ok", "locked", "ok"]
    assert sent == [["a", "b", "c", "d"], ["b", "c"], ["c"]]
    assert len(fake.slept) == 2 and fake.slept[0] <= 0.25 and fake.slept[1] <= 0.5


def test_retry_predicates_compose():
    answer = httpx.Response(503)
    statuses = retry_if_status(503)
    errors = retry_if_exception(httpx.ConnectError)
    assert statuses(answer) and not statuses(httpx.Response(400)) and not statuses(httpx.ConnectError("x"))
    assert errors(httpx.ConnectError("x")) and not errors(httpx.Response(503)) and not errors(ValueError())
    either = retry_any(statuses, errors)
    assert either(answer) and either(httpx.ConnectError("x")) and not either(httpx.Response(404))


def test_a_policy_predicate_decides_what_the_client_retries():
    handler = scripted(httpx.Response(409, json={"message": "conflict, try later"}), httpx.Response(200, json={}))
    fake = FakeClock()
    http = Http("http://dest.test", transport=httpx.MockTransport(handler),
                policy=RetryPolicy(retry_if=retry_if_status(409), clock=fake.clock))

    async def go():
        async with http:
            return await http.request("GET", "/x")

    assert asyncio.run(go()).status_code == 200 and len(handler.calls) == 2 and http.retries == 1


def test_no_engine_or_destination_module_reads_the_clock_sleeps_or_draws_chance_itself():
    root = Path(__file__).resolve().parents[1] / "revetl"
    forbidden = re.compile(r"^\s*(import (time|random)\b|from (time|random) import)|asyncio\.sleep\(|"
                           r"datetime\.now\(|time\.(time|monotonic|sleep)\(|random\.(random|uniform)\(", re.M)
    modules = [root / "sync" / "http.py", root / "sync" / "transport.py", *(root / "destinations").glob("*.py")]
    assert len(modules) > 5
    offenders = {m.name: forbidden.findall(m.read_text()) for m in modules if forbidden.search(m.read_text())}
    assert offenders == {}


def test_rate_limiter_never_exceeds_a_fixed_window():
    fake = FakeClock()
    limiter = RateLimiter(300, 3.0, clock=fake.clock)
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
    fake = FakeClock()
    limiter = RateLimiter(None, clock=fake.clock)
    limiter.pause(4)

    asyncio.run(limiter.acquire())
    assert fake.slept == [4]
