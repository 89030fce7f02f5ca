"""`revetl build`: failures name the model or test; the CLI exits non-zero with one sentence."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from wh import REPO, land, query, redirect
from identity_reference import wire

from revetl.warehouse.dbt import build_project
from revetl.errors import ConfigError

pytestmark = pytest.mark.slow


def _copy_project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("dbt_project.yml", "profiles.yml", "revetl.yml", "traits.yml"):
        shutil.copy(REPO / name, root / name)
    for name in ("models", "macros"):
        shutil.copytree(REPO / name, root / name)
    return root


def _revetl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).with_name("revetl")), *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_failing_model_and_failing_test_name_themselves(tmp_path, monkeypatch):
    root = _copy_project(tmp_path)
    (root / "models" / "broken_model.sql").write_text("select no_such_column from {{ ref('events') }}\n")
    (root / "tests" / "dbt").mkdir(parents=True)
    (root / "tests" / "dbt" / "no_tracks_allowed.sql").write_text(
        "select * from {{ ref('profile_traits') }}\n")
    project = redirect(tmp_path, monkeypatch, root)
    land(project, [wire("track", "m1", userId="u1", event="Signed Up")])

    result = build_project(project)
    failed = {(node.kind, node.name) for node in result.failures}
    assert ("model", "broken_model") in failed
    assert ("test", "no_tracks_allowed") in failed
    assert not result.ok

    run = _revetl("build", cwd=root)
    assert run.returncode == 1
    assert "build failed:" in run.stdout and "model broken_model" in run.stdout
    assert "test no_tracks_allowed" in run.stdout


def test_build_without_events_says_what_to_do(project):
    with pytest.raises(ConfigError, match="no events have landed in .*; run `revetl ingest`"):
        build_project(project)


def test_cli_reports_a_trait_typo_as_one_sentence(tmp_path, monkeypatch):
    root = _copy_project(tmp_path)
    (root / "traits.yml").write_text("traits:\n  - {name: x, kind: cnt}\n")
    project = redirect(tmp_path, monkeypatch, root)
    land(project, [wire("track", "m1", userId="u1", event="Signed Up")])
    run = _revetl("build", cwd=root)
    assert run.returncode == 1
    assert "traits.yml, line 2: trait `x`: unknown kind 'cnt'" in " ".join(run.stderr.split())
    assert "Traceback" not in run.stderr


def test_a_failed_build_leaves_every_model_and_the_as_of_time_as_they_were(tmp_path, monkeypatch):
    root = _copy_project(tmp_path)
    project = redirect(tmp_path, monkeypatch, root)
    land(project, [wire("identify", "m1", userId="u1", traits={"email": "a@x.io"}),
                   wire("track", "m2", userId="u2", event="Signed Up")])
    first = _revetl("build", "--as-of", "2026-01-31T00:00:00", cwd=root)
    assert first.returncode == 0, first.stdout + first.stderr
    before = query(project, "select (select as_of from build_info), (select count(*) from profiles)")

    # A truncated landing file (as a crashed copy by some other tool would leave it) fails the build.
    broken = project.landing_dir / "received_date=2026-01-02" / "copied.parquet"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"PAR1 cut short")
    land(project, [wire("track", "m3", userId="u3", event="Signed Up")])
    failed = _revetl("build", "--as-of", "2026-02-28T00:00:00", cwd=root)
    assert failed.returncode == 1
    said = " ".join(failed.stdout.split())
    assert f"build failed: the landing file {broken} cannot be read as Parquet" in said
    assert "Traceback" not in failed.stdout + failed.stderr
    assert query(project, "select (select as_of from build_info), (select count(*) from profiles)") == before

    # So does a model that breaks: nothing of that build reaches the warehouse either.
    broken.unlink()
    (root / "models" / "broken_model.sql").write_text("select no_such_column from {{ ref('events') }}\n")
    assert _revetl("build", "--as-of", "2026-02-28T00:00:00", cwd=root).returncode == 1
    assert query(project, "select (select as_of from build_info), (select count(*) from profiles)") == before

    (root / "models" / "broken_model.sql").unlink()
    fixed = _revetl("build", "--as-of", "2026-02-28T00:00:00", cwd=root)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    as_of, profiles = query(project, "select (select as_of from build_info), (select count(*) from profiles)")[0]
    assert str(as_of) == "2026-02-28 00:00:00" and profiles == before[0][1] + 1
