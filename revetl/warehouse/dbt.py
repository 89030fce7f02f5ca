"""Run the dbt project in-process (dbtRunner) and report each model and test.

`revetl build` = validate traits.yml, check events have landed, then `dbt build` with the vars
revetl owns (landing_dir, as_of, computed_traits, trait_models), from the project directory so that
relative paths in profiles.yml mean the same to dbt and to revetl.

Build, then publish. dbt builds into a staging copy of the warehouse
(`<work_dir>/build/<warehouse file name>`, same settings, same catalog name), not into the
warehouse itself, and only a build whose every model and test passed is published: its tables and
views replace the warehouse's in one transaction, `build_info` with them. So a build that fails
(a bad model, a failing test, a corrupt landing file) leaves every public model and the "as of"
time as they were, and audiences never see half a build. And the warehouse is held only while
publishing (seconds), not for the whole build: syncs, plans and previews run meanwhile (an
embedded DuckDB file admits one writing process at a time). One build runs at a time. The
staging copy is kept between builds (disk: about the size of the models) so that `--select`
rebuilds only what it names.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from revetl import locks
from revetl.config import PROJECT_FILE, Project, read_yaml
from revetl.errors import BuildError, ConfigError, QueryError
from revetl.warehouse.traits import load_traits

__all__ = ["BuildResult", "NodeResult", "build_project", "dbt_vars", "print_results", "run_dbt"]


@dataclass(frozen=True)
class NodeResult:
    """One model or test as dbt finished it."""

    name: str
    kind: str  # model | test | ...
    status: str  # success | pass | error | fail | warn | skipped
    seconds: float
    message: str

    @property
    def ok(self) -> bool:
        return self.status in ("success", "pass", "warn")

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"


@dataclass
class BuildResult:
    """Everything `revetl build` reports."""

    nodes: list[NodeResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    published: int = 0  # relations published into the warehouse (0: the build failed, nothing changed)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failures and not self.skipped

    @property
    def failures(self) -> list[NodeResult]:
        return [node for node in self.nodes if not node.ok and not node.skipped]

    @property
    def skipped(self) -> list[NodeResult]:
        return [node for node in self.nodes if node.skipped]


def dbt_vars(project: Project, as_of: dt.datetime | None = None, **extra: Any) -> dict[str, Any]:
    """The vars revetl passes to every dbt invocation."""
    traits, trait_models = load_traits(project.traits_file)
    if as_of is not None and as_of.tzinfo is not None:
        as_of = as_of.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return {
        "landing_dir": project.landing_dir.as_posix(),
        "as_of": as_of.isoformat(sep=" ") if as_of else None,
        "computed_traits": [trait.as_var() for trait in traits],
        "trait_models": trait_models,
        **extra,
    }


@contextlib.contextmanager
def _in_directory(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_dbt(project: Project, command: str, args: list[str], vars_: dict[str, Any], callbacks: list | None = None,
            profiles_dir: Path | None = None) -> Any:
    """Invoke one dbt command in-process; returns dbtRunnerResult. Raises BuildError if dbt cannot run."""
    from dbt.cli.main import dbtRunner

    from revetl.warehouse.connection import dbt_target_path, target_name

    target_path = dbt_target_path(project)
    argv = [
        command,
        "--project-dir", str(project.root),
        "--profiles-dir", str(profiles_dir or project.root),
        *([] if profiles_dir else ["--target", target_name(project)]),
        "--target-path", str(target_path),
        "--log-path", str(target_path / "logs"),
        "--vars", json.dumps(vars_),
        "--log-level", "none",  # revetl reports results itself; dbt.log keeps the detail
        "--log-level-file", "info",
        "--no-use-colors",
        "--no-send-anonymous-usage-stats",
        *args,
    ]
    with _in_directory(project.root):
        try:
            result = dbtRunner(callbacks=callbacks or []).invoke(argv)
        finally:
            _release_warehouse()
    if result.exception is not None:
        raise BuildError(f"dbt could not run `{command}`: {str(result.exception).strip()}")
    return result


def _release_warehouse() -> None:
    """dbt-duckdb caches its DuckDB handle for the life of the process; close it so that revetl
    (or another process) can open the warehouse file afterwards."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        if DuckDBConnectionManager._ENV is not None:
            DuckDBConnectionManager._ENV.close()
            DuckDBConnectionManager._ENV = None


def _landed_files(landing_dir: Path) -> bool:
    return any(landing_dir.glob("**/*.parquet")) if landing_dir.is_dir() else False


def build_project(
    project: Project,
    as_of: dt.datetime | None = None,
    select: str | None = None,
    console: Console | None = None,
    extra_vars: dict[str, Any] | None = None,
) -> BuildResult:
    """`dbt build` the project (models, then their tests) into the staging copy, collect a result per
    node, and publish the staging copy into the warehouse if everything passed."""
    if not _landed_files(project.landing_dir):
        raise ConfigError(
            f"no events have landed in {project.landing_dir}; run `revetl ingest`, `revetl generate` "
            "or `revetl collect` first"
        )
    vars_ = dbt_vars(project, as_of, **(extra_vars or {}))
    args = ["--select", select] if select else []
    started = time.monotonic()
    with _build_lock(project):
        staging = _staging_path(project)
        if select:
            _seed_staging(project, staging)
        with _staging_profile(project, staging) as profiles_dir, _progress(console) as on_event:
            outcome = run_dbt(project, "build", args, vars_, callbacks=[on_event], profiles_dir=profiles_dir)
        result = BuildResult()
        for item in outcome.result or []:
            node = item.node
            result.nodes.append(
                NodeResult(
                    name=node.name,
                    kind=str(node.resource_type),
                    status=str(item.status),
                    seconds=float(item.execution_time or 0.0),
                    message=_one_line(item.message),
                )
            )
        if not outcome.success and not result.failures:
            result.error = "dbt build failed before running any model; see target/logs/dbt.log"
        result.error = result.error or _corrupt_landing_file(project, result)
        if result.ok:
            result.published = _publish(project, staging)
    result.seconds = time.monotonic() - started
    return result


_CORRUPT_FILE = re.compile(r"[Ff]ile '([^']+\.parquet)'")


def _corrupt_landing_file(project: Project, result: BuildResult) -> str | None:
    """One sentence naming a landing file DuckDB could not read, if that is why the build failed."""
    for node in result.failures:
        found = _CORRUPT_FILE.search(node.message)
        if found and Path(found.group(1)).resolve().is_relative_to(project.landing_dir.resolve()):
            reason = node.message[node.message.find(":") + 1:].split(" LINE ")[0].strip()
            return (
                f"the landing file {found.group(1)} cannot be read as Parquet ({reason}); move it out of "
                f"{project.landing_dir} and build again (the warehouse was left as it was)"
            )
    return None


def _staging_path(project: Project) -> Path:
    """The staging copy dbt builds into: same file name (so the same catalog name) in the work dir."""
    from revetl.warehouse.connection import duckdb_path, work_dir

    directory = work_dir(project) / "build"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / duckdb_path(project).name


def _build_lock(project: Project) -> contextlib.AbstractContextManager[None]:
    """One build at a time; a second one stops at once, naming the first (revetl/locks.py)."""
    from revetl.warehouse.connection import work_dir

    return locks.hold(locks.lock_path(work_dir(project), "build"), lambda holder: BuildError(
        f"a build is already running ({holder}); not starting a second one"))


@contextlib.contextmanager
def _staging_profile(project: Project, staging: Path) -> Iterator[Path]:
    """A profiles directory whose only target is the project's, pointed at the staging copy.

    Written with the rendered settings of the project's DuckDB target (no secrets live there), readable
    by its owner only, and removed after the run."""
    from revetl.warehouse.connection import target_config

    config = {**target_config(project), "path": str(staging)}
    profile = read_yaml(project.root / PROJECT_FILE).get("profile")
    directory = staging.parent / f"profile-{os.getpid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    path = directory / "profiles.yml"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({profile: {"target": "revetl_build", "outputs": {"revetl_build": config}}}, handle)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _seed_staging(project: Project, staging: Path) -> None:
    """Before a `--select` build without a staging copy yet (a first build by this revetl), copy the
    warehouse into it, so that the models the selection does not rebuild are there to read."""
    from revetl.warehouse.connection import connect, duckdb_path

    main = duckdb_path(project)
    if staging.exists() or not main.exists():
        return
    # A reader holds the file: no process writes it (or its WAL) while it is copied.
    with contextlib.closing(connect(project, read_only=True)):
        for suffix in ("", ".wal"):
            source = main.with_name(main.name + suffix)
            if source.exists():
                shutil.copyfile(source, staging.with_name(staging.name + suffix))


_SKIPPED_SCHEMAS = ("revetl_state", "information_schema", "pg_catalog")


def _publish(project: Project, staging: Path) -> int:
    """Replace the warehouse's models by the staging copy's, in one transaction; returns the relations
    published. Tables are copied; views are recreated from their definitions, which name their tables
    without a catalog, so they read the warehouse's own."""
    from revetl.warehouse.connection import connect

    connection = connect(project)  # waits for syncs and plans to finish their short steps
    try:
        connection.execute(f"attach '{_sql_text(str(staging))}' as revetl_build (read_only)")
        relations = connection.execute(
            """select schema_name, table_name, 'table', null from duckdb_tables()
               where database_name = 'revetl_build' and not temporary
               union all
               select schema_name, view_name, 'view', sql from duckdb_views()
               where database_name = 'revetl_build' and not internal and not temporary""",
        ).fetchall()
        existing = {
            (schema, name): kind for schema, name, kind in connection.execute(
                """select schema_name, table_name, 'table' from duckdb_tables()
                   where database_name = current_database()
                   union all
                   select schema_name, view_name, 'view' from duckdb_views()
                   where database_name = current_database() and not internal"""
            ).fetchall()
        }
        published = [r for r in relations if r[0] not in _SKIPPED_SCHEMAS]
        with connection.transaction():
            for schema in sorted({r[0] for r in published}):
                connection.execute(f"create schema if not exists {_quote(schema)}")
            for schema, name, kind, sql in sorted(published, key=lambda r: r[2] == "view"):
                target = f"{_quote(schema)}.{_quote(name)}"
                was = existing.get((schema, name))
                if was is not None and was != kind:
                    connection.execute(f"drop {was} {target}")
                if kind == "table":
                    connection.execute(f"create or replace table {target} as select * from revetl_build.{target}")
                else:
                    connection.execute("create or replace view" + sql.strip()[len("create view"):])
        connection.execute("detach revetl_build")
    except QueryError as exc:
        reason = _one_line(exc.__cause__ or exc)  # the engine's whole message, on one line
        raise BuildError(f"the build passed but could not be published into the warehouse: {reason}") from exc
    finally:
        connection.close()
    return len(published)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def _one_line(message: Any) -> str:
    text = " ".join(str(message or "").split())
    return text if len(text) <= 300 else text[:297] + "..."


@contextlib.contextmanager
def _progress(console: Console | None) -> Iterator[Any]:
    """A rich progress bar fed by dbt's NodeStart/NodeFinished events."""
    if console is None or not console.is_terminal:
        yield lambda event: None
        return
    progress = Progress(
        TextColumn("[bold]dbt build"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True,
    )
    task = progress.add_task("", total=None)

    def on_event(event: Any) -> None:
        name = event.info.name
        if name == "NodeStart":
            progress.update(task, description=event.data.node_info.node_name)
        elif name == "NodeFinished":
            progress.advance(task)

    with progress:
        yield on_event


def print_results(result: BuildResult, console: Console) -> None:
    """A table of models and tests, then one line: all good, or what failed."""
    table = Table(title="revetl build", show_lines=False)
    table.add_column("node")
    table.add_column("kind")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    table.add_column("message", overflow="fold")
    colours = {True: "green", False: "red"}
    for node in result.nodes:
        table.add_row(
            node.name, node.kind, f"[{colours[node.ok]}]{node.status}[/]", f"{node.seconds:.2f}",
            "" if node.ok and node.kind == "test" else node.message,
        )
    console.print(table)
    if result.error:
        # soft_wrap: the sentence names a path, which must not be cut by the terminal width.
        console.print(Text("build failed: ", style="bold red") + Text(result.error), soft_wrap=True)
    elif result.failures:
        names = ", ".join(f"{node.kind} {node.name}" for node in result.failures)
        skipped = f" ({len(result.skipped)} downstream skipped)" if result.skipped else ""
        console.print(f"[bold red]build failed:[/] {names}{skipped}", highlight=False)
    else:
        console.print(f"[green]built {sum(n.kind == 'model' for n in result.nodes)} models and passed "
                      f"{sum(n.kind == 'test' for n in result.nodes)} tests in {result.seconds:.1f}s[/]")
