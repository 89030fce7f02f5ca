"""`revetl audiences list` and `revetl audiences preview`: what each audience is, and who is in it.

Both only read: the preview runs the compiled audience on a read-only, sandboxed connection (a
count, then the first rows ordered by the key, so the sample is the same on every run of the same
build).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlglot import exp

from revetl.sync import state
from revetl.audiences.check import check_audiences, warehouse_if_built
from revetl.audiences.compile import (
    BUILD_INFO,
    Problem,
    audience_columns,
    compile_audience,
    key_problem,
    load_audience,
    read_audience,
)
from revetl.config import Project
from revetl.errors import ConfigError, QueryError, WarehouseError
from revetl.warehouse.connection import Connection, connect
from revetl.warehouse.relations import relations

__all__ = ["Preview", "Summary", "audience_summaries", "preview_audience", "print_audiences", "print_preview"]


@dataclass(frozen=True)
class Summary:
    """One line of `revetl audiences list`."""

    name: str
    description: str
    columns: list[str] | None  # None when unknown (a problem, or `SELECT *` before the first build)
    size: int | None  # members at the audience's latest sync run (state.last_sizes); None if never synced
    problems: int


@dataclass(frozen=True)
class Preview:
    """An audience's size and first rows, as of the latest build."""

    name: str
    description: str
    key: str
    as_of: dt.datetime | None
    size: int
    columns: list[str]
    rows: list[tuple[Any, ...]]


def audience_summaries(project: Project) -> list[Summary]:
    """Every audience with its description, output columns and last known size."""
    with warehouse_if_built(project) as connection:
        checked = check_audiences(project, connection)
        sizes = state.last_sizes(connection) if connection is not None else {}  # one read for every audience
    summaries = []
    for name, (columns, problems) in checked.items():
        audience = read_audience(project.audiences_dir / f"{name}.sql")
        description = audience.message if isinstance(audience, Problem) else audience.description
        summaries.append(Summary(name, description, columns, sizes.get(name), sum(not p.warning for p in problems)))
    return summaries


def preview_audience(
    project: Project, name: str, limit: int = 10, connection: Connection | None = None
) -> Preview:
    """Compile the audience and run it: its size and its first `limit` rows by key."""
    audience = load_audience(project, name)
    sql = compile_audience(project, audience)
    own = connection is None
    connection = connection or connect(project, read_only=True, sandbox=True)
    warehouse = connection.source  # where the models are (on Spark, not the state file)
    try:
        try:
            columns = audience_columns(warehouse, sql)
        except WarehouseError as exc:
            raise WarehouseError(f"{audience.path}: {exc}") from exc
        if audience.key.lower() not in {c.lower() for c in columns}:
            raise ConfigError(key_problem(audience, columns).sentence())
        key = warehouse.render(exp.to_identifier(audience.key))
        try:
            size = warehouse.scalar(f"select count(*) from ({sql}\n) as audience")
            rows = warehouse.fetchall(f"select * from ({sql}\n) as audience order by {key} nulls last limit ?", [limit])
        except QueryError as exc:
            raise WarehouseError(f"{audience.path}: the audience failed in the warehouse: {exc}") from exc
        return Preview(name, audience.description, audience.key, _as_of(project, warehouse), size, columns, rows)
    finally:
        if own:
            connection.close()


def _as_of(project: Project, connection: Connection) -> dt.datetime | None:
    relation = relations(project).get(BUILD_INFO)
    with contextlib.suppress(QueryError):  # a warehouse built before build_info existed
        if relation:  # written as DuckDB writes it; rendered in the warehouse's dialect
            table = exp.to_table(relation, dialect="duckdb")
            return connection.scalar(exp.select(exp.func("max", exp.column("as_of"))).from_(table))
        return None
    return None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    return str(value)


def print_audiences(summaries: list[Summary], console: Console) -> None:
    """`revetl audiences list`: one row per audience."""
    table = Table(title="audiences", title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("description", overflow="fold")
    table.add_column("columns", overflow="fold")
    table.add_column("last known size", justify="right")
    for summary in summaries:
        if summary.problems:
            columns = f"[red]{summary.problems} problem(s): run `revetl audiences check`[/]"
        elif summary.columns is None:
            columns = "[yellow]unknown until `revetl build`[/]"
        else:
            columns = ", ".join(summary.columns)
        size = "-" if summary.size is None else f"{summary.size:,}"
        table.add_row(summary.name, summary.description, columns, size)
    console.print(table)
    if not summaries:
        console.print("no audiences yet: write one in audiences/NAME.sql (see README, Audiences)")


def print_preview(preview: Preview, console: Console) -> None:
    """`revetl audiences preview`: size, as-of and sample rows as a table."""
    as_of = f" as of {_cell(preview.as_of)}" if preview.as_of else ""
    console.print(f"[bold]{preview.name}[/]: {preview.description}", highlight=False)
    console.print(f"{preview.size:,} members{as_of} (key {preview.key})", highlight=False)
    table = Table(title=f"first {len(preview.rows)} by {preview.key}", title_justify="left")
    for column in preview.columns:
        table.add_column(column, overflow="fold")
    for row in preview.rows:
        table.add_row(*[_cell(value) for value in row])
    console.print(table)
