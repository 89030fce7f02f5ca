"""`revetl audiences check`: every problem in every audience and sync file, with file and line.

Each audience is rendered and checked (audiences.py, audience_sql.py). Its output columns come
from the warehouse when one has been built (`LIMIT 0`, reads no rows; this also catches unknown
columns and tables), else from sqlglot; `SELECT *` without a warehouse is a problem, because the
columns cannot be known before running. Then each sync file is checked against the audience it
names: the file is valid, every `${VAR}` is set, the audience exists, its `identity.from` and
`fields` columns are output columns of that audience, and its destination accepts its settings.
A destination's remarks on the mapping (`Destination.check`, e.g. a Salesforce Contact mapped
without LastName) are warnings: printed, but they do not fail the check.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import yaml

from revetl.audiences import (
    Compiled,
    Problem,
    audience_columns,
    audience_names,
    inspect_audience,
    key_problem,
    read_audience,
    relations,
)
from revetl.config import Project, SyncConfig, expand_env, load_sync, sync_names
from revetl.destinations import destination_types, load_destination
from revetl.errors import ConfigError, RevetlError
from revetl.warehouse import connect, duckdb_path

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
    project: Project, connection: duckdb.DuckDBPyConnection | None
) -> dict[str, tuple[list[str] | None, list[Problem]]]:
    """Audience name -> (output columns, or None when they cannot be known; its problems)."""
    refs = relations(project)
    return {name: _check_audience(project, name, refs, connection) for name in audience_names(project)}


@contextlib.contextmanager
def warehouse_if_built(project: Project) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """A read-only, sandboxed connection (it runs audiences) if the warehouse exists and can be opened
    now, else None."""
    connection = None
    if duckdb_path(project).exists():
        with contextlib.suppress(RevetlError):  # e.g. a build holds the write lock: check without it
            connection = connect(project, read_only=True, sandbox=True)
    try:
        yield connection
    finally:
        if connection is not None:
            connection.close()


def _check_audience(
    project: Project, name: str, refs: dict[str, str], connection: duckdb.DuckDBPyConnection | None
) -> tuple[list[str] | None, list[Problem]]:
    """(output columns or None when unknown, problems) of one audience."""
    audience = read_audience(project.audiences_dir / f"{name}.sql")
    if isinstance(audience, Problem):
        return None, [audience]
    compiled = inspect_audience(project, audience, refs)
    problems = list(compiled.problems)
    if compiled.sql is None or problems:
        return compiled.columns if compiled.sql else None, problems
    if connection is None:
        if compiled.columns is None:
            return None, [Problem(audience.path, audience.body_line, (
                "`SELECT *` hides the output columns until the warehouse is built; name the columns "
                "or run `revetl build` first"
            ))]
        return compiled.columns, problems
    return _warehouse_columns(compiled, connection)


def _warehouse_columns(
    compiled: Compiled, connection: duckdb.DuckDBPyConnection
) -> tuple[list[str] | None, list[Problem]]:
    audience = compiled.audience
    try:
        columns = audience_columns(connection, compiled.sql or "")
    except RevetlError as exc:
        cause = str(exc.__cause__ or "")
        # DuckDB points at the line of the query it ran, which starts with the audience's first line.
        match = re.search(r"^LINE (\d+):", cause, re.MULTILINE)
        line = compiled.file_line(int(match.group(1))) if match else audience.body_line
        hint = "; run `revetl build` if a model is missing" if "does not exist" in cause else ""
        return None, [Problem(audience.path, line, f"{exc}{hint}")]
    if audience.key.lower() not in {c.lower() for c in columns}:
        return columns, [key_problem(audience, columns)]
    return columns, []


def _check_sync(project: Project, name: str, columns: dict[str, list[str] | None]) -> list[Problem]:
    path = project.syncs_dir / f"{name}.yml"
    text, lines = "", {}
    with contextlib.suppress(OSError, UnicodeDecodeError, yaml.YAMLError):  # load_sync reports these
        text = path.read_text(encoding="utf-8")
        lines = _key_lines(text)
    problems = _unset_variables(path, text) if lines else []
    try:
        sync = load_sync(project, name)
    except ConfigError as exc:
        return problems + [_from_error(path, str(exc), lines)]
    if not problems:  # a destination cannot be configured while a ${VAR} it reads is unset
        problems += _destination_problems(sync, path, lines)
    if sync.audience not in columns:
        known = ", ".join(columns) or "none"
        return problems + [Problem(path, lines.get(("audience",)), (
            f"audience `{sync.audience}` does not exist (no audiences/{sync.audience}.sql); known audiences: {known}"
        ))]
    output = columns[sync.audience]
    if output is None:  # the audience's own problems are reported on its file
        return problems
    have = {c.lower() for c in output}
    shown = ", ".join(output)
    if sync.key.lower() not in have:
        problems.append(Problem(path, lines.get(("identity", "from"), lines.get(("identity",))), (
            f"identity.from column `{sync.key}` is not an output column of audience `{sync.audience}` (it has: {shown})"
        )))
    for column in sync.fields:
        if column.lower() not in have:
            problems.append(Problem(path, lines.get(("fields", column), lines.get(("fields",))), (
                f"fields maps `{column}`, which is not an output column of audience `{sync.audience}` (it has: {shown})"
            )))
    return problems


def _destination_problems(sync: SyncConfig, path: Path, lines: dict[tuple[str, ...], int]) -> list[Problem]:
    """The destination's own checks of the sync (its settings, identity, membership: errors) and its
    warnings about the mapping (`Destination.check`). Syncs to a type not installed here are skipped."""
    if sync.destination_type not in destination_types():
        return []
    try:
        destination = load_destination(sync)
    except ConfigError as exc:
        message = str(exc)
        found = re.match(rf"{re.escape(str(path))} (destination|membership):(?: `([^`]+)`)? (.*)", message, re.S)
        if found is None:
            return [_from_error(path, message, lines)]
        section, key, rest = found.groups()
        line = lines.get((section, *key.split("."))) if key else None
        text = f"`{section}.{key}` {rest}" if key else f"{section}: {rest}"
        return [Problem(path, line or lines.get((section,)), text)]
    line = lines.get(("fields",)) or lines.get(("destination", "type"))
    return [Problem(path, line, warning, warning=True) for warning in destination.check()]


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Path of mapping keys (`("identity", "from")`) -> the line it is written on."""
    found: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = (*path, str(key.value))
                found.setdefault(here, key.start_mark.line + 1)
                walk(value, here)

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return found


def _unset_variables(path: Path, text: str) -> list[Problem]:
    """A problem for each `${VAR}` (without a `:-default`) that the environment does not set."""
    problems = []

    def walk(node: yaml.Node) -> None:
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

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root)
    return problems


def _from_error(path: Path, message: str, lines: dict[tuple[str, ...], int]) -> Problem:
    """A ConfigError from load_sync (`<path>, line N: ...` or `<path>: ...`) as a Problem with a line."""
    line: int | None = None
    if message.startswith(f"{path}, line "):
        number, _, message = message.removeprefix(f"{path}, line ").partition(": ")
        line = int(number) if number.isdigit() else None
    else:
        message = message.removeprefix(f"{path}:").strip()
        named = re.match(r"`([^`]+)`", message)  # validate() names the key: `identity.from` field required
        if named:
            parts = tuple(named.group(1).split("."))
            line = next((lines[parts[:n]] for n in range(len(parts), 0, -1) if parts[:n] in lines), None)
    return Problem(path, line, message)
