"""revetl's dbt project as a dbt package: what a project made by `revetl init` builds.

The repository's `dbt_project.yml`, `models/` and `macros/` are the one copy of revetl's models. The
directory `revetl/dbt/` links to them (a wheel holds them as files: pyproject's package-data), so the
revetl that runs always carries the models it was made with. A new project names that directory in its
`packages.yml` as `{{ env_var('REVETL_DBT_PACKAGE') }}`, not as a path: revetl sets the variable to the
installed copy before dbt runs, and runs `dbt deps` whenever `dbt_packages/revetl` does not point there
(a fresh checkout, another virtualenv, an upgrade of revetl). The repository's own project has no
`packages.yml` and builds its models in place, as before.
"""

from __future__ import annotations

import os
from pathlib import Path

from revetl.config import PROJECT_FILE, Project, read_yaml

__all__ = ["ENV", "PACKAGES_FILE", "PACKAGE_DIR", "model_dirs", "needs_install", "package_dir", "point_env"]

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "dbt"
ENV = "REVETL_DBT_PACKAGE"
PACKAGES_FILE = "packages.yml"
NAME = "revetl"  # the package's name: dbt_project.yml in PACKAGE_DIR; macros dispatch in its namespace


def package_dir() -> Path:
    """The dbt package dbt reads: $REVETL_DBT_PACKAGE when set (a checkout of revetl's models), else the
    installed one."""
    return Path(os.environ.get(ENV) or PACKAGE_DIR)


def point_env() -> None:
    """Set $REVETL_DBT_PACKAGE for dbt (rendering packages.yml), unless the user has set it."""
    os.environ.setdefault(ENV, str(PACKAGE_DIR))


def uses_package(root: Path) -> bool:
    """Whether the project at `root` builds revetl's models as a package (its packages.yml names it)."""
    path = root / PACKAGES_FILE
    return path.is_file() and ENV in path.read_text(encoding="utf-8")


def needs_install(root: Path) -> bool:
    """Whether `dbt deps` must run first: the project uses the package and `dbt_packages/revetl` is missing
    or points at another copy."""
    if not uses_package(root):
        return False
    installed = root / _install_path(root) / NAME
    return not installed.exists() or installed.resolve() != package_dir().resolve()


def _install_path(root: Path) -> str:
    return str(read_yaml(root / PROJECT_FILE).get("packages-install-path") or "dbt_packages")


def model_dirs(project: Project) -> list[Path]:
    """Every directory dbt reads the project's models from: its `model-paths`, and revetl's models when
    the project uses the package (known before `dbt deps` or a build has run)."""
    paths = read_yaml(project.root / PROJECT_FILE).get("model-paths") or ["models"]
    found = [project.root / path for path in paths]
    if uses_package(project.root):
        own = read_yaml(package_dir() / PROJECT_FILE).get("model-paths") or ["models"]
        found += [package_dir() / path for path in own]
    return found
