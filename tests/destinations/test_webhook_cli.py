"""The webhook destination through the real CLI: `revetl emulate webhook` in its own process, a sync file,
`revetl sync` killed right after its first batch was applied, the resend carrying the same idempotency key
(the receiver answers it from its memory and applies it once), a second run sending nothing, a remove
sent, and neither the signing secret nor a header's value anywhere in the output or the state."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from hook_helpers import emulator_process

from revetl.config import Project
from revetl.testing import contract_project, people, set_members
from revetl.warehouse.connection import connect

pytestmark = pytest.mark.slow

SECRET = "cli-webhook-secret-0123456"
TOKEN = "cli-receiver-token-abcdef"
SYNC = """\
audience: contract
destination:
  type: webhook
  base_url: ${HOOK_URL}/webhook
  secret: ${WEBHOOK_SECRET}
  batch_size: 100
  concurrency: 1
  headers: {Authorization: "Bearer ${HOOK_TOKEN}"}
identity: {from: user_id, to: external_id}
fields: {email: email, plan: plan}
"""


def emulator() -> contextlib.AbstractContextManager[str]:
    return emulator_process("webhook", {"WEBHOOK_SECRET": SECRET})


def revetl(project: Project, url: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "revetl", "--project-dir", str(project.root), *args]
    environ = {**os.environ, "COLUMNS": "200", "HOOK_URL": url, "WEBHOOK_SECRET": SECRET, "HOOK_TOKEN": TOKEN, **env}
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=environ)


def received(url: str) -> list[dict]:
    return httpx.get(f"{url}/_emulator/requests", params={"limit": 1000}, timeout=5).json()["requests"]


@pytest.fixture
def project(tmp_path: Path) -> Project:
    project = contract_project(tmp_path)
    (project.syncs_dir / "hook.yml").write_text(SYNC)
    return project


def test_a_sync_to_a_webhook_resends_a_lost_batch_under_its_key_then_sends_only_changes(project: Project):
    set_members(project, people(250))
    with emulator() as url:
        crashed = revetl(project, url, "sync", "hook", REVETL_FAILPOINT="after_send:1")
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        [lost] = received(url)
        key = lost["headers"]["idempotency-key"]
        assert lost["headers"]["authorization"] == "[redacted]" and lost["status"] == 200

        resumed = revetl(project, url, "sync", "hook")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        log = received(url)
        assert len(log) == 4 and log[1]["headers"]["idempotency-key"] == key  # the same batch, the same key
        batches = httpx.get(f"{url}/_emulator/batches", timeout=5).json()["batches"]
        assert batches[key] == {"received": 2, "applied": 1}
        members = httpx.get(f"{url}/_emulator/members", timeout=5).json()
        assert members["count"] == 250

        again = revetl(project, url, "sync", "hook")
        assert again.returncode == 0 and len(received(url)) == 4  # nothing changed: no request at all

        set_members(project, people(240))
        removed = revetl(project, url, "sync", "hook")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        last = received(url)[-1]["body"]
        assert [r["key"] for r in last["removes"]] == [f"user-{i:04d}" for i in range(240, 250)]
        assert last["removes"][0]["fields"] == {"email": "person240@example.com", "plan": "pro"}
        assert httpx.get(f"{url}/_emulator/members", timeout=5).json()["count"] == 240

        set_members(project, people(241))
        wrong = revetl(project, url, "sync", "hook", WEBHOOK_SECRET="a-secret-the-receiver-never-saw")
        assert wrong.returncode == 1 and "answered 401 to POST /webhook: invalid signature" in wrong.stderr

    outputs = [run.stdout + run.stderr for run in (crashed, resumed, again, removed, wrong)]
    with contextlib.closing(connect(project, read_only=True)) as connection:
        stored = [str(row) for table in ("runs", "failures", "acknowledged")
                  for row in connection.execute(f"select * from revetl_state.{table}").fetchall()]
    for text in [*outputs, *stored]:
        assert SECRET not in text and TOKEN not in text and "a-secret-the-receiver-never-saw" not in text


def test_check_reports_a_webhook_setting_with_its_line(project: Project):
    (project.syncs_dir / "hook.yml").write_text(SYNC.replace("batch_size: 100", "batch_size: 0"))
    run = revetl(project, "http://127.0.0.1:9", "audiences", "check")
    assert run.returncode == 1
    assert "syncs/hook.yml:6: `destination.batch_size` input should be greater than or equal to 1" in run.stdout, \
        run.stdout
