"""`revetl audiences check`: every problem in every audience and sync file, with file and line.

Each audience is rendered and checked (compile.py, sql.py). Its output columns come
from the warehouse when one has been built (`LIMIT 0`, reads no rows; this also catches unknown
columns and tables), else from sqlglot; `SELECT *` without a warehouse is a problem, because the
columns cannot be known before running. Then each sync file, reporting every problem with its
line (config.check_sync): the file is valid (an unknown key names the nearest known one), every
`${VAR}` is set, the destination type is installed and accepts its settings, the audience exists
and outputs the `identity.from` and `fields` columns.
A destination's remarks on the mapping (`Destination.check`, e.g. a Salesforce Contact mapped
without LastName) are warnings: printed, but they do not fail the check. So is a construct that drifts
between warehouses written raw in an audience (`try_cast`, a difference in days: portable.py).

The probe runs on the project's target (`--target`): a DuckDB file when it exists; a server warehouse
always (an unreachable server is an error, not a check without it).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from revetl.audiences.compile import (
    Audience,
    Compiled,
    Problem,
    audience_columns,
    audience_names,
    inspect_audience,
    key_problem,
    read_audience,
)
from revetl.config import Project, SyncConfig, check_sync, expand_env, sync_names
from revetl.destinations import load_destination, settings_problems, unknown_type
from revetl.errors import ConfigError, QueryError, RevetlError
from revetl.warehouse.connection import Connection, connect, duckdb_path, warehouse_type
from revetl.warehouse.relations import relations
from revetl.yaml_files import key_line

__all__ = ["check_audiences", "check_project", "warehouse_if_built"]


def check_project(project: Project) -> list[Problem]:
    """Every problem in `audiences/*.sql` and `syncs/*.yml`, sorted by file and line."""
    with warehouse_if_built(project) as connection:
        audiences = check_audiences(project, connection)
    problems = [problem for _, found in audiences.values() for problem in found]
    columns = {name: found for name, (found, _) in audiences.items()}
    for name in sync_names(project):
        problems += _check_sync(project, name, columns)
    return sorted(problems, key=lambda p: (str(p.path), p.line or 0))


def check_audiences(
    project: Project, connection: Connection | None
) -> dict[str, tuple[list[str] | None, list[Problem]]]:
    """Audience name -> (output columns, or None when they cannot be known; its problems)."""
    refs = relations(project)
    return {name: _check_audience(project, name, refs, connection) for name in audience_names(project)}


@contextlib.contextmanager
def warehouse_if_built(project: Project) -> Iterator[Connection | None]:
    """A read-only, sandboxed connection (it runs audiences) if the warehouse exists and can be opened
    within REVETL_LOCK_WAIT, else None."""
    connection = None
    if warehouse_type(project) != "duckdb":
        connection = connect(project, read_only=True, sandbox=True)
    elif duckdb_path(project).exists():
        with contextlib.suppress(RevetlError):  # still held by another process: check without it
            connection = connect(project, read_only=True, sandbox=True)
    try:
        yield None if connection is None else connection.source  # Spark: the session, not the state file
    finally:
        if connection is not None:
            connection.close()


def _check_audience(
    project: Project, name: str, refs: dict[str, str], connection: Connection | None
) -> tuple[list[str] | None, list[Problem]]:
    """(output columns or None when unknown, problems) of one audience."""
    audience = read_audience(project.audiences_dir / f"{name}.sql")
    if isinstance(audience, Problem):
        return None, [audience]
    compiled = inspect_audience(project, audience, refs, connection.dialect if connection else None)
    problems = list(compiled.problems)
    if compiled.sql is None or problems:
        return compiled.columns if compiled.sql else None, problems + compiled.warnings
    if connection is None:
        if compiled.columns is None:
            return None, [Problem(audience.path, audience.body_line, (
                "`SELECT *` hides the output columns until the warehouse is built; name the columns "
                "or run `revetl build` first"
            ))]
        return compiled.columns, compiled.warnings
    columns, problems = _warehouse_columns(compiled, connection)
    return columns, problems + compiled.warnings


def _warehouse_columns(
    compiled: Compiled, connection: Connection
) -> tuple[list[str] | None, list[Problem]]:
    audience = compiled.audience
    try:
        columns = audience_columns(connection, compiled.sql or "")
    except RevetlError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, QueryError) else None
        # The engine points at the line of the query it ran, which starts with the audience's first line.
        line = (compiled.file_line(cause.line) if cause and cause.line else None) or _named_line(audience, str(exc))
        hint = "; run `revetl build` if a model is missing" if cause and cause.missing else ""
        return None, [Problem(audience.path, line, f"{exc}{hint}")]
    if audience.key.lower() not in {c.lower() for c in columns}:
        return columns, [key_problem(audience, columns)]
    return columns, []


def _named_line(audience: Audience, message: str) -> int:
    """The line of the audience that first names what the engine's `message` quotes (`column "x" does not
    exist`): for SQL sqlglot translated, whose lines are not the file's. Else the body's first line."""
    quoted = re.search(r'"([^"]+)"', message)
    if quoted:
        word = re.compile(rf"\b{re.escape(quoted.group(1))}\b", re.IGNORECASE)
        for number, text in enumerate(audience.template.splitlines(), audience.body_line):
            if word.search(text.split("--")[0]):
                return number
    return audience.body_line


def _check_sync(project: Project, name: str, columns: dict[str, list[str] | None]) -> list[Problem]:
    """Every problem of one sync file: the file itself (each with its line), its `${VAR}`s, then
    what it names (audience, columns, destination type) as far as the file can be read."""
    path = project.syncs_dir / f"{name}.yml"
    checked = check_sync(project, name)
    problems = [Problem(path, line, message) for line, message in checked.problems]
    if checked.yaml is None or not isinstance(checked.yaml.data, dict):
        return problems
    raw, lines = checked.yaml.data, checked.yaml.lines
    unset = _unset_variables(path, checked.yaml.root)
    problems += unset
    destination = raw.get("destination")
    kind = destination.get("type") if isinstance(destination, dict) else None
    if isinstance(kind, str) and kind and (unknown := unknown_type(kind)):
        problems.append(Problem(path, lines.get(("destination", "type")), unknown))
    elif checked.sync is not None and not unset:  # settings cannot be checked while a ${VAR} is unset
        problems += _destination_problems(checked.sync, path, lines)
    return problems + _column_problems(raw, path, lines, columns)


def _column_problems(
    raw: dict, path: Path, lines: dict[tuple[str, ...], int], columns: dict[str, list[str] | None]
) -> list[Problem]:
    """The audience the sync names exists, and outputs its `identity.from` and `fields` columns."""
    audience = raw.get("audience")
    if not isinstance(audience, str) or not audience:
        return []  # reported by check_sync
    if audience not in columns:
        known = ", ".join(columns) or "none"
        return [Problem(path, lines.get(("audience",)), (
            f"audience `{audience}` does not exist (no audiences/{audience}.sql); known audiences: {known}"
        ))]
    output = columns[audience]
    if output is None:  # the audience's own problems are reported on its file
        return []
    have = {c.lower() for c in output}
    shown = ", ".join(output)
    problems = []
    identity = raw.get("identity")
    key = identity.get("from") if isinstance(identity, dict) else None
    if isinstance(key, str) and key.lower() not in have:
        problems.append(Problem(path, lines.get(("identity", "from"), lines.get(("identity",))), (
            f"identity.from column `{key}` is not an output column of audience `{audience}` (it has: {shown})"
        )))
    fields = raw.get("fields")
    for column in fields if isinstance(fields, dict) else {}:
        if str(column).lower() not in have:
            problems.append(Problem(path, lines.get(("fields", str(column)), lines.get(("fields",))), (
                f"fields maps `{column}`, which is not an output column of audience `{audience}` (it has: {shown})"
            )))
    return problems


def _destination_problems(sync: SyncConfig, path: Path, lines: dict[tuple[str, ...], int]) -> list[Problem]:
    """Every problem of the destination's settings, then its own checks of the sync (identity,
    membership: the first error) and its warnings about the mapping (`Destination.check`)."""
    settings = settings_problems(sync)
    if settings:
        return [
            Problem(path, key_line(lines, ("destination", *loc)), f"`destination.{'.'.join(loc)}` {message}")
            for loc, message in settings
        ]
    try:
        destination = load_destination(sync)
    except ConfigError as exc:
        message = str(exc)
        found = re.match(rf"{re.escape(str(path))} (destination|membership):(?: `([^`]+)`)? (.*)", message, re.S)
        if found is None:
            return [Problem(path, None, message.removeprefix(f"{path}:").strip())]
        section, key, rest = found.groups()
        line = key_line(lines, (section, *key.split("."))) if key else None
        text = f"`{section}.{key}` {rest}" if key else f"{section}: {rest}"
        return [Problem(path, line or lines.get((section,)), text)]
    line = lines.get(("fields",)) or lines.get(("destination", "type"))
    return [Problem(path, line, warning, warning=True) for warning in destination.check()]


def _unset_variables(path: Path, root: yaml.Node | None) -> list[Problem]:
    """A problem for each `${VAR}` (without a `:-default`) that the environment does not set."""
    problems = []
    seen: set[int] = set()

    def walk(node: yaml.Node) -> None:
        if id(node) in seen:  # an aliased node is reported once, where it is written
            return
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode) and "${" in node.value:
            first = node.start_mark.line + 1 + (node.style in ("|", ">"))
            for match in re.finditer(r"\$\{[^}]*\}", node.value):
                try:
                    expand_env(match.group(), os.environ)
                except ConfigError:
                    variable = match.group()[2:-1].split(":-")[0]
                    line = first + node.value.count("\n", 0, match.start())
                    problems.append(Problem(path, line, f"environment variable {variable} is not set"))
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                walk(key)
                walk(value)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)

    if root is not None:
        walk(root)
    return problems
