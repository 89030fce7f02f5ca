"""`revetl init DIR`: the files it writes, its refusals, and a new project's whole cycle through the real CLI
(the CI workflow's own steps, then plan and sync to a Braze emulator), on DuckDB and on PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml
from wh import REPO

from revetl.emulators import running
from revetl.scaffold import create_project
from revetl.scaffold.project import profiles_text, project_name
from revetl.warehouse.package import PACKAGE_DIR

BIN = Path(sys.executable).parent


def revetl(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "revetl", *args], cwd=cwd, env=env or os.environ.copy(),
                          capture_output=True, text=True, timeout=900)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment a user has: none of the test suite's redirections, PATH finding this revetl."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("REVETL_", "PG", "BRAZE_"))}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "COLUMNS": "200", **extra}


def test_init_writes_every_file_and_refuses_a_directory_that_is_not_empty(tmp_path):
    made = revetl("init", "acme", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    root = tmp_path / "acme"
    expected = {"dbt_project.yml", "packages.yml", "profiles.yml", "revetl.yml", "traits.yml", ".gitignore",
                "audiences/engaged_users.sql", "audiences/tests/engaged_users.yml",
                "syncs/engaged_users_to_braze.yml", ".github/workflows/revetl.yml", "models/.gitkeep",
                "macros/.gitkeep"}
    assert {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} == expected
    assert yaml.safe_load((root / "dbt_project.yml").read_text())["name"] == "acme"
    assert "revetl sync engaged_users_to_braze" in made.stdout

    again = revetl("init", "acme", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip() == (f"error: acme is not empty; name a new or empty directory, or add --force to "
                                    "write the project's files into it (replacing files of the same names)")
    (root / "traits.yml").write_text("traits: []\n")
    (root / "mine.txt").write_text("kept")
    forced = revetl("init", "acme", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "events_30d" in (root / "traits.yml").read_text() and (root / "mine.txt").read_text() == "kept"

    (tmp_path / "file").write_text("x")
    assert revetl("init", "file", cwd=tmp_path).stderr.strip() == (
        "error: file is a file, not a directory; name a new or empty directory")
    bad = revetl("init", "other", "--warehouse", "snowflake", cwd=tmp_path)
    assert bad.returncode == 1 and "unknown warehouse 'snowflake'; choose one of duckdb, postgres" in bad.stderr
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("warehouse", ["duckdb", "postgres"])
def test_profiles_are_revetls_own_output(tmp_path, warehouse):
    create_project(tmp_path / "p", warehouse=warehouse)
    ours = yaml.safe_load((REPO / "profiles.yml").read_text())["revetl"]
    theirs = yaml.safe_load((tmp_path / "p" / "profiles.yml").read_text())["revetl"]
    assert theirs == {"target": warehouse, "outputs": {warehouse: ours["outputs"][warehouse]}}
    assert profiles_text(warehouse).startswith("revetl:\n  # Which warehouse")


def test_the_project_keeps_the_repositorys_dbt_flags_and_reaches_revetls_package(tmp_path):
    create_project(tmp_path / "p")
    scaffold = yaml.safe_load((tmp_path / "p" / "dbt_project.yml").read_text())
    assert scaffold["flags"] == yaml.safe_load((REPO / "dbt_project.yml").read_text())["flags"]
    assert scaffold["profile"] == "revetl"
    packages = yaml.safe_load((tmp_path / "p" / "packages.yml").read_text())
    assert packages == {"packages": [{"local": "{{ env_var('REVETL_DBT_PACKAGE') }}"}]}
    assert (PACKAGE_DIR / "dbt_project.yml").resolve() == REPO / "dbt_project.yml"  # one copy of the models
    assert (PACKAGE_DIR / "models").resolve() == REPO / "models"
    assert (PACKAGE_DIR / "macros").resolve() == REPO / "macros"


def test_a_wheel_carries_the_models_and_the_scaffold():
    """pyproject's package-data globs match every file revetl/dbt/ and revetl/scaffold/files/ reach (a wheel
    built from this tree holds exactly what the globs match, the links' targets as files)."""
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["revetl"]
    package = PACKAGE_DIR.parent
    matched = {path for pattern in patterns for path in package.glob(pattern) if path.is_file()}
    needed = {path for folder in ("dbt", "scaffold/files") for path in (package / folder).rglob("*")
              if path.is_file() and path.suffix != ".pyc"}
    assert needed and needed <= matched
    assert package / "dbt" / "models" / "profiles" / "profiles.sql" in matched


def test_project_names_are_dbt_identifiers(tmp_path):
    assert project_name(tmp_path / "My Shop-2") == "my_shop_2"
    assert project_name(tmp_path / "2026") == "project_2026"
    assert project_name(tmp_path / "revetl") == "revetl_project"  # the package's own name


def workflow_steps(root: Path) -> list[str]:
    """The `run:` scripts of the project's CI workflow after the install step (revetl is installed here)."""
    workflow = yaml.safe_load((root / ".github" / "workflows" / "revetl.yml").read_text())
    assert "pull_request" in workflow[True]  # YAML 1.1 reads the key `on` as True
    steps = workflow["jobs"]["revetl"]["steps"]
    install = next(i for i, step in enumerate(steps) if step.get("name") == "Install revetl")
    assert steps[install]["run"].startswith('pip install "revetl')
    return [step["run"] for step in steps[install + 1:]]


def run_workflow(root: Path, env: dict[str, str]) -> str:
    """Run the workflow's steps as GitHub Actions would (bash -e, in the checkout); their output."""
    scripts = workflow_steps(root)
    assert scripts[0] == "revetl audiences test" and scripts[-1] == "revetl audiences check"
    assert "revetl build" in scripts[1]
    output = []
    for script in scripts:
        done = subprocess.run(["bash", "-e", "-c", script], cwd=root, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, f"{script}:\n{done.stdout}\n{done.stderr}"
        output.append(done.stdout)
    return "\n".join(output)


@pytest.mark.slow
def test_a_new_project_runs_its_whole_cycle(tmp_path):
    """init, then the CI workflow's steps (check, audience tests, generate, build), then plan and sync to a real
    Braze emulator: every step the real CLI in the new directory, with none of the suite's redirections."""
    env = clean_env()
    assert revetl("init", "shop", cwd=tmp_path, env=env).returncode == 0
    root = tmp_path / "shop"
    output = run_workflow(root, env)
    assert "1 audiences and 1 syncs: no problems" in output
    assert "PASS engaged_users" in output and "1 audience test passed" in output
    assert "built 16 models" in output
    assert (root / "dbt_packages" / "revetl").resolve() == PACKAGE_DIR.resolve()
    # dbt compiled revetl's models inside the new project (never beside their source)
    assert (root / "target" / "duckdb" / "compiled" / "revetl" / "models" / "events.sql").is_file()

    with running("braze", {"api_key": "dev-braze-key"}) as url:
        env = {**env, "BRAZE_REST_ENDPOINT": url}
        plan = revetl("plan", "engaged_users_to_braze", "--json", cwd=root, env=env)
        assert plan.returncode == 0, plan.stderr
        adds = json.loads(plan.stdout)["adds"]
        assert adds > 0
        synced = revetl("sync", "engaged_users_to_braze", cwd=root, env=env)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        users = httpx.get(f"{url}/_emulator/users").json()["users"]
    assert len([user for user in users if user["attributes"].get("in_engaged_users") is True]) == adds
    again = json.loads(revetl("plan", "engaged_users_to_braze", "--json", cwd=root, env=env).stdout)
    assert (again["adds"], again["changes"], again["removes"]) == (0, 0, 0)


@pytest.mark.slow
def test_a_postgres_project_builds_on_postgres(tmp_path, postgres_cluster):
    """`--warehouse postgres`: the workflow's steps against a PostgreSQL database (the CI service's place)."""
    env = clean_env(**postgres_cluster.database("init_project").env)
    assert revetl("init", "shop", "--warehouse", "postgres", cwd=tmp_path, env=env).returncode == 0
    root = tmp_path / "shop"
    workflow = yaml.safe_load((root / ".github" / "workflows" / "revetl.yml").read_text())
    assert workflow["jobs"]["revetl"]["services"]["postgres"]["image"] == "postgres:15"
    output = run_workflow(root, env)
    assert "PASS engaged_users" in output and "built 16 models" in output
    preview = revetl("audiences", "preview", "engaged_users", cwd=root, env=env)
    assert preview.returncode == 0 and "engaged_users" in preview.stdout, preview.stderr
    assert not (root / "data" / "warehouse.duckdb").exists()  # built on PostgreSQL, not DuckDB
