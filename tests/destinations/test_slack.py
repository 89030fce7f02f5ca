"""The Slack digest offline (httpx.MockTransport): the message, Slack's limits with "…and N more", escaping,
what is acknowledged, Slack's error answers, the webhook URL kept secret, and strict settings."""

from __future__ import annotations


import httpx
import orjson
import pytest
from hook_helpers import send

from revetl.config import SyncConfig
from revetl.destinations import Row, RowResult, load_destination
from revetl.destinations.slack import MAX_BLOCKS, Slack
from revetl.errors import ConfigError, FatalDestinationError
from revetl.testing import FakeClock

TOKEN = "xSecretWebhookToken42"
URL = f"https://hooks.slack.com/services/T0AAA/B0BBB/{TOKEN}"


def slack(fields: dict[str, str] | None = None, **destination) -> Slack:
    sync = SyncConfig.model_validate({
        "name": "churn_to_slack", "path": "syncs/churn_to_slack.yml", "audience": "churn_risk",
        "destination": {"type": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}", **destination},
        "identity": {"from": "user_id", "to": "user"}, "fields": fields or {"first_name": "first_name"},
    })
    found = load_destination(sync, {"SLACK_WEBHOOK_URL": URL})
    assert isinstance(found, Slack)
    return found


def person(op: str, key: str, name: str | None, **more) -> Row:
    return Row.of(op, key, {"first_name": name, **more})


OK = lambda request: httpx.Response(200, text="ok")  # noqa: E731


def texts(message: dict) -> list[str]:
    return [b["text"]["text"] if "text" in b else b["elements"][0]["text"] for b in message["blocks"]]


def test_a_digest_says_who_entered_and_left_by_first_name():
    rows = [*(person("add", f"u{i}", name) for i, name in enumerate(["Ann", "Bob", "Cy"])),
            person("remove", "u7", "Dee"), person("change", "u8", "Eve")]
    results, [request] = send(slack(display="first_name"), rows, OK)
    assert results == [RowResult(True)] * 5  # the change is counted in the message that was accepted
    message = orjson.loads(request.content)
    assert str(request.url) == URL and message["text"] == "churn risk: +3 / -1"
    assert texts(message) == ["churn risk: +3 / -1", "*Entered (3)*\n• Ann\n• Bob\n• Cy", "*Left (1)*\n• Dee",
                              "sync churn_to_slack · 1 changed"]


def test_other_mapped_fields_follow_the_name_and_changes_can_be_listed():
    rows = [person("add", "u1", "Ann", plan="pro"), person("change", "u2", "Bob", plan="team")]
    _, [request] = send(slack({"first_name": "first_name", "plan": "plan"}, display="first_name", changes=True,
                              title="At risk"), rows, OK)
    assert texts(orjson.loads(request.content)) == [
        "At risk: +1 / -0 / ~1", "*Entered (1)*\n• Ann — plan: pro", "*Changed (1)*\n• Bob — plan: team",
        "sync churn_to_slack"]


def test_a_batch_with_nothing_to_say_is_acknowledged_without_a_message():
    results, seen = send(slack(), [person("change", "u1", "Ann")], OK)
    assert results == [RowResult(True)] and seen == []


def test_names_are_escaped_so_a_name_never_pings_a_channel_or_hides_a_link():
    rows = [person("add", "u1", "<!channel> & <https://evil.example|click>"), person("add", "u2", None),
            person("add", "u3", "multi\nline")]
    _, [request] = send(slack(display="first_name"), rows, OK)
    lines = texts(orjson.loads(request.content))[1].split("\n")[1:]
    assert lines == ["• &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;", "• u2", "• multi line"]


def test_a_large_digest_stays_within_slacks_limits_and_counts_the_rest():
    rows = [person("add", f"user-{i:06d}", "N" * 400 + str(i)) for i in range(5000)]
    rows += [person("remove", f"gone-{i}", f"Left {i}") for i in range(1200)]
    _, [request] = send(slack(display="first_name", max_names=500, batch_size=10_000), rows, OK)
    message = orjson.loads(request.content)
    blocks = message["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    assert len(blocks[0]["text"]["text"]) <= 150 and blocks[0]["text"]["text"] == "churn risk: +5,000 / -1,200"
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")
    assert sum(len(t) for t in texts(message)) <= 13_000 and len(message["text"]) <= 40_000
    sections = "\n".join(t for t in texts(message)[1:-1])
    shown = sections.count("• N")
    assert 0 < shown < 500 and f"…and {5000 - shown:,} more" in sections
    assert all(len(line) <= 300 for line in sections.split("\n"))
    assert "*Left (1,200)*" in sections  # the second group keeps its title, however long the first


def test_max_names_cuts_each_group():
    rows = [person("add", f"u{i}", f"P{i}") for i in range(12)]
    _, [request] = send(slack(display="first_name", max_names=10), rows, OK)
    entered = texts(orjson.loads(request.content))[1]
    assert entered.split("\n")[-2:] == ["• P9", "…and 2 more"]


def test_a_refused_message_rejects_its_rows_with_slacks_error():
    results, _ = send(slack(), [person("add", "u1", "Ann")], lambda r: httpx.Response(400, text="invalid_payload"))
    assert results == [RowResult(False, "slack 400 invalid_payload")]


@pytest.mark.parametrize("status, error", [(404, "no_service"), (410, "channel_is_archived"),
                                           (403, "invalid_token"), (403, "action_prohibited")])
def test_a_revoked_webhook_or_a_gone_channel_stops_the_run_without_the_url(status, error):
    with pytest.raises(FatalDestinationError) as caught:
        send(slack(), [person("add", "u1", "Ann")], lambda r: httpx.Response(status, text=error))
    message = str(caught.value)
    assert error in message and str(status) in message
    assert TOKEN not in message and "/services/" not in message


def test_429_waits_for_retry_after_then_posts():
    answers = iter([httpx.Response(429, text="rate_limited", headers={"Retry-After": "7"}), OK(None)])
    clock = FakeClock()
    results, seen = send(slack(), [person("add", "u1", "Ann")], lambda r: next(answers), clock)
    assert results == [RowResult(True)] and len(seen) == 2 and 7.0 in clock.slept


def test_the_client_holds_itself_to_one_message_a_second():
    destination = slack()
    assert destination.rate_limit() == (1, 1.1) and destination.concurrency == 1
    assert slack(rate_limit={"requests": 3, "per_seconds": 1}).rate_limit() == (3, 1.0)


@pytest.mark.parametrize("destination, fields, words", [
    ({"base_url": "https://hooks.slack.com"}, None, "not `base_url`"),
    ({"webhook_url": "hooks.slack.com/services/x"}, None, "incoming webhook's http(s) URL"),
    ({"webhook_url": "https://u:p@hooks.slack.com/services/x"}, None, "must not hold credentials"),
    ({"display": "email"}, None, "`destination.display` names a column that `fields` does not map"),
    ({"max_names": -1}, None, "`max_names`"),
    ({"colour": "red"}, None, "`colour`"),
])
def test_settings_are_strict_and_name_the_sync_file(destination, fields, words):
    with pytest.raises(ConfigError) as caught:
        slack(fields, **destination)
    message = str(caught.value)
    assert message.startswith("syncs/churn_to_slack.yml") and words in message, message
    assert TOKEN not in message
