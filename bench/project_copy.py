"""A copy of this repository's project (settings, dbt models and macros) for a benchmark to build in."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def copy_project(root: Path) -> None:
    """Create `root` holding the project's settings, models and macros (no audiences or syncs)."""
    root.mkdir(parents=True)
    for name in ("dbt_project.yml", "profiles.yml", "revetl.yml", "traits.yml"):
        shutil.copy(ROOT / name, root / name)
    for name in ("models", "macros"):
        shutil.copytree(ROOT / name, root / name)
