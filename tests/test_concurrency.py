"""Cron starts several syncs and the hourly build in the same minute: on the embedded warehouse they
all succeed, and so do plans, previews and `runs` started while a sync is sending (each command holds
the DuckDB file only for short steps and waits its turn for it)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from identity_reference import wire
from wh import build, empty_project, land, query

from revetl.config import Project
from revetl.emulators import running

pytestmark = pytest.mark.slow

KEY = "concurrency-braze-key"
USERS = 1_500


def audience(name: str, plan: str) -> str:
    return f"""-- description: {plan} users
-- key: user_id

select user_id, email, plan from {{{{ ref('profiles') }}}} where plan = '{plan}'
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("BRAZE_API_KEY", KEY)
    project = empty_project(tmp_path, monkeypatch)
    land(project, [wire("identify", f"m{i}", userId=f"u{i}", traits={"email": f"u{i}@example.com",
                                                                       "plan": "pro" if i % 2 else "free"})
                   for i in range(USERS)])
    build(project)
    for name, plan in (("pro_users", "pro"), ("free_users", "free")):
        (project.audiences_dir / f"{name}.sql").write_text(audience(name, plan))
    return project


def sync_file(project: Project, name: str, url: str) -> None:
    raw = {
        "audience": name,
        "destination": {"type": "braze", "base_url": url, "api_key": "${BRAZE_API_KEY}", "concurrency": 1},
        "identity": {"from": "user_id", "to": "external_id"},
        "fields": {"email": "email", "plan": "plan"},
        "membership": {"attribute": f"in_{name}"},
    }
    (project.syncs_dir / f"{name}.yml").write_text(yaml.safe_dump(raw))


def start(project: Project, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "revetl", "--project-dir", str(project.root), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "200"})


def finish(process: subprocess.Popen) -> tuple[int, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out + err


def test_syncs_a_build_plans_and_previews_run_at_once(project):
    # A destination 40 ms away, one request in flight: each sync sends for about half a second
    # per 1,000 rows, and everything below starts while the first one is sending.
    with running("braze", {"api_key": KEY, "latency_ms": 40}) as url:
        for name in ("pro_users", "free_users"):
            sync_file(project, name, url)
        first = start(project, "sync", "pro_users")
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/_emulator/stats").json()["requests_total"] < 2:
            assert time.monotonic() < deadline and first.poll() is None, "the first sync never started sending"
            time.sleep(0.02)
        others = {
            "second sync": start(project, "sync", "free_users"),
            "build": start(project, "build"),
            "plan": start(project, "plan", "pro_users"),
            "preview": start(project, "audiences", "preview", "free_users"),
            "runs": start(project, "runs"),
        }
        outcomes = {name: finish(process) for name, process in others.items()}
        outcomes["first sync"] = finish(first)
        users = httpx.get(f"{url}/_emulator/users").json()["users"]
    for name, (code, output) in outcomes.items():
        assert code == 0, f"{name}: {output}"
        assert "Could not set lock" not in output
    assert "built" in outcomes["build"][1]
    members = {u["external_id"] for u in users if u["attributes"].get("in_pro_users") or
               u["attributes"].get("in_free_users")}
    assert len(members) == USERS
    statuses = query(project, "select sync, status from revetl_state.runs order by sync")
    assert statuses == [("free_users", "succeeded"), ("pro_users", "succeeded")]
