"""`revetl audiences test`: fixture files read with file-and-line errors, and run through the real CLI in a
throwaway DuckDB warehouse (real dbt runs): the shipped audiences' tests pass, mismatches are tables of
missing and unexpected keys with exit 1."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from wh import REPO, empty_project

from revetl.audiences.fixtures import read_fixture, select_fixtures
from revetl.audiences.trial import Outcome
from revetl.config import load_project
from revetl.errors import ConfigError

GOOD = """as_of: 2026-03-01T00:00:00Z
events:
  - {type: identify, userId: ann, timestamp: 2026-02-01T09:00:00Z, traits: {plan: pro, created_at: 2026-02-01T09:00:00Z}}
  - {type: track, userId: 42, event: Signed Up, timestamp: "2026-02-02T09:00:00+01:00"}
members: [ann, 42]
"""


def write(tmp_path: Path, text: str, name: str = "people.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_fixture_becomes_landing_rows_and_text_keys(tmp_path):
    fixture = read_fixture(write(tmp_path, GOOD))
    assert (fixture.name, fixture.audience, fixture.as_of) == ("people", "people", dt.datetime(2026, 3, 1))
    assert fixture.members == {"ann", "42"}
    identify, track = fixture.rows
    assert identify["user_id"] == "ann" and '"created_at":"2026-02-01T09:00:00Z"' in identify["traits"].replace(" ", "")
    assert track["user_id"] == "42" and track["timestamp"] == dt.datetime(2026, 2, 2, 8, tzinfo=dt.timezone.utc)
    assert track["received_at"] == track["timestamp"]


@pytest.mark.parametrize("text, sentence", [
    (GOOD.replace("members:", "member:"), "line 5: `member`: unknown key; did you mean `members`?"),
    (GOOD.replace("type: track", "type: trak"),
     "line 4: event 2: unknown event type 'trak'; expected one of alias, group, identify, page, screen, track"),
    (GOOD.replace(', timestamp: "2026-02-02T09:00:00+01:00"', ""),
     "line 4: event 2: it has no `timestamp`; each event of a test needs one (the windows count from it)"),
    (GOOD.replace("as_of: 2026-03-01T00:00:00Z", "as_of: next monday"), "line 1: `as_of`: input should be a valid datetime or date, invalid character in year"),
    (GOOD.replace("members: [ann, 42]", "members: [ann, 4.5]"), "line 5: `members.1.str`: input should be a valid string"),
    ("as_of: 2026-03-01\nevents: []\nmembers: []\n", "line 2: `events`: list should have at least 1 item after validation, not 0"),
    ("as_of: 2026-03-01\nevents: [{type: track\nmembers: []\n", "line 3: expected ',' or '}', but got ':'"),
    ("- just a list\n", "line 1: an audience test is a mapping with `as_of`, `events` and `members`"),
])
def test_a_bad_fixture_is_one_sentence_with_file_and_line(tmp_path, text, sentence):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        read_fixture(path)
    assert str(raised.value) == f"{path}, {sentence}"


def test_tests_are_chosen_by_file_or_by_audience(tmp_path, monkeypatch):
    project = empty_project(tmp_path, monkeypatch)
    tests = project.audiences_dir / "tests"
    tests.mkdir()
    write(tests, GOOD, "alpha.yml")
    write(tests, "audience: alpha\n" + GOOD, "alpha_edge.yml")
    write(tests, GOOD, "beta.yml")
    assert [f.name for f in select_fixtures(project, [])] == ["alpha", "alpha_edge", "beta"]
    assert [f.name for f in select_fixtures(project, ["alpha"])] == ["alpha", "alpha_edge"]
    assert [f.name for f in select_fixtures(project, ["beta"])] == ["beta"]
    with pytest.raises(ConfigError, match=r"no audience test named gamma in .*tests \(tests there: alpha, alpha_edge, beta\)"):
        select_fixtures(project, ["gamma"])


def test_an_outcome_names_missing_and_unexpected_keys(tmp_path):
    fixture = read_fixture(write(tmp_path, GOOD))
    outcome = Outcome(fixture, frozenset({"ann", "bob", "cat"}))
    assert (outcome.missing, outcome.unexpected, outcome.ok) == (["42"], ["bob", "cat"], False)
    assert Outcome(fixture, frozenset({"42", "ann"})).ok
    assert not Outcome(fixture, frozenset({"42", "ann"}), error="it failed").ok


def revetl(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(root), "audiences", "test", *args],
                          env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_the_shipped_audiences_pass_their_tests(tmp_path, monkeypatch):
    """The repository's own project, as a user runs it: nothing is written into it (the warehouse is thrown
    away); the redirected warehouse of the suite is never created either."""
    project = load_project(REPO)
    names = sorted(path.stem for path in project.audiences_dir.glob("*.sql"))
    assert names == ["churn_risk", "new_signups", "power_users"]
    monkeypatch.setenv("REVETL_WAREHOUSE", str(tmp_path / "never.duckdb"))
    done = revetl(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(" (")[0] for line in lines[:3]] == [f"PASS {name}" for name in names]
    assert lines[3].startswith("3 audience tests passed in ")
    assert not (tmp_path / "never.duckdb").exists() and not (REPO / "dbt_packages").exists()


PEOPLE = """-- description: people on the pro plan (audience tests' own test)
-- key: user_id

select p.user_id, p.plan from {{ ref('profiles') }} as p where p.plan = 'pro'
"""


BROKEN = """-- description: an audience reading a column that does not exist
-- key: user_id

select p.user_id, p.no_such_column from {{ ref('profiles') }} as p
"""


@pytest.mark.slow
def test_mismatches_are_tables_of_missing_and_unexpected_keys(tmp_path, monkeypatch):
    project = empty_project(tmp_path, monkeypatch)
    (project.audiences_dir / "pro_people.sql").write_text(PEOPLE)
    tests = project.audiences_dir / "tests"
    tests.mkdir()
    events = """as_of: "2026-03-01T00:00:00Z"
events:
  - {type: identify, userId: ann, timestamp: "2026-02-01T09:00:00Z", traits: {plan: pro}}
  - {type: identify, userId: bob, timestamp: "2026-02-01T09:00:00Z", traits: {plan: pro}}
  - {type: identify, userId: cat, timestamp: "2026-02-01T09:00:00Z", traits: {plan: free}}
  - {type: identify, userId: cat, timestamp: "2026-02-20T09:00:00Z", traits: {plan: pro}}
  - {type: identify, userId: dan, timestamp: "2026-02-01T09:00:00Z", traits: {plan: pro}}
  - {type: identify, userId: dan, timestamp: "2026-02-25T09:00:00Z", traits: {plan: free}}
"""
    write(tests, events + "members: [ann, bob, cat]\n", "pro_people.yml")
    write(tests, "audience: pro_people\n" + events + "members: [ann, dan, eve]\n", "pro_people_wrong.yml")
    write(tests, "audience: nobody\n" + events + "members: []\n", "unknown.yml")
    (project.audiences_dir / "broken.sql").write_text(BROKEN)
    write(tests, "audience: broken\n" + events + "members: []\n", "broken.yml")
    done = revetl(project.root)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line.rstrip() for line in done.stdout.splitlines()]
    assert lines.pop(0) == (f"FAIL broken (audiences/tests/broken.yml, as of 2026-03-01 00:00:00): "
                            f"{project.audiences_dir / 'broken.sql'}: the warehouse rejects the audience query: Binder "
                            'Error: Table "p" does not have a column named "no_such_column"')
    assert lines[0].startswith("PASS pro_people (audiences/tests/pro_people.yml, as of 2026-03-01 00:00:00): "
                               "3 members, 3 expected, ")
    assert lines[1].startswith("FAIL pro_people (audiences/tests/pro_people_wrong.yml, as of 2026-03-01 00:00:00): "
                               "3 members, 3 expected, ")
    assert [line.split() for line in lines[2:5]] == [
        ["missing", "(2):", "expected,", "not", "in", "the", "audience", "unexpected", "(2):", "in", "the", "audience,",
         "not", "expected"],
        ["dan", "bob"],
        ["eve", "cat"],
    ]
    assert lines[5] == ("FAIL nobody (audiences/tests/unknown.yml, as of 2026-03-01 00:00:00): no audience named "
                        f"'nobody' (no {project.audiences_dir / 'nobody.sql'}); known audiences: broken, pro_people")
    assert lines[6].startswith("3 audience tests failed, 1 passed in ")

    only = revetl(project.root, "pro_people_wrong")
    assert only.returncode == 1 and only.stdout.splitlines()[-1].startswith("1 audience test failed, 0 passed")
