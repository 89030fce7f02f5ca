"""Write a new project: dbt and revetl settings, an example audience with its test, an example sync to
the local Braze emulator, .gitignore and a GitHub Actions workflow for the project's own repository.

The files are templates in `files/` with `@marker@` holes (their own text is full of `{{ }}` and `${}`).
profiles.yml is not a template: it is the chosen output of revetl's own profiles.yml (revetl/dbt/ links
to it), so a new project reaches DuckDB or PostgreSQL with exactly the settings revetl is tested with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from revetl.errors import ConfigError
from revetl.warehouse.package import PACKAGE_DIR

__all__ = ["WAREHOUSES", "Scaffold", "create_project", "profiles_text"]

FILES = Path(__file__).parent / "files"
WAREHOUSES = ("duckdb", "postgres")
# template in files/ -> where it goes in the new project
LAYOUT = {
    "dbt_project.yml": "dbt_project.yml",
    "packages.yml": "packages.yml",
    "revetl.yml": "revetl.yml",
    "traits.yml": "traits.yml",
    "engaged_users.sql": "audiences/engaged_users.sql",
    "engaged_users_test.yml": "audiences/tests/engaged_users.yml",
    "engaged_users_to_braze.yml": "syncs/engaged_users_to_braze.yml",
    "gitignore": ".gitignore",
    "workflow.yml": ".github/workflows/revetl.yml",
}
EMPTY_DIRS = ("models", "macros")  # kept in git by a .gitkeep: where the project's own dbt files go

# The PostgreSQL the CI workflow builds on: a service container, reached through the libpq variables.
_PG_SERVICE = """    services:
      postgres:
        image: postgres:15
        env:
          POSTGRES_PASSWORD: postgres
          POSTGRES_DB: revetl
        ports: ["5432:5432"]
        options: >-
          --health-cmd pg_isready --health-interval 5s --health-timeout 5s --health-retries 10
"""
_PG_ENV = """      PGHOST: 127.0.0.1
      PGPORT: "5432"
      PGUSER: postgres
      PGPASSWORD: postgres
      PGDATABASE: revetl
"""


@dataclass(frozen=True)
class Scaffold:
    """What `create_project` wrote."""

    root: Path
    warehouse: str
    files: tuple[Path, ...]  # relative to root


def create_project(directory: Path, warehouse: str = "duckdb", force: bool = False) -> Scaffold:
    """Write a new project into `directory` (created if missing), for the profiles.yml output `warehouse`.

    A directory that is not empty is refused, unless `force`, which writes revetl's files over any of
    the same name and leaves the others."""
    directory = Path(directory)
    if warehouse not in WAREHOUSES:
        raise ConfigError(f"unknown warehouse {warehouse!r}; choose one of {', '.join(WAREHOUSES)}")
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory} is a file, not a directory; name a new or empty directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise ConfigError(f"{directory} is not empty; name a new or empty directory, or add --force to write "
                          "the project's files into it (replacing files of the same names)")
    holes = {
        "name": project_name(directory),
        "requirement": requirement(),
        "services": _PG_SERVICE if warehouse == "postgres" else "",
        "env": _PG_ENV if warehouse == "postgres" else "",
    }
    texts = {target: _fill((FILES / source).read_text(encoding="utf-8"), holes) for source, target in LAYOUT.items()}
    texts["profiles.yml"] = profiles_text(warehouse)
    texts.update({f"{folder}/.gitkeep": "" for folder in EMPTY_DIRS})
    for relative, text in texts.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return Scaffold(directory, warehouse, tuple(Path(relative) for relative in sorted(texts)))


def _fill(template: str, holes: dict[str, str]) -> str:
    return re.sub(r"@([a-z]+)@", lambda found: holes[found.group(1)], template)


def project_name(directory: Path) -> str:
    """The dbt project name: the directory's name as a lower-case identifier, never `revetl` (the
    package's own name)."""
    name = re.sub(r"[^a-z0-9_]+", "_", Path(directory).resolve().name.lower()).strip("_") or "project"
    if name[0].isdigit():
        name = f"project_{name}"
    return f"{name}_project" if name == "revetl" else name


def requirement() -> str:
    """What the CI workflow installs: this revetl's version."""
    try:
        return f"revetl=={metadata.version('revetl')}"
    except metadata.PackageNotFoundError:  # running from a source tree that is not installed
        return "revetl"


def profiles_text(warehouse: str) -> str:
    """revetl's profiles.yml with only the output `warehouse`, which is also the default target; its
    comments kept. The file is read as lines: its top-level profile, `target:`, then `outputs:` whose
    entries (each with the comment lines above it) sit four spaces in."""
    lines = (PACKAGE_DIR / "profiles.yml").read_text(encoding="utf-8").splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.strip() == "outputs:") + 1
    head = [re.sub(r"^(\s+target:\s*)\S+", rf"\g<1>{warehouse}", line) for line in lines[:start]]
    outputs: dict[str, list[str]] = {}
    comments: list[str] = []  # the comment lines above the next output
    current: list[str] = []
    for line in lines[start:]:
        if re.match(r"^    #", line):
            comments.append(line)
        elif found := re.match(r"^    ([A-Za-z_]\w*):\s*$", line):
            current = outputs[found.group(1)] = [*comments, line]
            comments = []
        else:
            current += [*comments, line]
            comments = []
    if warehouse not in outputs:
        raise ConfigError(f"revetl's profiles.yml has no output {warehouse!r}")
    return "".join(head + outputs[warehouse])

