"""The webhook destination offline (httpx.MockTransport): the body, the idempotency key, the signature a
receiver verifies, the answer contract (per-row rejects, 4xx, wrong URL, 413), secrets kept out of every
message, and strict settings naming the sync file."""

from __future__ import annotations

import hashlib
import hmac
import random

import httpx
import orjson
import pytest
from hook_helpers import send

from revetl.config import SyncConfig
from revetl.destinations import Row, RowResult, load_destination
from revetl.destinations.webhook import Webhook, batch_key, signature
from revetl.errors import ConfigError, FatalDestinationError
from revetl.testing import FakeClock

SECRET = "hook-secret-0123456789"
TOKEN = "receiver-token-abcdef"
URL = "https://hooks.example.com/revetl"


def webhook(**destination) -> Webhook:
    sync = SyncConfig.model_validate({
        "name": "people_to_hook", "path": "syncs/people_to_hook.yml", "audience": "people",
        "destination": {"type": "webhook", "base_url": URL, "secret": "${HOOK_SECRET}",
                        "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"}, **destination},
        "identity": {"from": "user_id", "to": "external_id"}, "fields": {"email": "email", "plan": "plan"},
    })
    found = load_destination(sync, {"HOOK_SECRET": SECRET, "HOOK_TOKEN": TOKEN})
    assert isinstance(found, Webhook)
    return found


ROWS = [Row.of("add", "u2", {"email": "b@x.io", "plan": "pro"}), Row.of("remove", "u9", {"email": "z@x.io"}),
        Row("change", "u1", '{"email":"a@x.io","plan":"team"}', "h1", None, '{"email":"a@x.io","plan":"pro"}'),
        Row.of("add", "u0", {"email": "a0@x.io", "plan": None})]


def test_a_batch_is_one_signed_request_a_receiver_can_verify():
    results, [request] = send(webhook(), ROWS, lambda r: httpx.Response(200))
    assert results == [RowResult(True)] * 4
    body = orjson.loads(request.content)
    assert body == {
        "sync": "people_to_hook", "audience": "people", "identity": "external_id", "batch": batch_key("people_to_hook", ROWS),
        "adds": [{"key": "u0", "fields": {"email": "a0@x.io", "plan": None}},
                 {"key": "u2", "fields": {"email": "b@x.io", "plan": "pro"}}],
        "changes": [{"key": "u1", "fields": {"email": "a@x.io", "plan": "team"},
                     "previous": {"email": "a@x.io", "plan": "pro"}}],
        "removes": [{"key": "u9", "fields": {"email": "z@x.io"}}],
    }
    assert request.headers["idempotency-key"] == body["batch"]
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    # What the README tells a receiver to do: HMAC-SHA256 of "<timestamp>.<raw body>" with the shared secret.
    timestamp = request.headers["x-revetl-timestamp"]
    mac = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + request.content, hashlib.sha256).hexdigest()
    assert request.headers["x-revetl-signature"] == f"sha256={mac}"
    assert signature(b"other-secret-0123456", timestamp, request.content) != request.headers["x-revetl-signature"]


def test_the_idempotency_key_depends_on_the_rows_not_their_order():
    shuffled = ROWS[:]
    random.Random(3).shuffle(shuffled)
    assert batch_key("s", shuffled) == batch_key("s", ROWS)
    changed = [ROWS[0], ROWS[1], ROWS[2]._replace(row_hash="h2"), ROWS[3]]
    assert batch_key("s", changed) != batch_key("s", ROWS)
    assert batch_key("other", ROWS) != batch_key("s", ROWS)
    # And the same rows make the same bytes: a receiver may compare a resend's body with the first.
    _, [first] = send(webhook(), ROWS, lambda r: httpx.Response(200))
    _, [again] = send(webhook(), shuffled, lambda r: httpx.Response(200))
    assert first.content == again.content


def test_every_retry_is_signed_afresh_with_the_same_key():
    answers = iter([httpx.Response(503), httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200)])
    clock = FakeClock()
    results, seen = send(webhook(), ROWS, lambda r: next(answers), clock)
    assert results == [RowResult(True)] * 4 and len(seen) == 3
    assert len({r.headers["idempotency-key"] for r in seen}) == 1
    assert 2.0 in clock.slept  # Retry-After honoured by the shared policy
    # Each try is signed at the clock's time when it is sent: the retry after Retry-After is 2 s later at least.
    stamps = [int(r.headers["x-revetl-timestamp"]) for r in seen]
    assert stamps[0] >= 1_000_000 and stamps[2] - stamps[1] >= 2
    for request in seen:
        expected = signature(SECRET.encode(), request.headers["x-revetl-timestamp"], request.content)
        assert request.headers["x-revetl-signature"] == expected


def test_rows_the_receiver_lists_are_rejected_with_its_reason():
    answer = {"rejected": [{"key": "u2", "reason": "unknown plan"}, {"key": "nobody", "reason": "x"}, "junk"]}
    results, _ = send(webhook(), ROWS, lambda r: httpx.Response(200, json=answer))
    assert results == [RowResult(False, "unknown plan"), RowResult(True), RowResult(True), RowResult(True)]
    # A 2xx whose body is not JSON, or says nothing about rejects, acknowledges every row.
    results, _ = send(webhook(), ROWS, lambda r: httpx.Response(202, text="queued"))
    assert results == [RowResult(True)] * 4


def test_a_4xx_rejects_the_batch_and_never_quotes_a_secret():
    def echo(request: httpx.Request) -> httpx.Response:  # a careless receiver quoting what it got
        return httpx.Response(400, json={"error": f"bad request with {request.headers['authorization']}"})

    results, _ = send(webhook(), ROWS, echo)
    assert {r.ok for r in results} == {False}
    assert results[0].reason == "webhook 400: bad request with ***"
    assert all(TOKEN not in (r.reason or "") for r in results)


@pytest.mark.parametrize("status, words", [(404, "is base_url right?"), (410, "is base_url right?"),
                                           (413, "lower batch_size"), (308, "the receiver's final URL")])
def test_a_wrong_url_or_a_batch_too_large_stops_the_run(status, words):
    with pytest.raises(FatalDestinationError) as caught:
        send(webhook(), ROWS, lambda r: httpx.Response(status, json={"error": f"no {TOKEN}"}))
    assert words in str(caught.value) and TOKEN not in str(caught.value)


def test_bad_credentials_stop_at_once_without_the_header_value():
    with pytest.raises(FatalDestinationError) as caught:
        send(webhook(), ROWS, lambda r: httpx.Response(401, json={"error": f"token {TOKEN} revoked"}))
    assert "401" in str(caught.value) and TOKEN not in str(caught.value) and SECRET not in str(caught.value)


@pytest.mark.parametrize("destination, words", [
    ({"secret": "short"}, "`secret`"),
    ({"headers": {"Bad Name": "x"}}, "not a valid header name"),
    ({"headers": {"Idempotency-Key": "x"}}, "set by revetl itself"),
    ({"headers": {"X-Token": "a\r\nInjected: yes"}}, "holds a line break"),
    ({"batch_size": 0}, "`batch_size`"),
    ({"base_url": "https://user:pw@hooks.example.com/"}, "must not hold credentials"),
    ({"sign": True}, "`sign`"),
])
def test_settings_are_strict_and_name_the_sync_file(destination, words):
    with pytest.raises(ConfigError) as caught:
        webhook(**destination)
    message = str(caught.value)
    assert message.startswith("syncs/people_to_hook.yml destination:") and words in message, message
    assert "a\r\nInjected" not in message


def test_membership_is_refused_it_means_nothing_to_a_webhook():
    sync = SyncConfig.model_validate({
        "name": "s", "path": "syncs/s.yml", "audience": "people", "membership": {"attribute": "x"},
        "destination": {"type": "webhook", "base_url": URL, "secret": SECRET},
        "identity": {"from": "user_id", "to": "id"},
    })
    with pytest.raises(ConfigError, match=r"syncs/s.yml: webhook takes no `membership`"):
        load_destination(sync)
