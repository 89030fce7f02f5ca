"""Alerts without the command line: `alerts:` validation with file and line, what each rule observes,
once-per-change delivery to real loopback servers, the messages' shapes and their signature."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from alerts_receivers import SLACK_PATH, WEBHOOK_SECRET, receiver, verify
from wh import TARGETS, on_target

from revetl.alerts.hooks import warehouse_store
from revetl.alerts.channels import Alert, ChannelError, send, sign, slack_message
from revetl.alerts.notify import changes, deliver
from revetl.alerts.rules import BuildFacts, SyncFacts, build_observations, collector_observation, sync_observations
from revetl.alerts.settings import AlertSettings
from revetl.alerts.store import FileStore, Known, Told
from revetl.config import load_project
from revetl.errors import ConfigError


def project_file(tmp_path: Path, text: str) -> Path:
    (tmp_path / "dbt_project.yml").write_text("name: t\n")
    (tmp_path / "revetl.yml").write_text(text)
    return tmp_path / "revetl.yml"


GOOD = """\
landing_dir: data/events
alerts:
  channels:
    ops: {type: slack, url: "${SLACK_URL}"}
    hook:
      type: webhook
      url: https://hooks.example.com/revetl
      secret: ${HOOK_SECRET}
    mail: {type: email, host: smtp.example.com, port: 587, from: revetl@example.com, to: [data@example.com],
           starttls: true, username: "${SMTP_USER}", password: "${SMTP_PASSWORD}"}
  rules:
    - {when: sync_failed, channels: [ops, hook]}
    - {when: rejected_rows, share: 0.05, channels: [ops]}
    - {when: audience_size, share: 0.2, channels: [hook], syncs: [people]}
    - {when: build_failed, channels: [mail]}
    - {when: collector_degraded, for_seconds: 60, channels: [ops]}
"""


def test_a_full_alerts_block_loads_and_keeps_its_secrets_as_references(tmp_path):
    project_file(tmp_path, GOOD)
    alerts = load_project(tmp_path).alerts
    assert [rule.id for rule in alerts.rules] == [
        "sync_failed", "rejected_rows>0.05", "audience_size>0.2", "build_failed", "collector_degraded"]
    assert alerts.channels["mail"].from_ == "revetl@example.com"
    assert "${SLACK_URL}" not in repr(alerts)  # secrets are SecretStr: never printed
    assert sorted(alerts.secrets()) == ["${HOOK_SECRET}", "${SLACK_URL}", "${SMTP_PASSWORD}", "${SMTP_USER}"]


@pytest.mark.parametrize(("change", "expected"), [
    (("[ops, hook]}", "[ops, pager]}"), "revetl.yml, line 12: `alerts.rules.0.channels` `pager` is not a channel in "
                                        "`alerts.channels` (hook, mail, ops)"),
    (("secret: ${HOOK_SECRET}", "secret: s3cr3t"), "revetl.yml, line 8: `alerts.channels.hook.webhook.secret` must "
                                                  "come from the environment, e.g. `${ALERT_WEBHOOK_SECRET}`"),
    (("share: 0.05, ", ""), "revetl.yml, line 13: `alerts.rules.1` `rejected_rows` needs a `share`, "
                            "e.g. `share: 0.05`"),
    (("syncs: [people]", "sycns: [people]"), "revetl.yml, line 14: `alerts.rules.2.sycns` unknown key; did you mean "
                                             "`syncs`?"),
    (("{when: build_failed,", "{when: build_broke,"), "revetl.yml, line 15: `alerts.rules.3.when` input should be "),
    (("for_seconds: 60, ", "share: 0.1, "), "revetl.yml, line 16: `alerts.rules.4` `share` applies to "
                                            "rejected_rows, audience_size and violations"),
    (("{when: build_failed,", "{when: build_failed, for_seconds: 5,"), "revetl.yml, line 15: `alerts.rules.3` "
     "`for_seconds` applies to collector_degraded and violations, not `build_failed`"),
    (("username: \"${SMTP_USER}\", ", ""), "revetl.yml, line 9: `alerts.channels.mail.email` give both "
                                           "`username` and `password`"),
    (("url: https://hooks.example.com/revetl", "url: hooks.example.com"), "revetl.yml, line 7: "
     "`alerts.channels.hook.webhook.url` must be an http(s) URL (or a `${VAR}` holding one), not 'hooks.example.com'"),
    (("to: [data@example.com]", "to: [data-team]"), "revetl.yml, line 9: `alerts.channels.mail.email.to.0` must be "
                                                    "an email address, not 'data-team'"),
    (("to: [data@example.com]", "to: []"), "revetl.yml, line 9: `alerts.channels.mail.email.to` list should have "
                                           "at least 1 item"),
])
def test_a_wrong_alerts_block_is_one_sentence_with_its_line(tmp_path, change, expected):
    path = project_file(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as raised:
        load_project(tmp_path)
    message = str(raised.value)
    assert message.startswith(str(path)) and expected in message, message


def rules(*lines: str) -> AlertSettings:
    channels = {"ops": {"type": "webhook", "url": "http://127.0.0.1:9/x", "secret": "${S}"}}
    return AlertSettings.model_validate({"channels": channels, "rules": [json.loads(line) for line in lines]})


SETTINGS = rules('{"when": "sync_failed", "channels": ["ops"]}',
                 '{"when": "rejected_rows", "share": 0.05, "channels": ["ops"]}',
                 '{"when": "audience_size", "share": 0.2, "channels": ["ops"]}')


def observed(facts: SyncFacts) -> dict[str, bool]:
    return {seen.rule.when: seen.failing for seen in sync_observations(SETTINGS, facts)}


def test_each_sync_rule_reads_a_run_as_a_user_would():
    ran = dict(sync="people", audience="people", run_id="r1", planned=100, members=100, previous_members=100)
    assert observed(SyncFacts(status="succeeded", stopped=False, acknowledged=100, rejected=0, **ran)) == {
        "sync_failed": False, "rejected_rows": False, "audience_size": False}
    # rejected rows: the run went to the end, so it did not fail; 6% is above 5%
    assert observed(SyncFacts(status="failed", stopped=False, acknowledged=94, rejected=6, **ran)) == {
        "sync_failed": False, "rejected_rows": True, "audience_size": False}
    # stopped by a 401 before any answer: failing; nothing answered says nothing of rejects
    assert observed(SyncFacts(status="failed", stopped=True, acknowledged=0, rejected=0, **ran)) == {
        "sync_failed": True, "audience_size": False}
    assert observed(SyncFacts(status="refused", stopped=True, **{**ran, "members": 30})) == {
        "sync_failed": True, "audience_size": True}
    assert observed(SyncFacts("people", "locked", False)) == {}
    assert observed(SyncFacts("people", "cancelled", True)) == {}
    # a first run has no previous size; growing from an empty audience is a swing
    assert observed(SyncFacts("people", "succeeded", False, members=5, acknowledged=5, rejected=0)) == {
        "sync_failed": False, "rejected_rows": False}
    assert observed(SyncFacts("people", "succeeded", False, members=5, previous_members=0))["audience_size"] is True


def test_a_sync_rule_limited_to_some_syncs_ignores_the_others():
    limited = rules('{"when": "sync_failed", "channels": ["ops"], "syncs": ["a"]}')
    assert sync_observations(limited, SyncFacts("b", "failed", True)) == []
    assert [seen.failing for seen in sync_observations(limited, SyncFacts("a", "failed", True))] == [True]


def test_a_failed_build_names_its_first_failures():
    settings = rules('{"when": "build_failed", "channels": ["ops"]}')
    failed = tuple((f"model_{i}", f"boom {i}") for i in range(7))
    (seen,) = build_observations(settings, BuildFacts(ok=False, failed=failed, passed=3))
    assert seen.failing and seen.summary == "the build failed (7 models or tests)"
    assert seen.reason == "model_0: boom 0; model_1: boom 1; model_2: boom 2; model_3: boom 3; model_4: boom 4; and 2 more"
    assert seen.facts["counts"] == {"passed": 3, "failed": 7, "skipped": 0}


class Clock:
    def __init__(self) -> None:
        self.at = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.timezone.utc)

    def now(self) -> dt.datetime:
        self.at += dt.timedelta(minutes=1)
        return self.at


def test_a_state_sends_one_alert_when_it_starts_failing_and_one_recovery_when_it_clears(tmp_path, monkeypatch):
    clock = Clock()
    with receiver() as server:
        monkeypatch.setenv("S", WEBHOOK_SECRET)
        settings = rules('{"when": "collector_degraded", "channels": ["ops"]}').model_copy(
            update={"channels": {"ops": rules().channels["ops"].model_copy(update={"url": server.hook_url})}})
        rule = settings.rules[0]
        store = FileStore(tmp_path / "alerts.json")
        warnings: list[str] = []

        def check(problem: str | None) -> int:
            due = changes([collector_observation(rule, problem, "log")], store, "proj", clock)  # type: ignore[arg-type]
            return len(deliver(settings, due, store, warnings.append, clock=clock))  # type: ignore[arg-type]

        assert [check(None), check("disk full"), check("disk full"), check(None), check(None)] == [0, 1, 0, 1, 0]
        failing, recovered = (delivery.json for delivery in server.hooks())
        assert all(delivery.signature_valid for delivery in server.hooks())
        assert (failing["state"], recovered["state"]) == ("failing", "recovered")
        assert failing["reason"] == "disk full" and recovered["since"] == failing["since"]
        assert warnings == []
        # the state outlives the process: a new store reads what the channel was last told
        assert FileStore(tmp_path / "alerts.json").load({"collector"})[("collector_degraded", "collector", "ops")].failing \
            is False

        server.mode = "down"
        assert check("disk full") == 0
        assert warnings == ['alert "the collector is degraded" not sent to channel ops (webhook): the webhook answered '
                            '500: internal error; it is tried again at the next check while it still applies']
        server.mode = "ok"
        assert check("disk full") == 1  # the channel was never told: the next check tells it


def test_the_slack_message_and_the_signature(monkeypatch):
    with receiver() as server:
        monkeypatch.setenv("SLACK_URL", server.slack_url)
        settings = AlertSettings.model_validate({"channels": {"ops": {"type": "slack", "url": "${SLACK_URL}"}},
                                                 "rules": [{"when": "build_failed", "channels": ["ops"]}]})
        (seen,) = build_observations(settings, BuildFacts(ok=False, error="traits.yml, line 2: <unknown> kind & co"))
        at = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.timezone.utc)
        payload = Alert(seen, True, at, at, "proj").payload()
        send(settings.channels["ops"], payload, [])
        (message,) = server.slack()
        assert message["text"] == ":red_circle: FAILING: the build failed"
        assert "traits.yml, line 2: &lt;unknown&gt; kind &amp; co" in message["blocks"][0]["text"]["text"]
        assert message == slack_message(payload)
        server.mode = "down"
        with pytest.raises(ChannelError, match="^Slack answered 500: internal error$") as raised:
            send(settings.channels["ops"], payload, [])
        assert SLACK_PATH not in str(raised.value)
    body = b'{"a": 1}'
    signature = sign(WEBHOOK_SECRET, "1764489600", body)
    assert signature == "sha256=" + __import__("hmac").new(
        WEBHOOK_SECRET.encode(), b'1764489600.{"a": 1}', "sha256").hexdigest()
    assert not verify(WEBHOOK_SECRET, {"x-revetl-timestamp": "1764489600", "x-revetl-signature": signature}, body), \
        "a timestamp far from now is a replay"


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_alert_states_live_in_the_warehouse_on_every_engine(project, target, request, monkeypatch):
    project = on_target(project, target, request, monkeypatch)
    store = warehouse_store(project)
    since = dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.timezone.utc)
    key = ("sync_failed", "people", "ops")
    assert store.load({"people"}) == {}
    store.save([Told(key, True, since, "r1", "sync people failed", since)])
    store.save([Told(key, False, since, "r2", "sync people ran to the end", since + dt.timedelta(hours=1)),
                Told(("sync_failed", "other", "ops"), True, since, None, "sync other failed", since)])
    assert store.load({"people"}) == {key: Known(False, since)}
    assert set(store.load({"people", "other"})) == {key, ("sync_failed", "other", "ops")}
