"""Alerts through the real command line: `revetl sync` against the Braze emulator, alerts to a real HTTP
server (a Slack-shaped incoming webhook and a signed generic webhook, its HMAC verified) and a real SMTP
server (STARTTLS and a login). Once per change of state; a channel down never changes the exit code."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from alerts_receivers import WEBHOOK_SECRET, mailbox, receiver, self_signed
from test_sync import members
from wh import audience_project, on_target

from revetl.config import Project
from revetl.emulators import running

pytestmark = pytest.mark.slow

KEY = "alerts-test-braze-key-7c1e"
WRONG = "alerts-wrong-braze-key-3d9a"
SMTP_LOGIN = ("alerts-user", "smtp-password-8e4b")
AUDIENCE = """-- description: people
-- key: user_id

select user_id, email, plan from {{ ref('members') }}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    return audience_project(tmp_path, monkeypatch, {"people": AUDIENCE}, tables=("members",))


def sync_file(project: Project, url: str) -> None:
    (project.syncs_dir / "people.yml").write_text(yaml.safe_dump({
        "audience": "people",
        "destination": {"type": "braze", "base_url": url, "api_key": "${BRAZE_API_KEY}"},
        "identity": {"from": "user_id", "to": "external_id"},
        "fields": {"email": "email", "plan": "plan"},
        "membership": {"attribute": "in_people"},
    }))


def alerts_file(project: Project, rules: list[dict], smtp_port: int = 1, timeout: float = 5) -> None:
    channels = {
        "slack": {"type": "slack", "url": "${TEST_SLACK_URL}", "timeout": timeout},
        "hook": {"type": "webhook", "url": "${TEST_HOOK_URL}", "secret": "${TEST_HOOK_SECRET}", "timeout": timeout},
        "mail": {"type": "email", "host": "127.0.0.1", "port": smtp_port, "from": "revetl@example.com",
                 "to": ["data@example.com", "oncall@example.com"], "starttls": True,
                 "username": "${TEST_SMTP_USER}", "password": "${TEST_SMTP_PASSWORD}", "timeout": timeout},
    }
    (project.root / "revetl.yml").write_text(yaml.safe_dump({"alerts": {"channels": channels, "rules": rules}}))


def revetl(project: Project, *args: str, key: str = KEY, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "revetl", "--project-dir", str(project.root), *args],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "COLUMNS": "200", "BRAZE_API_KEY": key, **(env or {})},
    )


def channel_env(server, certificate: Path | None = None) -> dict[str, str]:
    env = {"TEST_SLACK_URL": server.slack_url, "TEST_HOOK_URL": server.hook_url, "TEST_HOOK_SECRET": WEBHOOK_SECRET,
           "TEST_SMTP_USER": SMTP_LOGIN[0], "TEST_SMTP_PASSWORD": SMTP_LOGIN[1]}
    if certificate is not None:
        env["SSL_CERT_FILE"] = str(certificate)  # the client trusts the test server's self-signed certificate
    return env


SECRETS = (KEY, WRONG, WEBHOOK_SECRET, SMTP_LOGIN[1], "slack-url-secret")


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def test_a_failing_sync_alerts_once_then_recovers_once_on_every_channel(project, tmp_path):
    members(project, 10)
    cert, key = self_signed(tmp_path)
    with running("braze", {"api_key": KEY}) as url, receiver() as server, \
            mailbox(login=SMTP_LOGIN, certificate=(cert, key)) as mail:
        sync_file(project, url)
        alerts_file(project, [{"when": "sync_failed", "channels": ["slack", "hook", "mail"]}], smtp_port=mail.port)
        env = channel_env(server, cert)

        first = revetl(project, "sync", "people", key=WRONG, env=env)
        assert first.returncode == 1 and "warning" not in first.stderr, first.stderr
        (slack,), (hook,), (email,) = server.slack(), server.hooks(), mail.messages
        assert hook.signature_valid and hook.headers["x-revetl-event"] == "alert.failing"
        alert = hook.json
        assert alert["state"] == "failing" and alert["kind"] == "sync_failed" and alert["subject"] == "people"
        assert alert["summary"] == "sync people failed" and alert["sync"] == "people" and alert["audience"] == "people"
        assert "401" in alert["reason"] and alert["counts"]["planned"] == 10 and alert["counts"]["acknowledged"] == 0
        runs = revetl(project, "runs", "people")
        assert re.fullmatch(r"[0-9a-f]{16}", alert["run_id"]) and alert["run_id"][:8] in runs.stdout
        assert slack["text"] == ":red_circle: FAILING: sync people failed"
        assert email["Subject"] == "[revetl] FAILING: sync people failed"
        assert mail.envelopes == [("revetl@example.com", ["data@example.com", "oncall@example.com"])]
        assert mail.tls == [True] and mail.logins == [SMTP_LOGIN]
        assert alert["run_id"] in email.get_content()

        second = revetl(project, "sync", "people", key=WRONG, env=env)
        assert second.returncode == 1
        assert (len(server.deliveries), len(mail.messages)) == (2, 1)  # still failing: nothing new

        fixed = revetl(project, "sync", "people", env=env)
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        assert [d.json["state"] for d in server.hooks()] == ["failing", "recovered"]
        recovered = server.hooks()[1].json
        assert recovered["summary"] == "sync people ran to the end" and recovered["since"] == alert["since"]
        assert server.slack()[1]["text"] == ":large_green_circle: Recovered: sync people ran to the end"
        assert [m["Subject"] for m in mail.messages][1] == "[revetl] Recovered: sync people ran to the end"

        again = revetl(project, "sync", "people", env=env)
        assert again.returncode == 0 and len(server.deliveries) == 4 and len(mail.messages) == 2
    assert_no_secret(*(d.body.decode() for d in server.deliveries), *(m.as_string() for m in mail.messages),
                     first.stderr, fixed.stderr)


def test_a_channel_that_is_down_or_slow_is_one_warning_and_the_exit_code_stays_the_runs(project):
    members(project, 10)
    with running("braze", {"api_key": KEY}) as url, receiver() as server:
        sync_file(project, url)
        alerts_file(project, [{"when": "sync_failed", "channels": ["hook", "mail"]},
                              {"when": "audience_size", "share": 0.2, "channels": ["slack"]}], timeout=1)
        env = channel_env(server)  # nothing listens on the SMTP port

        server.mode = "down"
        failed = revetl(project, "sync", "people", key=WRONG, env=env)
        assert failed.returncode == 1
        warnings = [line for line in failed.stderr.splitlines() if line.startswith("warning:")]
        assert warnings == [
            'warning: alert "sync people failed" not sent to channel hook (webhook): the webhook answered 500: '
            'internal error; it is tried again at the next check while it still applies',
            'warning: alert "sync people failed" not sent to channel mail (email): the SMTP server 127.0.0.1:1 '
            'refused or failed (Connection refused); it is tried again at the next check while it still applies',
        ]
        assert "error: " in failed.stderr  # the run's own sentence is still there

        server.mode = "ok"
        still = revetl(project, "sync", "people", key=WRONG, env=env)
        assert still.returncode == 1
        assert [d.json["state"] for d in server.hooks()[1:]] == ["failing"]  # the hook is told now

        assert revetl(project, "sync", "people", env=env).returncode == 0
        members(project, 20)
        server.mode = "slow"  # answers after 3 s; the channel's timeout is 1 s
        grown = revetl(project, "sync", "people", env=env)
        assert grown.returncode == 0, grown.stderr
        assert 'not sent to channel slack (slack): Slack did not answer within 1 s' in " ".join(grown.stderr.split())
    assert_no_secret(failed.stderr, grown.stderr)


def test_rejected_rows_above_a_share_alert_and_the_run_is_not_a_failure(project):
    members(project, 10, bad=2)
    with running("braze", {"api_key": KEY}) as url, receiver() as server:
        sync_file(project, url)
        alerts_file(project, [{"when": "sync_failed", "channels": ["hook"]},
                              {"when": "rejected_rows", "share": 0.05, "channels": ["hook"]}])
        env = channel_env(server)
        rejected = revetl(project, "sync", "people", env=env)
        assert rejected.returncode == 1  # the run's own exit code: rows were rejected
        (alert,) = [d.json for d in server.hooks()]
        assert alert["kind"] == "rejected_rows" and alert["rule"] == "rejected_rows>0.05"
        assert alert["summary"] == "sync people: 2 of 10 rows rejected (20.0%, above 5.0%)"
        assert alert["counts"] == {"planned": 10, "acknowledged": 8, "rejected": 2, "members": 10,
                                   "previous_members": None}
        assert "2 rows rejected by braze" in alert["reason"]

        members(project, 10)
        assert revetl(project, "sync", "people", env=env).returncode == 0
        recovery = server.hooks()[-1].json
        assert (recovery["state"], recovery["kind"], len(server.hooks())) == ("recovered", "rejected_rows", 2)


def test_an_audience_size_swing_and_a_guard_refusal_alert(project):
    members(project, 10)
    with running("braze", {"api_key": KEY}) as url, receiver() as server:
        sync_file(project, url)
        alerts_file(project, [{"when": "sync_failed", "channels": ["hook"]},
                              {"when": "audience_size", "share": 0.2, "channels": ["slack"]}])
        env = channel_env(server)
        assert revetl(project, "sync", "people", env=env).returncode == 0
        assert server.deliveries == []  # a first run has nothing to compare with
        members(project, 13)
        assert revetl(project, "sync", "people", env=env).returncode == 0
        (swing,) = server.slack()
        assert swing["text"] == (":red_circle: FAILING: audience people (sync people) went from 10 to 13 members "
                                 "(+30.0%; more than 20%)")
        assert revetl(project, "sync", "people", env=env).returncode == 0
        assert server.slack()[-1]["text"].startswith(":large_green_circle: Recovered: audience people (sync people) "
                                                     "went from 13 to 13 members")

        members(project, 3)
        refused = revetl(project, "sync", "people", env=env)
        assert refused.returncode == 1 and "refused" in refused.stderr
        (alert,) = [d.json for d in server.hooks()]
        assert alert["summary"] == "sync people was refused by the guard" and alert["run_id"]
        assert "would remove 10 of 13 members" in alert["reason"]
        assert server.slack()[-1]["text"].startswith(":red_circle: FAILING: audience people (sync people) went from "
                                                     "13 to 3 members")


def test_alerts_test_reaches_every_channel_and_alerts_list_shows_what_each_was_told(project, tmp_path):
    members(project, 10)
    cert, key = self_signed(tmp_path)
    with running("braze", {"api_key": KEY}) as url, receiver() as server, \
            mailbox(login=SMTP_LOGIN, certificate=(cert, key)) as mail:
        sync_file(project, url)
        alerts_file(project, [{"when": "sync_failed", "channels": ["hook"]}], smtp_port=mail.port)
        env = channel_env(server, cert)
        tested = revetl(project, "alerts", "test", env=env)
        assert tested.returncode == 0, tested.stderr
        assert tested.stdout.splitlines() == [f"channel {name}: test message sent" for name in ("hook", "mail", "slack")]
        assert server.slack()[0]["text"] == ":bell: Test: revetl can send alerts to channel slack"
        assert server.hooks()[0].signature_valid and server.hooks()[0].json["state"] == "test"
        assert mail.messages[0]["Subject"] == "[revetl] Test: revetl can send alerts to channel mail"

        server.mode = "down"
        down = revetl(project, "alerts", "test", "hook", env=env)
        assert down.returncode == 1
        assert "error: channel hook: the webhook answered 500: internal error" in down.stderr
        unknown = revetl(project, "alerts", "test", "pager", env=env)
        assert unknown.returncode == 1 and "no alert channel named 'pager' (known: hook, mail, slack)" in unknown.stderr

        server.mode = "ok"
        assert "no alert sent yet" in revetl(project, "alerts", "list", env=env).stdout
        assert revetl(project, "sync", "people", key=WRONG, env=env).returncode == 1
        listed = revetl(project, "alerts", "list", env=env)
        assert listed.returncode == 0
        assert re.search(r"sync_failed\s+│ people\s+│ hook\s+│ failing\s+│", listed.stdout), listed.stdout
        assert "sync people failed" in listed.stdout


def test_a_sync_that_cannot_reach_its_warehouse_still_alerts_and_recovers_once_it_can(
        project, request, monkeypatch, postgres_cluster):
    project = on_target(project, "postgres", request, monkeypatch)
    members(project, 10)
    with running("braze", {"api_key": KEY}) as url, receiver() as server:
        sync_file(project, url)
        alerts_file(project, [{"when": "sync_failed", "channels": ["hook"]}])
        env = channel_env(server)
        assert revetl(project, "sync", "people", env=env).returncode == 0
        fallback = Path(os.environ["REVETL_WORK_DIR"]) / "alerts.json"

        down = {**env, "PGPORT": "1"}  # nothing listens there: the warehouse is down
        failed = revetl(project, "sync", "people", env=down)
        assert failed.returncode == 1
        (alert,) = [d.json for d in server.hooks()]
        assert alert["summary"] == "sync people could not start" and alert["run_id"] is None
        assert "warning: the warehouse could not be reached for the alert states" in failed.stderr
        assert fallback.is_file()
        assert revetl(project, "sync", "people", env=down).returncode == 1
        assert len(server.hooks()) == 1  # the file remembers the channel was told

        assert revetl(project, "sync", "people", env=env).returncode == 0
        assert [d.json["state"] for d in server.hooks()] == ["failing", "recovered"]
        assert not fallback.exists()  # its states moved into the warehouse
        listed = revetl(project, "alerts", "list", env=env)
        assert re.search(r"sync_failed\s+│ people\s+│ hook\s+│ recovered", listed.stdout), listed.stdout
