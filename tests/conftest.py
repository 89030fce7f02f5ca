"""Shared fixtures: every test gets its own landing directory, warehouse file and dbt target dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from revetl.config import Project, load_project

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The repository's dbt project, with every path it writes redirected into tmp_path.

    Subprocesses started by a test inherit the same redirection through the environment.
    """
    monkeypatch.setenv("REVETL_LANDING_DIR", str(tmp_path / "events"))
    monkeypatch.setenv("REVETL_WAREHOUSE", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.setenv("REVETL_TARGET_DIR", str(tmp_path / "target"))
    return load_project(REPO)
