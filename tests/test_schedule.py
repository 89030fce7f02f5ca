"""`revetl schedule run | list | crontab` as cron runs them: real syncs against the Braze emulator, in child
processes, the clock decided by the hidden `--now` (the scheduler's only: the syncs run now)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from wh import TARGETS, audience_project, on_target, query, replace_table

from revetl.config import Project
from revetl.emulators import running
from revetl.sync.lock import sync_lock, sync_locked

KEY = "schedule-test-braze-key"
AUDIENCE = """-- description: people
-- key: user_id

select user_id, email from {{ ref('members') }}
"""


def members_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str,
                    request: pytest.FixtureRequest) -> Project:
    monkeypatch.setenv("BRAZE_API_KEY", KEY)
    project = audience_project(tmp_path, monkeypatch, {"people": AUDIENCE}, tables=("members",))
    project = on_target(project, target, request, monkeypatch)
    replace_table(project, "members", """
        select 'u' || i as user_id, 'p' || i || '@example.com' as email from generate_series(1, 20) as t(i)""")
    return project


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Project:
    return members_project(tmp_path, monkeypatch, "duckdb", request)


@pytest.fixture(params=TARGETS)
def any_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Project:
    """On DuckDB and on PostgreSQL (whose locks are advisory locks in the database)."""
    return members_project(tmp_path, monkeypatch, request.param, request)


def sync_file(project: Project, name: str, url: str, **keys) -> Path:
    raw = {
        "audience": "people",
        "destination": {"type": "braze", "base_url": url, "api_key": "${BRAZE_API_KEY}"},
        "identity": {"from": "user_id", "to": "external_id"},
        "fields": {"email": "email"},
        "membership": {"attribute": f"in_{name}"},
        **keys,
    }
    path = project.syncs_dir / f"{name}.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def settings(project: Project, **blocks) -> None:
    (project.root / "revetl.yml").write_text(yaml.safe_dump(blocks))


def revetl(project: Project, *args: str, now: str | None = None) -> subprocess.CompletedProcess:
    when = ["--now", now] if now else []
    return subprocess.run(
        [sys.executable, "-m", "revetl", "--project-dir", str(project.root), "schedule", *args, *when],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "250"}, timeout=300,
    )


def decisions(project: Project) -> list[tuple[str, str, str, str | None]]:
    """(job, window HH:MM, status, message) of every decision, in window order."""
    rows = query(project, """select kind, name, window_at, status, message from revetl_state.schedule_runs
                             order by window_at, kind, name""")
    return [(name if kind == "sync" else "build", f"{window.astimezone(dt.timezone.utc):%H:%M}", status, message)
            for kind, name, window, status, message in rows]


def sync_runs(project: Project, sync: str) -> list[tuple[dt.datetime, dt.datetime, str]]:
    return query(project, f"""select started_at, finished_at, status from revetl_state.runs
                              where sync = '{sync}' order by started_at""")


@pytest.mark.slow
def test_runs_what_fell_due_since_its_last_run_and_nothing_else(any_project):
    project = any_project
    with running("braze", {"api_key": KEY}) as url:
        sync_file(project, "hourly", url, schedule="0 * * * *")
        sync_file(project, "half", url, schedule="30 * * * *")
        sync_file(project, "manual", url)  # no schedule: never run by the scheduler
        first = revetl(project, "run", now="2026-01-05T10:05:00Z")  # never ran: both due at once
        assert first.returncode == 0, first.stdout + first.stderr
        assert "sync hourly: succeeded" in first.stdout and "sync half: succeeded" in first.stdout
        quiet = revetl(project, "run", now="2026-01-05T10:20:00Z")
        assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")  # nothing due: not a word (cron mail)
        later = revetl(project, "run", now="2026-01-05T10:31:00Z")
        assert later.returncode == 0, later.stdout + later.stderr
        assert "sync half: succeeded" in later.stdout and "sync hourly" not in later.stdout
        listed = revetl(project, "list", now="2026-01-05T10:40:00Z")
    assert decisions(project) == [("half", "09:30", "succeeded", None), ("hourly", "10:00", "succeeded", None),
                                  ("half", "10:30", "succeeded", None)]
    assert [len(sync_runs(project, name)) for name in ("hourly", "half", "manual")] == [1, 2, 0]
    assert listed.returncode == 0, listed.stderr
    hourly = next(line for line in listed.stdout.splitlines() if "sync hourly" in line)
    assert "0 * * * *" in hourly and "2026-01-05 11:00 UTC" in hourly and "succeeded" in hourly
    assert "not scheduled" in next(line for line in listed.stdout.splitlines() if "sync manual" in line)
    run_id = sync_runs(project, "half") and query(project, "select run_id from revetl_state.runs "
                                                           "where sync = 'half' order by started_at desc limit 1")[0][0]
    assert run_id in later.stdout  # the summary names the sync's own run


@pytest.mark.slow
def test_several_missed_windows_give_one_run(project):
    with running("braze", {"api_key": KEY}) as url:
        sync_file(project, "people", url, schedule="*/10 * * * *")
        assert revetl(project, "run", now="2026-01-05T10:00:00Z").returncode == 0
        caught_up = revetl(project, "run", now="2026-01-05T10:55:00Z")  # 10:10 ... 10:50 missed
        assert caught_up.returncode == 0, caught_up.stdout + caught_up.stderr
        again = revetl(project, "run", now="2026-01-05T10:57:00Z")
    assert again.stdout == ""
    assert decisions(project) == [("people", "10:00", "succeeded", None), ("people", "10:50", "succeeded", None)]
    assert len(sync_runs(project, "people")) == 2


@pytest.mark.slow
def test_no_more_jobs_run_at_once_than_the_parallel_limit(project):
    settings(project, schedule={"parallel": 2})
    # each sync sends for 4 s at least: two started together overlap, however slowly a loaded machine starts them
    with running("braze", {"api_key": KEY, "latency_ms": 4000}) as url:
        for name in ("a", "b", "c"):
            sync_file(project, name, url, schedule="* * * * *")
        tick = revetl(project, "run", now="2026-01-05T10:00:00Z")
    assert tick.returncode == 0, tick.stdout + tick.stderr
    spans = [run[:2] for name in ("a", "b", "c") for run in sync_runs(project, name)]
    assert len(spans) == 3
    at_once = max(sum(start <= moment < end for start, end in spans) for moment, _ in spans)
    assert at_once == 2  # two ran together, never three


@pytest.mark.slow
def test_a_run_still_going_when_it_falls_due_again_is_skipped_not_stacked(any_project):
    project = any_project
    # the 10:00 run sends for 15 s: long enough for the 11:00 tick to start and decide on a loaded machine
    with running("braze", {"api_key": KEY, "latency_ms": 15000}) as url:
        sync_file(project, "people", url, schedule="0 * * * *")
        first = subprocess.Popen(
            [sys.executable, "-m", "revetl", "--project-dir", str(project.root), "schedule", "run",
             "--now", "2026-01-05T10:00:00Z"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while not sync_locked(project, "people"):  # the 10:00 run is sending
            assert first.poll() is None and time.monotonic() < deadline, first.stdout.read() if first.stdout else ""
            time.sleep(0.1)
        overlapping = revetl(project, "run", now="2026-01-05T11:00:00Z")
        output, _ = first.communicate(timeout=180)
        assert first.returncode == 0, output
        assert revetl(project, "run", now="2026-01-05T11:30:00Z").stdout == ""  # 11:00 was answered: skipped
        next_hour = revetl(project, "run", now="2026-01-05T12:00:00Z")
    assert overlapping.returncode == 0, overlapping.stdout + overlapping.stderr  # a skip is not a failure
    assert "skipped" in overlapping.stdout and "still going" in overlapping.stdout
    assert next_hour.returncode == 0, next_hour.stdout + next_hour.stderr
    assert [row[:3] for row in decisions(project)] == [
        ("people", "10:00", "succeeded"), ("people", "11:00", "skipped"), ("people", "12:00", "succeeded")]
    assert "the run for 2026-01-05 10:00 UTC is still going" in decisions(project)[1][3]
    assert len(sync_runs(project, "people")) == 2


def test_a_sync_run_by_hand_is_not_started_again(project):
    sync_file(project, "people", "http://127.0.0.1:9", schedule="0 * * * *")
    with sync_lock(project, "people"):  # as if `revetl sync people` were running
        tick = revetl(project, "run", now="2026-01-05T10:00:00Z")
    assert tick.returncode == 0, tick.stdout + tick.stderr
    assert decisions(project) == [
        ("people", "10:00", "skipped", "skipped: sync people is already running (outside the scheduler)")]
    assert sync_runs(project, "people") == []


def test_a_failed_build_stops_the_syncs_after_it_and_exits_non_zero(project):
    with running("braze", {"api_key": KEY}) as url:
        sync_file(project, "after", url, schedule="0 * * * *", after="build")
        sync_file(project, "alone", url, schedule="0 * * * *")
        tick = revetl(project, "run", now="2026-01-05T10:00:00Z")  # no events landed: the build fails
        memberships = {name for user in _users(url) for name in user["attributes"] if name.startswith("in_")}
    assert tick.returncode == 1, tick.stdout + tick.stderr
    assert "build: failed" in tick.stdout and "no events have landed" in tick.stdout
    assert decisions(project) == [  # the build first (kind, then name)
        ("build", "10:00", "failed", _one(decisions(project), "build")),
        ("after", "10:00", "skipped", "not run: the build failed"),
        ("alone", "10:00", "succeeded", None),
    ]
    assert "no events have landed" in _one(decisions(project), "build")
    assert sync_runs(project, "after") == [] and len(sync_runs(project, "alone")) == 1
    assert memberships == {"in_alone"}  # the independent sync's members only


def _users(url: str) -> list[dict]:
    import httpx

    return httpx.get(f"{url}/_emulator/users").json()["users"]


def _one(rows: list[tuple], job: str) -> str | None:
    return next(message for name, _, _, message in rows if name == job)


def test_a_bad_cron_expression_is_one_sentence_with_file_and_line(project):
    with running("braze", {"api_key": KEY}) as url:
        bad = sync_file(project, "bad", url, schedule="61 * * * *")
        sync_file(project, "good", url, schedule="0 * * * *")
        tick = revetl(project, "run", now="2026-01-05T10:00:00Z")
        listed = revetl(project, "list")
    line = bad.read_text().splitlines().index("schedule: 61 * * * *") + 1
    sentence = f"error: {bad}, line {line}: `schedule` '61 * * * *' is not a cron expression"
    assert tick.returncode == 1 and sentence in tick.stderr and "Traceback" not in tick.stderr
    assert "sync good: succeeded" in tick.stdout  # one bad file does not stop the others
    assert listed.returncode == 1 and sentence in listed.stderr
    settings(project, build={"schedule": "0 0 31 2 *"})
    refused = revetl(project, "run")
    assert refused.returncode == 1
    assert f"error: {project.root / 'revetl.yml'}, line 2: `build.schedule`" in refused.stderr
    assert "no date ever matches it" in refused.stderr


def test_a_decision_left_running_by_a_dead_scheduler_is_closed_as_failed(project):
    from revetl.schedule import ledger
    from revetl.sync.migrations import migrate
    from revetl.warehouse.connection import connect

    sync_file(project, "people", "http://127.0.0.1:9", schedule="0 * * * *")
    at = dt.datetime(2026, 1, 5, 10, tzinfo=dt.timezone.utc)
    with connect(project) as warehouse:  # what a scheduler SIGKILLed mid-run leaves
        migrate(warehouse)
        ledger.insert(warehouse, [ledger.Record("sync", "people", at, "running", at, pid=999999, host="gone")])
    listed = revetl(project, "list", now="2026-01-05T10:30:00Z")
    assert "interrupted" in listed.stdout
    tick = revetl(project, "run", now="2026-01-05T11:00:00Z")
    assert tick.returncode == 1  # the 11:00 run fails too: nothing listens on port 9
    assert decisions(project)[0] == ("people", "10:00", "failed", "interrupted: the scheduler running it "
                                     "(pid 999999 on gone) stopped before it ended")
    assert decisions(project)[1][:3] == ("people", "11:00", "failed")


def test_crontab_prints_a_line_per_job_and_the_one_line_alternative(project):
    settings(project, schedule={"timezone": "Europe/Berlin"}, build={"schedule": "5 * * * *"})
    sync_file(project, "people", "http://127.0.0.1:9", schedule="*/15 * * * *", after="build")
    sync_file(project, "follower", "http://127.0.0.1:9", after="build")
    printed = subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(project.root), "schedule",
                              "crontab"], capture_output=True, text=True, check=True).stdout.splitlines()
    revetl_ = f"{Path(sys.executable).with_name('revetl')} --project-dir {project.root}"
    assert f"# * * * * * {revetl_} schedule run" in printed
    assert "CRON_TZ=Europe/Berlin" in printed
    assert f"5 * * * * {revetl_} build && {revetl_} sync follower" in printed
    assert f"*/15 * * * * {revetl_} build && {revetl_} sync people" in printed
    active = [line for line in printed if line and not line.startswith("#")]
    assert len(active) == 3
