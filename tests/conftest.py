"""Shared fixtures: every test gets its own landing directory, warehouse file and dbt target dir."""

from __future__ import annotations

from pathlib import Path

import pytest
from wh import redirect

from revetl.config import Project


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The repository's dbt project, writing only into tmp_path."""
    return redirect(tmp_path, monkeypatch)


@pytest.fixture(scope="module")
def module_project(tmp_path_factory: pytest.TempPathFactory):
    """Like `project`, shared by a module's tests (one dbt build for many assertions)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield redirect(tmp_path_factory.mktemp("project"), monkeypatch)
