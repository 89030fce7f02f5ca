"""The scheduler's pieces: cron times in a time zone, what is due, the jobs read from files, the cache, and
what a minute with nothing due loads."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from wh import audience_project

from revetl.config import load_project
from revetl.schedule import cron, ledger
from revetl.schedule.jobs import Job, Jobs, load_jobs
from revetl.schedule.runner import due_jobs

UTC = dt.timezone.utc


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def test_the_latest_window_is_at_or_before_now_and_the_next_after_it():
    assert cron.latest("0 * * * *", at("2026-01-05T10:00:00Z"), "UTC") == at("2026-01-05T10:00:00Z")
    assert cron.latest("0 * * * *", at("2026-01-05T10:59:59Z"), "UTC") == at("2026-01-05T10:00:00Z")
    assert cron.following("0 * * * *", at("2026-01-05T10:00:00Z"), "UTC") == at("2026-01-05T11:00:00Z")
    assert cron.latest("*/10 * * * *", at("2026-01-05T10:55:00Z"), "UTC") == at("2026-01-05T10:50:00Z")
    assert cron.latest("0 9 * * MON-FRI", at("2026-01-04T12:00:00Z"), "UTC") == at("2026-01-02T09:00:00Z")  # a Sunday


def test_times_are_wall_clock_times_of_the_project_time_zone():
    assert cron.latest("0 9 * * *", at("2026-01-05T10:00:00Z"), "Europe/Berlin") == at("2026-01-05T08:00:00Z")
    assert cron.latest("0 9 * * *", at("2026-07-05T10:00:00Z"), "Europe/Berlin") == at("2026-07-05T07:00:00Z")
    # Spring forward (Berlin, 29 March 2026: 02:00 -> 03:00): 02:30 does not exist and runs at 03:00.
    assert cron.following("30 2 * * *", at("2026-03-28T12:00:00Z"), "Europe/Berlin") == at("2026-03-29T01:00:00Z")
    # Fall back (25 October: 03:00 -> 02:00): hourly jobs run at both 02:00s, one hour apart.
    first = cron.following("0 * * * *", at("2026-10-24T23:30:00Z"), "Europe/Berlin")
    assert first == at("2026-10-25T00:00:00Z")
    assert cron.following("0 * * * *", first, "Europe/Berlin") == at("2026-10-25T01:00:00Z")


@pytest.mark.parametrize("expression, says", [
    ("61 * * * *", "a field is out of range"),
    ("* * *", "has 3 fields, not five"),
    ("* * * * * *", "has 6 fields, not five"),  # croniter's seconds: the tick is a minute
    ("0 0 31 2 *", "no date ever matches it"),
    ("@every", "the named ones are @hourly"),
    ("", "is empty"),
])
def test_a_bad_expression_says_what_is_wrong(expression, says):
    assert says in cron.problem(expression)


@pytest.mark.parametrize("expression", ["0 * * * *", "*/15 9-17 * * MON-FRI", "@daily", "0 0 1 JAN *"])
def test_good_expressions_pass(expression):
    assert cron.problem(expression) is None


def test_a_job_is_due_when_its_window_is_newer_than_its_last_answered_one():
    jobs = Jobs([Job("sync", "a", "0 * * * *"), Job("sync", "b", "30 * * * *"), Job("sync", "f", None, True)],
                [], "UTC", "15 * * * *")
    now = at("2026-01-05T10:40:00Z")
    answered = {"sync:a": at("2026-01-05T10:00:00Z"), "sync:b": at("2026-01-05T09:30:00Z"),
                "sync:f": at("2026-01-05T10:15:00Z")}
    assert due_jobs(jobs, now, answered) == [(jobs.jobs[1], at("2026-01-05T10:30:00Z"))]
    # never answered: due at once, for the latest window only (however many were missed)
    assert due_jobs(jobs, now, {}) == [(jobs.jobs[0], at("2026-01-05T10:00:00Z")),
                                       (jobs.jobs[1], at("2026-01-05T10:30:00Z")),
                                       (jobs.jobs[2], at("2026-01-05T10:15:00Z"))]  # the build's window


def write_sync(root: Path, name: str, **keys) -> Path:
    raw = {"audience": "people", "destination": {"type": "braze", "base_url": "http://127.0.0.1:9",
                                                 "api_key": "x"}, "identity": {"from": "user_id", "to": "external_id"},
           **keys}
    path = root / "syncs" / f"{name}.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def line_of(path: Path, text: str) -> int:
    return path.read_text().splitlines().index(text) + 1


def test_jobs_come_from_the_sync_files_and_revetl_yml(tmp_path, monkeypatch):
    project = audience_project(tmp_path, monkeypatch, {})
    write_sync(project.root, "hourly", schedule="0 * * * *")
    write_sync(project.root, "manual")
    orphan = write_sync(project.root, "orphan", after="build")  # follows the build's schedule: there is none
    jobs = load_jobs(project)
    assert [job.key for job in jobs.jobs] == ["sync:hourly"]
    assert jobs.problems == [f"{orphan}, line {line_of(orphan, 'after: build')}: `after: build` without a "
                             "`schedule:` follows the build's schedule, and revetl.yml sets none; add `schedule:` "
                             "here or `build: {schedule: ...}` to revetl.yml"]
    (project.root / "revetl.yml").write_text("build:\n  schedule: '5 * * * *'\n")
    jobs = load_jobs(load_project(project.root))
    assert [(job.key, job.schedule, job.after_build) for job in jobs.jobs] == [
        ("build", "5 * * * *", False), ("sync:hourly", "0 * * * *", False), ("sync:orphan", None, True)]
    assert jobs.problems == []


def test_after_takes_only_build(tmp_path, monkeypatch):
    project = audience_project(tmp_path, monkeypatch, {})
    typo = write_sync(project.root, "typo", schedule="0 * * * *", after="biuld")
    [problem] = load_jobs(project).problems
    assert problem.startswith(f"{typo}, line {line_of(typo, 'after: biuld')}: `after` ")


def test_the_cache_is_one_per_warehouse_and_a_damaged_one_is_ignored(tmp_path, monkeypatch):
    project = audience_project(tmp_path, monkeypatch, {})
    first = ledger.cache_path(project)
    assert ledger.cache_path(project) == first
    monkeypatch.setenv("REVETL_WAREHOUSE", str(tmp_path / "other.duckdb"))
    assert ledger.cache_path(project) != first  # another warehouse: another cache
    monkeypatch.setenv("PGPASSWORD", "changed")  # a secret names no warehouse
    assert "changed" not in str(ledger.cache_path(project))
    ledger.write_cache(first, {"sync:a": at("2026-01-05T10:00:00Z")})
    assert ledger.read_cache(first) == {"sync:a": at("2026-01-05T10:00:00Z")}
    first.write_text("{not json")
    assert ledger.read_cache(first) == {}


HEAVY = {"duckdb", "pyarrow", "aiohttp", "dbt", "sqlglot", "jinja2", "httpx", "revetl.warehouse.connection"}


def test_a_minute_with_nothing_due_loads_no_warehouse_driver_arrow_or_dbt(tmp_path, monkeypatch):
    project = audience_project(tmp_path, monkeypatch, {})
    write_sync(project.root, "hourly", schedule="0 * * * *")
    ledger.write_cache(ledger.cache_path(project), {"sync:hourly": at("2026-01-05T10:00:00Z")})
    script = (
        "import sys\nfrom revetl.cli import app\n"
        f"app(['--project-dir', {str(project.root)!r}, 'schedule', 'run', '--now', '2026-01-05T10:30:00Z'],"
        " standalone_mode=False)\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert set(result.stdout.split()) & HEAVY == set()
    assert "revetl.schedule.runner" in result.stdout.split()  # it did run the tick
