"""`revetl build`: failures name the model or test; the CLI exits non-zero with one sentence."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from wh import REPO, land, redirect
from identity_reference import wire

from revetl.dbt import build_project
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
