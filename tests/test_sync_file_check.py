"""Sync files under `revetl audiences check` (issue 13): every problem of a file, each with its line;
the nearest key for a typo; an unknown destination type; a file that is not UTF-8; YAML alias bombs.
`revetl plan` still stops at the first problem, in one sentence. Through the real CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from wh import empty_project

from revetl.config import Project, read_yaml
from revetl.errors import ConfigError

AUDIENCE = "-- description: Test audience.\n-- key: user_id\nselect user_id, email\nfrom {{ ref('profiles') }}\n"
GOOD = """\
audience: members
destination:
  type: braze
  base_url: http://localhost:4010
  api_key: ${SYNC_CHECK_KEY:-not-a-secret}
identity: {from: user_id, to: external_id}
fields: {email: email}
"""
# A "billion laughs": nine aliases of nine aliases ... expand to 9**9 (387 million) strings.
BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi")
)
BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + BOMB


@pytest.fixture
def proj(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A copy of the repository's project with one audience (`members`), no syncs, no warehouse."""
    project = empty_project(tmp_path, monkeypatch)
    (project.audiences_dir / "members.sql").write_text(AUDIENCE)
    return project


def revetl(project: Project, *args: str) -> subprocess.CompletedProcess:
    """`python -m revetl --project-dir ROOT ...`; 20 s is far more than any check needs."""
    command = [sys.executable, "-m", "revetl", "--project-dir", str(project.root), *args]
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(command, cwd=project.root, capture_output=True, text=True, timeout=20, env=env)


def write_sync(project: Project, name: str, text: str | bytes) -> Path:
    path = project.syncs_dir / f"{name}.yml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def reported(run: subprocess.CompletedProcess) -> list[str]:
    """The problem lines `check` printed (without the summary line)."""
    return [line for line in run.stdout.splitlines() if line.startswith("syncs/")]


@pytest.mark.slow
def test_check_names_an_unknown_destination_type_and_the_installed_ones(proj):
    write_sync(proj, "typo", GOOD.replace("type: braze", "type: brazee"))

    run = revetl(proj, "audiences", "check")

    assert run.returncode == 1, run.stdout + run.stderr
    assert reported(run) == [
        "syncs/typo.yml:3: unknown destination type `brazee`; did you mean `braze`? "
        "(installed: braze, intercom, salesforce, slack, webhook)"
    ]


@pytest.mark.slow
def test_check_reports_every_problem_of_a_sync_file_with_its_line_and_the_nearest_key(proj):
    write_sync(proj, "many", (
        "audience: members\n"           # 1
        "destinaton:\n"                 # 2
        "  type: braze\n"               # 3
        "identity: {from: user_id}\n"   # 4
        "fields: {email: email}\n"      # 5
        "mdoe: mirror\n"                # 6
        "max_remove_share: 2\n"         # 7
    ))

    run = revetl(proj, "audiences", "check")

    assert run.returncode == 1
    assert reported(run) == [
        "syncs/many.yml:2: `destinaton` unknown key; did you mean `destination`?",
        "syncs/many.yml:4: `identity.to` field required",
        "syncs/many.yml:6: `mdoe` unknown key; did you mean `mode`?",
        "syncs/many.yml:7: `max_remove_share` input should be less than or equal to 1",
    ], run.stdout


@pytest.mark.slow
def test_plan_still_stops_at_the_first_problem_in_one_sentence(proj):
    path = write_sync(proj, "many", "audience: members\ndestinaton:\n  type: braze\nmdoe: mirror\n")

    run = revetl(proj, "plan", "many")

    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert " ".join(run.stderr.split()) == (
        f"error: {path}, line 2: `destinaton` unknown key; did you mean `destination`?"
    )


@pytest.mark.slow
def test_a_sync_file_that_is_not_utf8_is_one_problem_not_a_crash(proj):
    write_sync(proj, "latin", GOOD.encode() + "# plan: caf\u00e9\n".encode("latin-1"))
    write_sync(proj, "fine", GOOD)

    run = revetl(proj, "audiences", "check")

    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert reported(run) == ["syncs/latin.yml:8: the file is not UTF-8 text (byte 0xe9); save it as UTF-8"]


@pytest.mark.slow
def test_a_yaml_alias_bomb_is_refused_at_once(proj):
    write_sync(proj, "bomb", BOMB + GOOD)

    checked = revetl(proj, "audiences", "check")  # times out (a failure) if the aliases are expanded
    planned = revetl(proj, "plan", "bomb")

    message = "the YAML aliases expand to more than 10,000 values (an alias bomb?)"
    assert checked.returncode == 1 and reported(checked) == [f"syncs/bomb.yml:5: {message}"], checked.stdout
    assert planned.returncode == 1 and message in planned.stderr


@pytest.mark.slow
def test_an_alias_bomb_in_revetl_yml_fails_every_command_in_one_sentence(proj):
    (proj.root / "revetl.yml").write_text(BOMB)

    run = revetl(proj, "audiences", "check")

    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert "revetl.yml, line 5: the YAML aliases expand to more than 10,000 values" in " ".join(run.stderr.split())


def test_read_yaml_keeps_ordinary_aliases_and_refuses_a_self_referencing_one(tmp_path):
    path = tmp_path / "traits.yml"
    path.write_text("base: &base {kind: count}\ntraits:\n  - {<<: *base, name: a}\n  - {<<: *base, name: b}\n")
    assert read_yaml(path)["traits"] == [{"kind": "count", "name": "a"}, {"kind": "count", "name": "b"}]

    path.write_text("loop: &loop [1, *loop]\n")
    with pytest.raises(ConfigError, match=r"traits.yml, line 1: the YAML alias `loop` refers to itself"):
        read_yaml(path)


ROOT = Path(__file__).resolve().parents[1]


def project_yaml_files() -> list[Path]:
    skip = {".venv", "work", "target", "dbt_packages", "node_modules", ".git"}
    return [path for path in sorted(ROOT.rglob("*.yml")) if not skip & set(path.relative_to(ROOT).parts)]


def test_every_yaml_file_of_the_repository_reads_as_pyyaml_reads_it():
    """revetl parses with libyaml when a file has no anchors: the data and each key's line are PyYAML's."""
    import yaml

    from revetl.yaml_files import _key_lines, read_yaml_file

    files = project_yaml_files()
    assert len(files) > 20
    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            expected = yaml.load(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:  # a template (revetl/scaffold/): refused alike
            with pytest.raises(ConfigError):
                read_yaml_file(path)
            continue
        read = read_yaml_file(path)
        assert read.data == (expected or {}), path
        assert read.lines and read.lines == _key_lines(yaml.compose(text, Loader=yaml.SafeLoader)), path


@pytest.mark.parametrize("text", ["identity: {from: user_id, to: external_id\nfields: {}\n",
                                  "audience: a\n  destination: b\n", "a: 'open\n", "- a\nb: c\n"])
def test_a_syntax_error_is_told_in_pyyaml_words_on_its_line(tmp_path, text):
    import yaml

    path = tmp_path / "s.yml"
    path.write_text(text)
    with pytest.raises(yaml.YAMLError) as pyyaml:
        yaml.load(text, Loader=yaml.SafeLoader)
    with pytest.raises(ConfigError) as ours:
        read_yaml(path)
    assert str(ours.value) == f"{path}, line {pyyaml.value.problem_mark.line + 1}: {pyyaml.value.problem}"


def test_a_character_yaml_does_not_allow_names_its_line(tmp_path):
    path = tmp_path / "s.yml"
    path.write_text("audience: a\nfields:\n  email: \x07\n")
    with pytest.raises(ConfigError, match=r"s.yml, line 3: character #x0007 is not allowed in YAML"):
        read_yaml(path)
