"""`after: build` through the real CLI with a real dbt build: the build runs once, first, and the syncs that
follow it run only when it passed."""

from __future__ import annotations

import pytest
from test_schedule import KEY, _users, decisions, revetl, settings, sync_file
from wh import audience_project, land

from revetl.emulators import running

AUDIENCE = """-- description: people
-- key: user_id

select user_id, email from {{ ref('members') }}
"""


@pytest.mark.slow
def test_the_build_runs_first_and_the_syncs_after_it_only_when_it_passed(tmp_path, monkeypatch):
    monkeypatch.setenv("BRAZE_API_KEY", KEY)
    project = audience_project(tmp_path, monkeypatch, {"people": AUDIENCE})
    model = project.root / "models" / "members.sql"
    model.write_text("select 'u' || i as user_id, 'p' || i || '@example.com' as email from generate_series(1, 5) t(i)\n")
    land(project, [{"type": "track", "event": "Signed Up", "userId": "u1", "messageId": "m1"}])
    settings(project, build={"schedule": "0 * * * *"})
    with running("braze", {"api_key": KEY}) as url:
        sync_file(project, "follower", url, after="build")  # no schedule of its own: the build's
        sync_file(project, "own", url, schedule="30 * * * *", after="build")
        built = revetl(project, "run", now="2026-01-05T10:00:00Z")
        members = {name: sorted(user["external_id"] for user in _users(url) if user["attributes"].get(name))
                   for name in ("in_follower", "in_own")}
        model.write_text("select user_id, email from a_table_that_does_not_exist\n")
        broken = revetl(project, "run", now="2026-01-05T11:00:00Z")
    assert built.returncode == 0, built.stdout + built.stderr
    assert built.stdout.index("build: succeeded") < built.stdout.index("sync follower: succeeded")
    assert members == {name: ["u1", "u2", "u3", "u4", "u5"] for name in ("in_follower", "in_own")}  # the built rows
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert [row[:3] for row in decisions(project)] == [
        ("own", "09:30", "succeeded"),
        ("build", "10:00", "succeeded"), ("follower", "10:00", "succeeded"),  # one build for both syncs
        ("own", "10:30", "skipped"),
        ("build", "11:00", "failed"), ("follower", "11:00", "skipped"),
    ]
    assert {row[3] for row in decisions(project) if row[2] == "skipped"} == {"not run: the build failed"}
    assert "members" in next(row[3] for row in decisions(project) if row[2] == "failed")  # dbt names the model
