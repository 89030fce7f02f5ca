"""The launcher (revetl/launch.py): a plain `revetl sync` runs without typer, and ends exactly as the typer app
ends it: the same stdout, stderr and exit code, run both ways on the same project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from wh import audience_project, replace_table

from revetl.config import Project
from revetl.emulators import running
from revetl.launch import PlainSync, plain_sync
from revetl.sync.lock import sync_lock

KEY = "launch-test-braze-key"
AUDIENCE = """-- description: people
-- key: user_id

select user_id, email from {{ ref('members') }}
"""
# The launcher, telling on stderr (after everything else) if typer was loaded; and the typer app itself.
LAUNCHER = ("import atexit, os, sys\n"
            "atexit.register(lambda: os.write(2, b'typer was loaded') if 'typer' in sys.modules else None)\n"
            "sys.argv[0] = 'revetl'\nfrom revetl.launch import main\nmain()")
TYPER_APP = "import sys\nsys.argv[0] = 'revetl'\nfrom revetl.cli import main\nmain()"


@pytest.mark.parametrize("args, expected", [
    (["sync", "a"], PlainSync(names=("a",))),
    (["sync", "a", "b", "--force"], PlainSync(names=("a", "b"), force=True)),
    (["sync", "--force", "a", "--no-force"], PlainSync(names=("a",))),
    (["--project-dir", "p", "--target=postgres", "sync", "--all"],
     PlainSync(project_dir=Path("p"), target="postgres", all_syncs=True)),
    (["--target", "x", "--target", "sync", "sync", "a"], PlainSync(target="sync", names=("a",))),
])
def test_a_plain_sync_command_line_is_the_launchers(args, expected):
    assert plain_sync(args, {}) == expected


@pytest.mark.parametrize("args", [
    [], ["--help"], ["sync"], ["sync", "--help"], ["sync", "a", "-h"], ["--debug", "sync", "a"], ["plan", "a"],
    ["sync", "a", "--bogus"], ["sync", "a", "--", "b"], ["--project-dir"], ["--project-dir", "", "sync", "a"],
    ["--project-dir", "--target", "sync", "a"], ["sync", ""], ["sync", "-"], ["--target=", "sync", "a"],
    ["--project-dir", "p"], ["runs", "sync"],
])
def test_anything_else_goes_to_typer(args):
    assert plain_sync(args, {}) is None


def test_shell_completion_goes_to_typer():
    assert plain_sync(["sync", "a"], {"_REVETL_COMPLETE": "bash_complete"}) is None


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("BRAZE_API_KEY", KEY)
    project = audience_project(tmp_path, monkeypatch, {"people": AUDIENCE}, tables=("members",))
    members(project, 20)
    return project


def members(project: Project, n: int) -> None:
    replace_table(project, "members", "select 'u' || i as user_id, 'p' || i || '@example.com' as email "
                                      "from generate_series(0, ? - 1) as t(i)", [n])


def sync_file(project: Project, name: str, url: str, **extra: object) -> None:
    raw = {"audience": "people", "destination": {"type": "braze", "base_url": url, "api_key": "${BRAZE_API_KEY}"},
           "identity": {"from": "user_id", "to": "external_id"}, "fields": {"email": "email"},
           "membership": {"attribute": "in_people"}, **extra}
    (project.syncs_dir / f"{name}.yml").write_text(yaml.safe_dump(raw))


def launch(project: Project, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LAUNCHER, "--project-dir", str(project.root), *args],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)


def both_ways(project: Project, *args: str, lean: bool = True) -> subprocess.CompletedProcess:
    """Run `revetl --project-dir ROOT ARGS` through the typer app and through the launcher; assert that they
    end alike, and that the launcher ran it without typer (`lean`) or handed it to typer; return the run."""
    command = ["--project-dir", str(project.root), *args]
    env = {**os.environ, "COLUMNS": "200"}
    runs = [subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, env=env,
                           timeout=120) for code in (TYPER_APP, LAUNCHER)]
    typer_run, launched = runs
    stderr = launched.stderr.removesuffix("typer was loaded")
    assert (stderr == launched.stderr) is lean, launched.stderr
    assert (launched.returncode, launched.stdout, stderr) == (typer_run.returncode, typer_run.stdout,
                                                              typer_run.stderr)
    return launched


@pytest.mark.slow
def test_a_plain_sync_ends_as_through_typer(project):
    with running("braze", {"api_key": KEY}) as url:
        sync_file(project, "people", url)
        sent = launch(project, "sync", "people")  # the launcher sends too (then nothing is left to send)
        assert sent.returncode == 0 and "20/20" in sent.stdout and "typer was loaded" not in sent.stderr
        noop = both_ways(project, "sync", "people", "--no-force")
        assert noop.returncode == 0 and "│ succeeded │  0/0 │" in noop.stdout
        both_ways(project, "sync", "--all")
        unknown = both_ways(project, "sync", "people", "nobody")  # the summary, then the second's error
        assert unknown.returncode == 1 and "│ people │ succeeded" in unknown.stdout
        assert "error: no sync named 'nobody'" in unknown.stderr
        with sync_lock(project, "people"):
            locked = both_ways(project, "sync", "people")
        assert locked.returncode == 1 and f"sync people is already running (pid {os.getpid()})" in locked.stderr
        members(project, 5)
        refused = both_ways(project, "sync", "people")
        assert refused.returncode == 1 and "refused: it would remove 15 of 20 members" in refused.stderr
        forced = launch(project, "sync", "people", "--force")
        assert forced.returncode == 0 and "15/15" in forced.stdout
        sync_file(project, "broken", url, mdoe="mirror")
        broken = both_ways(project, "sync", "broken", "--force")
        assert broken.returncode == 1 and "`mdoe` unknown key; did you mean `mode`?" in broken.stderr
        target = both_ways(project, "--target", "nowhere", "sync", "people")
        assert target.returncode == 1 and "has no target 'nowhere'" in target.stderr


def test_errors_before_any_sync_end_as_through_typer(project, tmp_path):
    missing = both_ways(project, "sync", "nobody")
    assert missing.returncode == 1 and missing.stderr.startswith("error: no sync named 'nobody'")
    usage = both_ways(project, "sync", "--all", lean=False)  # no sync files: typer's usage error
    assert usage.returncode == 2 and "name at least one sync, or use --all" in usage.stderr
    helped = both_ways(project, "sync", "--help", lean=False)
    assert helped.returncode == 0 and "--force" in helped.stdout
    nowhere = subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(tmp_path / "none"), "sync", "a"],
                             capture_output=True, text=True, timeout=60)
    assert nowhere.returncode == 1 and nowhere.stderr.startswith("error: no dbt_project.yml in ")
