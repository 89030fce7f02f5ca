"""The webhook receiver emulator through real sockets: signatures, the replay window, idempotency keys,
per-row verdicts, limits, and `revetl emulate webhook` as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest

from revetl.destinations.webhook import signature
from revetl.emulators import running

SECRET = "emulator-webhook-secret-99"


@pytest.fixture(scope="module")
def hook_url() -> Iterator[str]:
    with running("webhook", {"secret": SECRET, "seed": 1, "max_rows": 3}) as url:
        yield url


@pytest.fixture
def hook(hook_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hook_url, timeout=5) as client:
        client.post("/_emulator/reset").raise_for_status()
        yield client


def post(client: httpx.Client, body: dict, key: str = "k1", secret: str = SECRET,
         at: float | None = None) -> httpx.Response:
    content = orjson.dumps(body)
    timestamp = str(int(time.time() if at is None else at))
    headers = {"Content-Type": "application/json", "Idempotency-Key": key, "X-Revetl-Timestamp": timestamp,
               "X-Revetl-Signature": signature(secret.encode(), timestamp, content)}
    return client.post("/webhook", content=content, headers=headers)


def members(client: httpx.Client) -> dict[str, dict]:
    return {m["key"]: m["fields"] for m in client.get("/_emulator/members").json()["members"]}


ADD = {"adds": [{"key": "u1", "fields": {"email": "a@x.io"}}, {"key": "u2", "fields": {"email": "nope"}}]}


def test_a_signed_batch_is_applied_and_bad_rows_are_listed(hook):
    answer = post(hook, ADD)
    assert answer.status_code == 200
    assert answer.json() == {"accepted": 1, "rejected": [{"key": "u2", "reason": "email is not an email address"}]}
    assert members(hook) == {"u1": {"email": "a@x.io"}}
    assert post(hook, {"removes": [{"key": "u1", "fields": {}}]}, key="k2").status_code == 200
    assert members(hook) == {}


def test_a_forged_or_stale_request_is_401_and_applies_nothing(hook):
    forged = post(hook, ADD, secret="somebody-else-secret")
    stale = post(hook, ADD, at=time.time() - 301)
    future = post(hook, ADD, at=time.time() + 301)
    assert [r.status_code for r in (forged, stale, future)] == [401, 401, 401]
    assert forged.json() == {"error": "invalid signature"}
    assert stale.json() == {"error": "timestamp outside the 300 s tolerance"}
    assert members(hook) == {}


def test_a_resent_key_gets_the_first_answer_and_applies_once(hook):
    first = post(hook, ADD, key="batch-a")
    post(hook, {"removes": [{"key": "u1", "fields": {}}]}, key="batch-b")
    again = post(hook, ADD, key="batch-a")  # a resend after the remove must not bring u1 back
    assert again.status_code == 200 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert members(hook) == {}
    assert hook.get("/_emulator/batches").json()["batches"]["batch-a"] == {"received": 2, "applied": 1}
    other = post(hook, {"adds": []}, key="batch-a")
    assert other.status_code == 422 and "another body" in other.json()["error"]


def test_limits_and_malformed_bodies(hook):
    too_many = {"adds": [{"key": f"u{i}", "fields": {}} for i in range(4)]}
    assert post(hook, too_many).status_code == 413
    assert post(hook, {"adds": "x"}, key="k2").status_code == 400
    unsigned = hook.post("/webhook", content=b"{}", headers={"X-Revetl-Timestamp": "1", "X-Revetl-Signature": "sha256=0"})
    assert unsigned.status_code == 401  # the signature is checked first: a stranger learns nothing more
    no_key = post(hook, ADD, key="")
    assert no_key.status_code == 400 and no_key.json() == {"error": "Idempotency-Key is required"}


def test_revetl_emulate_webhook_serves_until_sigterm(tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "revetl", "emulate", "webhook", "--port", "0"],
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "WEBHOOK_SECRET": SECRET})
    try:
        assert process.stdout is not None
        line = json.loads(process.stdout.readline())
        assert line["emulator"] == "webhook" and line["rate_limit"] is None
        with httpx.Client(base_url=line["url"], timeout=5) as client:
            assert post(client, ADD).status_code == 200
            assert post(client, ADD, secret="not-the-env-secret").status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
