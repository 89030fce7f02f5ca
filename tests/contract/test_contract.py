"""The contract every destination passes (STYLE 9), through real sockets against its emulator.

Idempotent upsert, remove, retries through 5xx / 429 storms / dropped connections / lost
responses / timeouts, fatal and secret-free on bad credentials, partial rejects that succeed once
fixed, and resume after a SIGKILL at exact points without resending acknowledged rows.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import httpx
import pytest
import yaml
from cases import CASES, Case
from wh import audience_project

from revetl.sync import state
from revetl.sync.apply import acknowledged_rows, run_sync
from revetl.config import Project, load_sync
from revetl.emulators import running
from revetl.errors import FatalDestinationError
from revetl.warehouse.connection import connect

pytestmark = pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])

AUDIENCE = """-- description: people the contract suite syncs
-- key: user_id

select user_id, email, name, plan from {{ ref('contract_members') }}
"""


def people(n: int, start: int = 0, plan: str = "pro") -> list[tuple]:
    return [(f"user-{i:04d}", f"person{i}@example.com", f"Person {i}", plan) for i in range(start, start + n)]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A minimal project: the repo's dbt settings, one audience over a plain warehouse table."""
    project = audience_project(tmp_path, monkeypatch, {"contract": AUDIENCE}, tables=("contract_members",))
    set_members(project, people(30))
    return project


def set_members(project: Project, rows: list[tuple]) -> None:
    connection = connect(project)
    try:
        connection.execute(
            "create or replace table contract_members (user_id varchar, email varchar, name varchar, plan varchar)"
        )
        if rows:
            connection.executemany("insert into contract_members values (?, ?, ?, ?)", rows)
    finally:
        connection.close()


def write_sync(project: Project, case: Case, url: str, monkeypatch, env: dict | None = None, **destination):
    for name, value in (env or case.env).items():
        monkeypatch.setenv(name, value)
    raw = {
        "audience": "contract",
        "destination": {**case.destination(url), **destination},
        "identity": {"from": "user_id", "to": case.identity_to},
        "fields": case.fields,
        "membership": case.membership,
    }
    (project.syncs_dir / "contract.yml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_sync(project, "contract")


def expected(rows: list[tuple], case: Case) -> dict[str, dict]:
    columns = {"email": 1, "name": 2, "plan": 3}
    return {r[0]: {dest: r[columns[col]] for col, dest in case.fields.items()} for r in rows}


def acknowledged(project: Project) -> list[str]:
    """Keys the destination acknowledged: folded into the state, or still in a killed run's journal."""
    return [row[0] for row in acknowledged_rows(project, "contract")]


def test_upsert_is_idempotent(case, project, monkeypatch):
    with running(case.emulator, {"seed": 1, **case.emulator_options}) as url:
        sync = write_sync(project, case, url, monkeypatch)
        first = run_sync(project, sync)
        assert first.ok and first.acked["add"] == 30
        assert case.members(url) == expected(people(30), case)
        again = run_sync(project, sync)
        assert again.ok and again.plan.total == 0 and again.requests == 0
        # A full resync sends everything again: the destination ends the same, nothing doubled.
        connection = connect(project)
        state.reset(connection, "contract")
        connection.close()
        resync = run_sync(project, sync)
        assert resync.ok and resync.acked["add"] == 30
        assert case.members(url) == expected(people(30), case)
        assert sorted(acknowledged(project)) == sorted(expected(people(30), case))


def test_removes_and_changes_reach_the_destination(case, project, monkeypatch):
    with running(case.emulator, {"seed": 2, **case.emulator_options}) as url:
        sync = write_sync(project, case, url, monkeypatch)
        assert run_sync(project, sync).ok
        now = people(20) + people(5, start=100) + people(5, start=20, plan="enterprise")
        set_members(project, now)
        result = run_sync(project, sync)
        assert result.ok
        assert (result.acked["add"], result.acked["change"], result.acked["remove"]) == (5, 5, 5)
        assert case.members(url) == expected(now, case)


def test_faults_are_retried_until_the_destination_equals_the_audience(case, project, monkeypatch):
    faults = {"error_share": 0.2, "drop_share": 0.05, "lost_response_share": 0.05, "timeout_share": 0.03,
              "rate_limit_burst": 5}
    set_members(project, people(400))
    with running(case.emulator, {"seed": 3, **faults, **case.emulator_options, "record_requests": 0}) as url:
        # A third of the requests fail: with the default 8 tries one request in 7,000 fails them all, which over
        # Intercom's ~1,000 requests stopped one run in ten. 16 tries: one in 50 million.
        sync = write_sync(project, case, url, monkeypatch, timeout=0.5, attempts=16)
        result = run_sync(project, sync)
        assert result.ok, result.message
        assert result.retries > 0
        assert case.members(url) == expected(people(400), case)
    keys = acknowledged(project)
    assert len(keys) == len(set(keys)) == 400  # each row acknowledged exactly once


def test_429_storm_is_waited_out(case, project, monkeypatch):
    with running(case.emulator, {"seed": 4, "rate_limit": 5, "rate_window": 1, **case.emulator_options}) as url:
        # The client believes the published limit; the server allows 5 a second: it must follow 429s.
        sync = write_sync(project, case, url, monkeypatch, concurrency=4)
        result = run_sync(project, sync)
        assert result.ok, result.message
        assert case.members(url) == expected(people(30), case)


def test_bad_credentials_stop_at_once_and_leak_nothing(case, project, monkeypatch, capfd):
    with running(case.emulator, {"seed": 5, **case.emulator_options}) as url:
        sync = write_sync(project, case, url, monkeypatch, env=case.bad_env)
        started = time.monotonic()
        with pytest.raises(FatalDestinationError) as caught:
            run_sync(project, sync)
        assert time.monotonic() - started < 5
        stats = httpx.get(f"{url}/_emulator/stats").json()
        # One request finds the credential bad (two where a token is fetched first): no retries, and the
        # other workers never start.
        assert stats["requests_total"] <= 2
    secrets = [v for v in {**case.env, **case.bad_env}.values()]
    connection = connect(project, read_only=True)
    try:
        stored = connection.execute(
            "select coalesce(string_agg(message, ' '), '') from revetl_state.runs"
        ).fetchone()[0] + " ".join(str(r) for r in connection.execute("select * from revetl_state.failures").fetchall())
        run = state.runs(connection, "contract")[0]
    finally:
        connection.close()
    assert run.status == "failed" and case.fatal_text in run.message
    out, err = capfd.readouterr()
    for text in (str(caught.value), stored, out, err):
        assert not any(secret in text for secret in secrets)


def test_rejected_rows_are_recorded_then_succeed_once_fixed(case, project, monkeypatch):
    rows = people(30)
    broken = [(k, case.reject_email if i % 10 == 3 else e, n, p) for i, (k, e, n, p) in enumerate(rows)]
    set_members(project, broken)
    with running(case.emulator, {"seed": 6, **case.emulator_options}) as url:
        sync = write_sync(project, case, url, monkeypatch)
        result = run_sync(project, sync)
        assert not result.ok and result.failed == 3 and result.acked["add"] == 27
        connection = connect(project, read_only=True)
        rejected = state.failures(connection, "contract")
        connection.close()
        assert sorted(r[1] for r in rejected) == ["user-0003", "user-0013", "user-0023"]
        assert all(r[3] for r in rejected)  # the destination's reason
        set_members(project, rows)
        fixed = run_sync(project, sync)
        assert fixed.ok and fixed.acked["add"] == 3 and fixed.plan.total == 3
        assert case.members(url) == expected(rows, case)


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", [1, 4])
def test_sigkill_after_a_batch_was_applied_resumes_without_resending(case, project, monkeypatch, kill_at):
    total = max(600, 6 * case.batch_size)  # the second kill point still falls mid-run
    set_members(project, people(total))
    with running(case.emulator, {"seed": 7, "record_requests": 20_000, **case.emulator_options}) as url:
        write_sync(project, case, url, monkeypatch, concurrency=2)
        command = [sys.executable, "-m", "revetl", "--project-dir", str(project.root), "sync", "contract"]
        env = {**os.environ, "REVETL_FAILPOINT": f"after_send:{kill_at}"}
        crashed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        acked_before = set(acknowledged(project))
        assert len(acked_before) < total
        seen = len(httpx.get(f"{url}/_emulator/requests", params={"limit": 20_000}).json()["requests"])
        resumed = subprocess.run(command, env=dict(os.environ), capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        log = httpx.get(f"{url}/_emulator/requests", params={"limit": 20_000}).json()["requests"]
        resent = set().union(*(case.sent_keys(r) for r in log[seen:])) if log[seen:] else set()
        assert not resent & acked_before  # nothing acknowledged before the kill was sent again
        assert case.members(url) == expected(people(total), case)
    keys = acknowledged(project)
    assert len(keys) == len(set(keys)) == total
    connection = duckdb.connect(str(project.root.parent / "warehouse.duckdb"), read_only=True)
    statuses = [r[0] for r in connection.execute("select status from revetl_state.runs order by started_at").fetchall()]
    connection.close()
    assert statuses == ["crashed", "succeeded"]
