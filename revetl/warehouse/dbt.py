"""Run the dbt project in-process (dbtRunner) and report each model and test.

`revetl build` = validate traits.yml, check events have landed, then `dbt build` with the vars
revetl owns (landing_dir, as_of, computed_traits, trait_models), from the project directory so that
relative paths in profiles.yml mean the same to dbt and to revetl. One build runs at a time (a file
lock in the target's work dir).

Where dbt builds depends on the warehouse:
- DuckDB: into a staging copy of the warehouse, published only when every model and test passed
  (staging.py), so a failed build leaves every model and the "as of" time as they were.
- PostgreSQL: in place, in the target schema (the `postgres` output of profiles.yml). dbt's table
  materialization builds each model beside its table and swaps the two in one transaction, so a
  reader sees every table whole, old or new; a model that fails, or is skipped after a failure
  upstream, keeps its previous table, and so does `build_info` (built after every other model), so
  the "as of" time stays the one the traits were computed at.
- Spark: in place too, in the `spark` output's schema, through the session revetl starts first
  (warehouse/spark.py). Each table is written beside the old one and swapped in once complete
  (macros/materialization_spark_table.sql), so a failure leaves what PostgreSQL's does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from revetl.config import Project
from revetl.errors import BuildError, ConfigError
from revetl.warehouse.staging import publish, seed_staging, staging_path, staging_profile
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
    from revetl.governance.quarantine import quarantine_dir
    from revetl.warehouse.connection import dialect as target_dialect

    dialect = target_dialect(project)
    traits, trait_models = load_traits(project.traits_file, dialect)
    if as_of is not None and as_of.tzinfo is not None:
        as_of = as_of.astimezone(dt.timezone.utc).replace(tzinfo=None)
    quarantine = quarantine_dir(project.landing_dir)
    return {
        "landing_dir": project.landing_dir.as_posix(),
        # Events a tracking plan blocked (revetl/governance/), when there are any: read in place on DuckDB and
        # Spark; on PostgreSQL, the table quarantine.events that the load before the build mirrors them into.
        "quarantine_dir": quarantine.as_posix(),
        "quarantine_files": _landed_files(quarantine),
        "as_of": as_of.isoformat(sep=" ") if as_of else None,
        "computed_traits": [trait.as_var(dialect) for trait in traits],
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

    from revetl.warehouse import package
    from revetl.warehouse.connection import dbt_target_path, target_name

    package.point_env()
    if command != "deps" and package.needs_install(project.root):
        run_dbt(project, "deps", ["--upgrade"], {}, profiles_dir=profiles_dir)  # revetl's models, as installed
    target_path = dbt_target_path(project)
    argv = [
        command,
        "--project-dir", str(project.root),
        "--profiles-dir", str(profiles_dir or project.root),
        # `dbt deps` reads no warehouse and writes no target: it takes neither option.
        *([] if profiles_dir or command == "deps" else ["--target", target_name(project)]),
        *([] if command == "deps" else ["--target-path", str(target_path)]),
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
    """`dbt build` the project (models, then their tests) and collect a result per node. On DuckDB the
    build goes into the staging copy, published into the warehouse if everything passed; on a server
    warehouse, in place (the module's docstring says what a failure leaves)."""
    from revetl.warehouse.connection import warehouse_type

    kind = warehouse_type(project)
    embedded = kind == "duckdb"
    _check_landed(project, reads_files=kind in ("duckdb", "spark"))
    vars_ = dbt_vars(project, as_of, **(extra_vars or {}))
    args = ["--select", select] if select else []
    started = time.monotonic()
    with _build_lock(project):
        if embedded:
            staging = staging_path(project)
            if select:
                seed_staging(project, staging)
            with staging_profile(project, staging) as profiles_dir:
                result = _run_build(project, args, vars_, console, profiles_dir)
            result.error = result.error or _corrupt_landing_file(project, result)
            if result.ok:
                result.published = publish(project, staging)
        else:
            if kind == "spark":  # revetl's session first, with the project's paths: dbt then finds it
                from revetl.warehouse.connection import spark_session

                spark_session(project)
            result = _run_build(project, args, vars_, console)
            result.published = sum(node.kind == "model" and node.ok for node in result.nodes)
    result.seconds = time.monotonic() - started
    return result


def _run_build(project: Project, args: list[str], vars_: dict[str, Any], console: Console | None,
               profiles_dir: Path | None = None) -> BuildResult:
    with _progress(console) as on_event:
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
    return result


def _check_landed(project: Project, reads_files: bool) -> None:
    """Stop before dbt when there is nothing to build from: no landed file (DuckDB and Spark read them in
    place), or no loaded row (PostgreSQL reads `landing.events`)."""
    if reads_files and not _landed_files(project.landing_dir):
        raise ConfigError(
            f"no events have landed in {project.landing_dir}; run `revetl ingest`, `revetl generate` "
            "or `revetl collect` first"
        )
    if not reads_files and not _events_loaded(project):
        raise ConfigError("no events have been loaded into the warehouse yet (its table landing.events is "
                          "missing or empty); run `revetl load` first")


def _events_loaded(project: Project) -> bool:
    """Whether the server warehouse's `landing.events` has a row (False when the table is missing)."""
    from revetl.warehouse.connection import connect

    with connect(project, read_only=True) as connection:
        return bool(connection.scalar("select to_regclass('landing.events') is not null")) and bool(
            connection.scalar("select exists (select 1 from landing.events)"))


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


def _build_lock(project: Project) -> contextlib.AbstractContextManager[None]:
    """One build of the warehouse at a time, from any process on any host reaching it; a second one stops at
    once, naming the first (connection.lock)."""
    from revetl.warehouse.connection import lock

    return lock(project, "build", lambda holder: BuildError(
        f"a build is already running ({holder}); not starting a second one"))


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
