"""The Slack digest through the real CLI, against `revetl emulate slack` at Slack's own limit of one message
a second: the first sync posts one digest per batch without a single 429, a second run posts nothing, people
who left are named, a revoked webhook stops the run in one sentence that never shows the URL's token, and
`revetl audiences check` names a Slack setting's line."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from hook_helpers import emulator_process

from revetl.config import Project
from revetl.testing import contract_project, people, set_members
from revetl.warehouse.connection import connect

pytestmark = pytest.mark.slow

TOKEN = "cliSlackWebhookToken0123"
SYNC = """\
audience: contract
destination:
  type: slack
  webhook_url: ${SLACK_URL}/services/T00000000/B00000000/${SLACK_TOKEN}
  title: Churn risk
  display: name
  batch_size: 100
identity: {from: user_id, to: channel}
fields: {name: first_name}
"""


def emulator() -> contextlib.AbstractContextManager[str]:
    return emulator_process("slack", {"SLACK_WEBHOOK_TOKEN": TOKEN})


def revetl(project: Project, url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "revetl", "--project-dir", str(project.root), *args]
    environ = {**os.environ, "COLUMNS": "200", "SLACK_URL": url, "SLACK_TOKEN": TOKEN, **env}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=environ)


def messages(url: str) -> list[dict]:
    return httpx.get(f"{url}/_emulator/messages", timeout=5).json()["messages"]


def sections(message: dict) -> list[str]:
    return [block["text"]["text"] for block in message["blocks"] if block["type"] == "section"]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = contract_project(tmp_path)
    (project.syncs_dir / "digest.yml").write_text(SYNC)
    return project


def test_a_digest_sync_at_slacks_rate_names_who_entered_and_left(project: Project):
    set_members(project, people(250))
    with emulator() as url:
        started = time.monotonic()
        first = revetl(project, url, "sync", "digest")
        assert first.returncode == 0, first.stdout + first.stderr
        posted = messages(url)
        assert [m["text"] for m in posted] == ["Churn risk: +100 / -0", "Churn risk: +100 / -0", "Churn risk: +50 / -0"]
        # Sent 1.1 s apart, held up front: the first and the last arrive 2.2 s apart, give or take the jitter of
        # a loaded machine (which can put two arrivals in one second: such a 429 is waited out, at most one).
        assert float(posted[2]["ts"]) - float(posted[0]["ts"]) >= 1.8 and time.monotonic() - started >= 2.2
        stats = httpx.get(f"{url}/_emulator/stats", timeout=5).json()
        assert stats["faults_injected"]["rate_limited"] <= 1
        assert stats["requests_total"] - stats["faults_injected"]["rate_limited"] == 3
        entered = sections(posted[0])[0].split("\n")
        assert entered[0] == "*Entered (100)*" and len(entered) == 1 + 20 + 1 and entered[-1] == "…and 80 more"
        assert all(line.startswith("• Person ") for line in entered[1:-1])

        again = revetl(project, url, "sync", "digest")
        assert again.returncode == 0 and len(messages(url)) == 3

        set_members(project, people(247))
        left = revetl(project, url, "sync", "digest")
        assert left.returncode == 0, left.stdout + left.stderr
        last = messages(url)[-1]
        assert last["text"] == "Churn risk: +0 / -3"
        assert sections(last) == ["*Left (3)*\n• Person 247\n• Person 248\n• Person 249"]

        set_members(project, people(248))
        revoked = revetl(project, url, "sync", "digest", SLACK_TOKEN="revokedSlackToken9999")
    assert revoked.returncode == 1 and "Traceback" not in revoked.stderr
    assert "answered 403" in revoked.stderr and "invalid_token" in revoked.stderr
    with contextlib.closing(connect(project, read_only=True)) as connection:
        stored = [str(row) for table in ("runs", "failures")
                  for row in connection.execute(f"select * from revetl_state.{table}").fetchall()]
    for text in [first.stdout + first.stderr, revoked.stdout + revoked.stderr, *stored]:
        assert TOKEN not in text and "revokedSlackToken9999" not in text


def test_check_reports_a_slack_setting_with_its_line(project: Project):
    (project.syncs_dir / "digest.yml").write_text(SYNC.replace("batch_size: 100", "max_names: many"))
    run = revetl(project, "http://127.0.0.1:9", "audiences", "check")
    assert run.returncode == 1
    assert "syncs/digest.yml:7: `destination.max_names` input should be a valid integer" in run.stdout, run.stdout
    assert TOKEN not in run.stdout
