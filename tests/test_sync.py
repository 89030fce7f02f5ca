"""`revetl sync`, `runs`, `failures`, `state reset` as a user runs them: lock, guard, exit codes; on DuckDB and
on PostgreSQL (`--target postgres` through REVETL_TARGET), the same tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from wh import TARGETS, audience_project, on_target, replace_table

from revetl.sync.lock import sync_lock
from revetl.config import Project
from revetl.emulators import running
from revetl.warehouse.connection import connect

KEY = "sync-test-braze-key"
AUDIENCE = """-- description: people
-- key: user_id

select user_id, email, plan from {{ ref('members') }}
"""


@pytest.fixture(params=TARGETS)
def project(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("BRAZE_API_KEY", KEY)
    project = audience_project(tmp_path, monkeypatch, {"people": AUDIENCE}, tables=("members",))
    return on_target(project, request.param, request, monkeypatch)


def members(project: Project, n: int, bad: int = 0) -> None:
    replace_table(project, "members", """
        select 'u' || i as user_id, case when i < ? then 'broken' else 'p' || i || '@example.com' end as email,
               'pro' as plan
        from generate_series(0, ? - 1) as t(i)""", [bad, n])


def sync_file(project: Project, url: str) -> None:
    raw = {
        "audience": "people",
        "destination": {"type": "braze", "base_url": url, "api_key": "${BRAZE_API_KEY}"},
        "identity": {"from": "user_id", "to": "external_id"},
        "fields": {"email": "email", "plan": "plan"},
        "membership": {"attribute": "in_people"},
    }
    (project.syncs_dir / "people.yml").write_text(yaml.safe_dump(raw))


def revetl(project: Project, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "revetl", "--project-dir", str(project.root), *args],
        capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120,
    )


@pytest.mark.slow
def test_sync_runs_and_failures_from_the_command_line(project):
    members(project, 200, bad=2)
    with running("braze", {"api_key": KEY}) as url:
        sync_file(project, url)
        plan = revetl(project, "plan", "people", "--json")
        assert plan.returncode == 0 and json.loads(plan.stdout)["adds"] == 200
        first = revetl(project, "sync", "people")
        assert first.returncode == 1  # two rows rejected
        assert "198/200" in first.stdout and "2 rows rejected by braze" in first.stdout
        failures = revetl(project, "failures", "people")
        assert "u0" in failures.stdout and "not a valid email" in failures.stdout
        members(project, 200)
        second = revetl(project, "--project-dir", str(project.root), "sync", "--all")
        assert second.returncode == 0, second.stdout + second.stderr
        assert "2/2" in second.stdout
        runs = revetl(project, "runs", "people")
        assert runs.stdout.count("│ succeeded ") == 1 and runs.stdout.count("│ failed ") == 1
        # several syncs planned by one process: a table each, or one JSON object by name
        (project.syncs_dir / "again.yml").write_text((project.syncs_dir / "people.yml").read_text())
        shown = revetl(project, "plan", "people", "again")
        assert shown.returncode == 0 and "plan for sync people " in shown.stdout and "plan for sync again " in shown.stdout
        every = revetl(project, "plan", "--all", "--json")
        assert every.returncode == 0, every.stderr
        assert {name: p["adds"] for name, p in json.loads(every.stdout).items()} == {"again": 200, "people": 0}
        nothing = revetl(project, "plan")
        assert nothing.returncode == 2 and "name at least one sync, or use --all" in nothing.stderr
    assert KEY not in first.stdout + first.stderr + failures.stdout + runs.stdout


@pytest.mark.slow
def test_a_second_run_of_the_same_sync_exits_at_once(project):
    members(project, 10)
    with running("braze", {"api_key": KEY}) as url:
        sync_file(project, url)
        with sync_lock(project, "people"):  # as if a run were in progress
            blocked = revetl(project, "sync", "people")
        assert blocked.returncode == 1
        assert "sync people is already running" in blocked.stderr
        assert revetl(project, "sync", "people").returncode == 0  # the lock went with its holder


@pytest.mark.slow
def test_the_guard_refuses_mass_removes_unless_forced(project):
    members(project, 10)
    with running("braze", {"api_key": KEY}) as url:
        sync_file(project, url)
        assert revetl(project, "sync", "people").returncode == 0
        members(project, 3)
        refused = revetl(project, "sync", "people")
        assert refused.returncode == 1
        assert "refused: it would remove 7 of 10 members" in refused.stderr
        forced = revetl(project, "sync", "people", "--force")
        assert forced.returncode == 0, forced.stdout + forced.stderr
        assert "7/7" in forced.stdout


@pytest.mark.slow
def test_state_reset_needs_confirmation_and_resyncs_everything(project):
    members(project, 10)
    with running("braze", {"api_key": KEY}) as url:
        sync_file(project, url)
        assert revetl(project, "sync", "people").returncode == 0
        declined = subprocess.run(
            [sys.executable, "-m", "revetl", "--project-dir", str(project.root), "state", "reset", "people"],
            input="n\n", capture_output=True, text=True,
        )
        assert declined.returncode == 1
        assert '"adds": 0' in revetl(project, "plan", "people", "--json").stdout
        reset = revetl(project, "state", "reset", "people", "--yes")
        assert "forgot 10 acknowledged rows" in reset.stdout
        assert '"adds": 10' in revetl(project, "plan", "people", "--json").stdout


ENGINE_ERROR = {"duckdb": "Conversion Error", "postgres": "invalid input syntax for type integer"}


@pytest.mark.slow
def test_an_audience_that_fails_on_some_rows_is_named_in_one_sentence(project):
    """A bad cast only some rows hit passes `audiences check` (it is valid SQL) and fails when it runs."""
    replace_table(project, "members", """
        select 'u' || i as user_id, case when i = 7 then 'seven' else cast(i as varchar) end as seats, 'pro' as plan
        from generate_series(0, 99) as t(i)""")
    (project.audiences_dir / "people.sql").write_text(
        "-- description: people\n-- key: user_id\n\n"
        "select user_id, cast(seats as integer) as email, plan from {{ ref('members') }}\n"
    )
    with running("braze", {"api_key": KEY}) as url:
        sync_file(project, url)
        assert revetl(project, "audiences", "check").returncode == 0
        for command in (("plan", "people"), ("sync", "people")):
            run = revetl(project, *command)
            assert run.returncode == 1 and "Traceback" not in run.stdout + run.stderr
            errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
            assert len(errors) == 1, run.stderr
            assert "audience people failed in the warehouse while planning sync people: " in errors[0]
            assert ENGINE_ERROR[project.target or "duckdb"] in errors[0] and '"seven"' in errors[0].replace("'", '"')
    runs = revetl(project, "runs", "people")
    assert "│ failed " in runs.stdout and ENGINE_ERROR[project.target or "duckdb"] in runs.stdout, runs.stderr


def test_a_password_in_a_base_url_is_refused_and_never_printed(project):
    members(project, 3)
    sync_file(project, "http://admin:S3cretPassw0rd@127.0.0.1:9")
    for command in (("sync", "people"), ("audiences", "check")):
        run = revetl(project, *command)
        assert run.returncode == 1, run.stdout + run.stderr
        assert "must not hold credentials" in run.stdout + run.stderr
        assert "S3cretPassw0rd" not in run.stdout + run.stderr


def test_any_url_password_in_an_error_is_hidden():
    from revetl.errors import scrub_urls

    text = "cannot reach https://user:S3cret@crm.example.com/x and postgres://u:p%40ss@db/warehouse, nor http://a@b"
    assert scrub_urls(text) == (
        "cannot reach https://user:***@crm.example.com/x and postgres://u:***@db/warehouse, nor http://a@b"
    )


@pytest.mark.slow
def test_a_plan_made_against_older_state_is_refused(project):
    """Plan, then the state moves on (a run acknowledges rows), then apply the old plan: refused, nothing sent."""
    from revetl.audiences.compile import compile_audience, load_audience
    from revetl.config import load_sync
    from revetl.destinations import load_destination
    from revetl.errors import StateError
    from revetl.sync.apply import apply_plan, run_sync
    from revetl.sync.plan import make_plan, write_diff
    from revetl.warehouse.connection import work_dir

    def plan_to_file(name: str):
        with connect(project) as warehouse:
            return write_diff(warehouse, make_plan(warehouse, sync, sql), work_dir(project) / name)

    members(project, 10)
    with running("braze", {"api_key": KEY}) as url:
        sync_file(project, url)
        sync = load_sync(project, "people")
        sql = compile_audience(project, load_audience(project, "people"))
        stale = plan_to_file("stale.plan.parquet")
        assert stale.diff is not None and stale.diff.rows == 10
        assert run_sync(project, sync).ok  # the state moves on: the 10 members acknowledged
        members(project, 12)
        sent = httpx.get(f"{url}/_emulator/stats").json()["requests_total"]
        with pytest.raises(StateError) as caught:
            apply_plan(project, sync, load_destination(sync), stale)
        assert str(caught.value) == (
            f"sync people: its state changed since the plan was made (version {stale.state_version}, "
            f"now {stale.state_version + 1}); nothing was sent, plan again"
        )
        assert httpx.get(f"{url}/_emulator/stats").json()["requests_total"] == sent
        fresh = plan_to_file("fresh.plan.parquet")  # a plan made against the state as it is now applies
        result = apply_plan(project, sync, load_destination(sync), fresh)
        assert result.ok and result.acked["add"] == 2 and fresh.diff is not None
        assert not fresh.diff.path.exists()  # applied: its rows are in the state, the file is gone


def test_usage_errors_are_clicks_own_message_not_a_bug(project):
    """A mistyped option or a missing sync name is a usage error (exit 2, click's message), never "a revetl bug"
    (typer 0.28 carries a click of its own, whose errors the CLI's handler must know)."""
    for args, expected in ((["sync"], "name at least one sync, or use --all"),
                           (["plan", "people", "--bogus"], "No such option: --bogus")):
        run = revetl(project, *args)
        assert run.returncode == 2, run.stdout + run.stderr
        assert expected in run.stderr and "revetl bug" not in run.stderr and "Traceback" not in run.stderr
