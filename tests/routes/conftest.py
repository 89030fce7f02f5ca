"""A project with routes: the repository's dbt_project.yml and revetl.yml, and route files written by the test."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def route_project(tmp_path: Path) -> Callable[..., Path]:
    """`make(**routes)` -> a project directory whose routes/NAME.yml hold the given YAML texts."""

    def make(**routes: str) -> Path:
        root = tmp_path / "project"
        (root / "routes").mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "dbt_project.yml", root / "dbt_project.yml")
        shutil.copy(REPO / "revetl.yml", root / "revetl.yml")
        for name in ("profiles.yml", "traits.yml", "models", "macros"):  # what `revetl build` reads
            if not (root / name).exists():
                (root / name).symlink_to(REPO / name)
        for name, text in routes.items():
            (root / "routes" / f"{name}.yml").write_text(textwrap.dedent(text))
        return root

    return make


def _collector_helpers():  # tests/collect/conftest.py's helpers (conftest modules cannot import each other by name)
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("collect_helpers", REPO / "tests" / "collect" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["collect_helpers"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_HELPERS = _collector_helpers()


@pytest.fixture
def collect_helpers():  # type: ignore[no-untyped-def]
    """tests/collect/conftest.py as a module: start_collector, collector_env, revetl_command, the write keys."""
    return _HELPERS
