"""The Slack incoming-webhook emulator through real sockets: the URL as credential, Slack's error answers,
block limits, the archived channel, one message a second, and `revetl emulate slack` as a process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from revetl.emulators import running

TOKEN = "emulatorSlackToken77"
HOOK = f"/services/T00000000/B00000000/{TOKEN}"


@pytest.fixture(scope="module")
def slack_url() -> Iterator[str]:
    with running("slack", {"token": TOKEN, "rate_limit": None, "refuse_containing": "REFUSE-ME"}) as url:
        yield url


@pytest.fixture
def slack(slack_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=slack_url, timeout=5) as client:
        client.post("/_emulator/reset").raise_for_status()
        yield client


def header(text: str) -> dict:
    return {"type": "header", "text": {"type": "plain_text", "text": text}}


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def messages(client: httpx.Client) -> list[dict]:
    return client.get("/_emulator/messages").json()["messages"]


def test_a_message_is_ok_and_kept(slack):
    answer = slack.post(HOOK, json={"text": "churn risk: +1 / -0", "blocks": [header("churn"), section("• Ann")]})
    assert (answer.status_code, answer.text) == (200, "ok")
    [kept] = messages(slack)
    assert kept["text"] == "churn risk: +1 / -0" and kept["blocks"][1] == section("• Ann")
    logged = slack.get("/_emulator/requests").json()["requests"][-1]
    assert TOKEN not in json.dumps(logged) and logged["path"] == "/services/T00000000/B00000000/[redacted]"


def test_the_url_is_the_credential(slack):
    wrong_token = slack.post("/services/T00000000/B00000000/nope", json={"text": "x"})
    unknown = slack.post("/services/T1/B1/nope", json={"text": "x"})
    assert (wrong_token.status_code, wrong_token.text) == (403, "invalid_token")
    assert (unknown.status_code, unknown.text) == (404, "no_service")
    assert messages(slack) == []


@pytest.mark.parametrize("body, error", [
    (b"{not json", "invalid_payload"),
    (b'{"blocks": []}', "no_text"),
    (json.dumps({"text": "x", "blocks": [section("a")] * 51}).encode(), "invalid_blocks"),
    (json.dumps({"text": "x", "blocks": [header("h" * 151)]}).encode(), "invalid_blocks"),
    (json.dumps({"text": "x", "blocks": [section("s" * 3001)]}).encode(), "invalid_blocks"),
    (json.dumps({"text": "x", "blocks": [{"type": "carousel"}]}).encode(), "invalid_blocks"),
    (json.dumps({"text": "REFUSE-ME"}).encode(), "invalid_payload"),
])
def test_payloads_slack_refuses_are_400_with_its_error(slack, body, error):
    answer = slack.post(HOOK, content=body, headers={"Content-Type": "application/json"})
    assert (answer.status_code, answer.text) == (400, error)
    assert messages(slack) == []


def test_long_text_is_truncated_as_slack_does(slack):
    assert slack.post(HOOK, json={"text": "x" * 40_010}).status_code == 200
    assert len(messages(slack)[0]["text"]) == 40_000


def test_an_archived_channel_is_410(slack):
    slack.post("/_emulator/channel", json={"archived": True}).raise_for_status()
    answer = slack.post(HOOK, json={"text": "x"})
    assert (answer.status_code, answer.text) == (410, "channel_is_archived")


def test_more_than_one_message_a_second_is_429_with_retry_after():
    with running("slack", {"token": TOKEN}) as url:
        with httpx.Client(base_url=url, timeout=5) as client:
            # Start just after a window opens, so both posts fall in the same second.
            time.sleep(1.05 - time.time() % 1)
            first = client.post(HOOK, json={"text": "one"})
            second = client.post(HOOK, json={"text": "two"})
    assert first.status_code == 200
    assert (second.status_code, second.text, second.headers["retry-after"]) == (429, "rate_limited", "1")


def test_revetl_emulate_slack_serves_until_sigterm():
    process = subprocess.Popen([sys.executable, "-m", "revetl", "emulate", "slack", "--port", "0"],
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "SLACK_WEBHOOK_TOKEN": TOKEN})
    try:
        assert process.stdout is not None
        line = json.loads(process.stdout.readline())
        assert line["emulator"] == "slack" and (line["rate_limit"], line["rate_window"]) == (1, 1.0)
        assert httpx.post(line["url"] + HOOK, json={"text": "hello"}, timeout=5).text == "ok"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
