"""`revetl audiences test`: each audience test (fixtures.py) in a throwaway DuckDB warehouse.

All tests share one scratch project in a temporary directory: links to every file and folder of the
project (models, macros, audiences, traits.yml, packages.yml, ...) but its own profiles.yml, whose one
output is a DuckDB file in that directory, and its own target/ and dbt_packages/. So a test never
touches the project's warehouse, whatever it is (PostgreSQL included), nor its build.

Per test file: its events land as Parquet, `dbt run` builds the models as of its `as_of` (a new
warehouse file each time), and the audience runs there as `revetl plan` runs it (compiled, sandboxed,
its key cast to text). One build per file, not one for all: an audience may compare people with each
other (a top 10%, a count over everyone), so a test's events must be the whole world it sees. dbt's data
tests are not run (`dbt run`, not `build`): they test revetl's models, which its own suite does.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from revetl.audiences.compile import Audience, audience_columns, compile_audience, key_problem, load_audience
from revetl.audiences.fixtures import Fixture
from revetl.config import PROJECT_FILE, Project, read_yaml
from revetl.errors import ConfigError, RevetlError, WarehouseError

__all__ = ["Outcome", "run_fixtures"]

# Entries of the project the scratch copy does not link: its own take their place (profiles.yml, dbt's
# output and packages) or they are the project's data.
_NOT_LINKED = {"profiles.yml", "target", "data", "logs", "dbt_packages", "package-lock.yml", ".git", ".user.yml"}
_TARGET = "audience_tests"


@dataclass(frozen=True)
class Outcome:
    """One test file's result: the members missing and unexpected, or why it could not run."""

    fixture: Fixture
    members: frozenset[str] = frozenset()
    seconds: float = 0.0
    error: str | None = None

    @property
    def missing(self) -> list[str]:
        """Expected, not in the audience."""
        return sorted(self.fixture.members - self.members)

    @property
    def unexpected(self) -> list[str]:
        """In the audience, not expected."""
        return sorted(self.members - self.fixture.members)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.missing and not self.unexpected


def run_fixtures(project: Project, fixtures: list[Fixture], scratch_dir: Path,
                 on_outcome: Callable[[Outcome], None] = lambda outcome: None) -> list[Outcome]:
    """Run every test in a scratch project under `scratch_dir` (empty; the caller removes it)."""
    outcomes = []
    scratch = _scratch_project(project, scratch_dir)
    with _work_dir(scratch_dir / "work"):
        for fixture in fixtures:
            started = time.monotonic()
            try:
                # read from the project, so that every message names its file; an unknown name fails at once
                members = _members(scratch, fixture, load_audience(project, fixture.audience))
            except RevetlError as exc:
                outcome = Outcome(fixture, seconds=time.monotonic() - started, error=str(exc))
            else:
                outcome = Outcome(fixture, members, time.monotonic() - started)
            outcomes.append(outcome)
            on_outcome(outcome)
    return outcomes


def _scratch_project(project: Project, base: Path) -> Project:
    root = base / "project"
    root.mkdir(parents=True)
    for entry in project.root.iterdir():
        if entry.name not in _NOT_LINKED:
            (root / entry.name).symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
    profile = read_yaml(project.root / PROJECT_FILE).get("profile")
    output = {"type": "duckdb", "path": str(base / "warehouse.duckdb"), "threads": 1,
              "settings": {"TimeZone": "UTC", "memory_limit": "1GB"}}
    (root / "profiles.yml").write_text(json.dumps({profile: {"target": _TARGET, "outputs": {_TARGET: output}}}),
                                       encoding="utf-8")
    return replace(project, root=root, landing_dir=base / "events", target_dir=base / "target", target=_TARGET)


@contextlib.contextmanager
def _work_dir(path: Path) -> Iterator[None]:
    """revetl's work files (locks, spills) of the scratch warehouse in the scratch directory, even when
    $REVETL_WORK_DIR names the project's."""
    before = os.environ.get("REVETL_WORK_DIR")
    os.environ["REVETL_WORK_DIR"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("REVETL_WORK_DIR", None)
        else:
            os.environ["REVETL_WORK_DIR"] = before


def _members(scratch: Project, fixture: Fixture, audience: Audience) -> frozenset[str]:
    """Build the scratch warehouse from the test's events as of its as_of; the audience's keys there."""
    from sqlglot import exp

    from revetl.landing.parquet import write_rows
    from revetl.warehouse.connection import connect, duckdb_path
    from revetl.warehouse.dbt import dbt_vars, run_dbt

    shutil.rmtree(scratch.landing_dir, ignore_errors=True)
    warehouse = duckdb_path(scratch)
    for leftover in (warehouse, warehouse.with_name(warehouse.name + ".wal")):
        leftover.unlink(missing_ok=True)
    write_rows(scratch.landing_dir, fixture.rows, prefix="test")
    outcome = run_dbt(scratch, "run", [], dbt_vars(scratch, fixture.as_of))
    failed = [item for item in outcome.result or [] if str(item.status) not in ("success", "skipped")]
    if failed or not outcome.success:
        detail = f"{failed[0].node.name}: {' '.join(str(failed[0].message).split())[:300]}" if failed else \
            "see the dbt log"
        raise ConfigError(f"the models did not build on its events ({detail})")
    sql = compile_audience(scratch, audience)
    with contextlib.closing(connect(scratch, read_only=True, sandbox=True)) as connection:
        try:
            columns = audience_columns(connection, sql)
            key = next((c for c in columns if c.lower() == audience.key.lower()), None)
            if key is None:
                raise ConfigError(key_problem(audience, columns).sentence())
            column = connection.render(exp.to_identifier(key))
            rows = connection.fetchall(
                f"select distinct cast({column} as varchar) from ({sql}\n) as audience where {column} is not null")
        except WarehouseError as exc:
            raise WarehouseError(f"{audience.path}: {exc}") from exc
    return frozenset(row[0] for row in rows)
