"""One audience's rendered SQL -> its problems, with sqlglot (in the audience's dialect) and DuckDB's parser.

An audience is exactly one read-only query. `inspect_sql` tokenizes the SQL once, splits it into
statements at `;` and parses each, then reports, with the line of the offending token:

- no statement, or more than one;
- a statement that is not a query: DDL, DML, ATTACH, COPY, INSTALL/LOAD, PRAGMA, SET, ...
  (also nested, e.g. an INSERT inside a CTE), or one that writes or locks (`SELECT ... INTO`, `FOR UPDATE`);
- what a query reaches that an audience may not (sandbox.py, deny by default): a
  function or table function outside the allowlist of pure ones, a relation that is neither one
  ref() renders nor a CTE (a bare table, `revetl_state.*`, a file path);
- output columns that are unnamed (`select count(*)`) or named twice.

The allowlist is DuckDB's, checked on DuckDB's own parse tree. An audience written for PostgreSQL
(`dialect: postgres`) is checked the same way once sqlglot has translated it to DuckDB: what sqlglot
cannot map keeps its name (`pg_read_file`, `dblink`, `set_config`, `current_setting`, `lo_import`, ...) and
is refused, as every name outside the list is; a problem found there is reported on the line of the
name it is about in the audience as written.

Line numbers are those of the SQL given; the caller maps them back to the file.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from revetl.audiences.sandbox import sandbox_problems
from revetl.errors import first_line

__all__ = ["SqlReport", "inspect_sql", "node_line"]

# Statements (or parts of them) that change the warehouse, the connection or the files around it.
_NOT_READ_ONLY = (
    exp.DDL, exp.DML, exp.Drop, exp.Alter, exp.TruncateTable, exp.Attach, exp.Detach, exp.Install,
    exp.Pragma, exp.Set, exp.Use, exp.Command, exp.Transaction, exp.Commit, exp.Rollback, exp.Into, exp.Lock,
)
_NAMED = re.compile(r"`'?([\w.]+?)(?:\(\))?'?`")  # what a sandbox problem is about: `name()`, `schema.table`


@dataclass
class SqlReport:
    """What `inspect_sql` found.

    `columns` are the output column names, or None when sqlglot cannot know them (`SELECT *`,
    `COLUMNS(...)`) or the SQL is not one query. `end` is the offset just past the query's last
    token: `sql[:end]` is the query without a trailing `;` or comment, safe to wrap in a subquery.
    """

    query: exp.Query | None = None
    columns: list[str] | None = None
    end: int = 0
    problems: list[tuple[int | None, str]] = field(default_factory=list)


def inspect_sql(sql: str, relations: Collection[str] = (), dialect: str = "duckdb") -> SqlReport:
    """Check that `sql`, written in `dialect`, is exactly one read-only query and find its output columns.

    `relations` are the only relations it may read (as ref() renders them); its own CTEs aside, any
    other is a problem."""
    allowed = {_parts(relation) for relation in relations}
    report = SqlReport()
    engine = Dialect.get_or_raise(dialect)
    try:
        tokens = engine.tokenize(sql)
    except TokenError as exc:
        report.problems.append((None, f"the SQL cannot be read: {first_line(exc)} (an unclosed quote?)"))
        return report
    statements = _split(tokens)
    if not statements:
        report.problems.append((None, "there is no SQL statement; an audience is one SELECT"))
        return report
    if len(statements) > 1:
        report.problems.append((statements[1][0].line, (
            f"a second SQL statement starts here ({len(statements)} in all); an audience is exactly one SELECT"
        )))
    for number, statement in enumerate(statements):
        parsed = _parse(engine, statement, sql, report)
        if parsed is None:
            continue
        if not isinstance(parsed, exp.Query):
            report.problems.append((statement[0].line, (
                f"`{_keyword(statement, parsed)}` is not allowed: an audience is one read-only SELECT"
            )))
            continue
        before = len(report.problems)
        _check_query(parsed, statement, report)
        _check_reach(statement, sql, allowed, report, quiet=len(report.problems) > before,
                     translated=None if dialect == "duckdb" else parsed)
        if number == 0:
            report.query, report.end = parsed, statement[-1].end + 1
            report.columns = _columns(parsed, report) if len(statements) == 1 else None
    return report


def _split(tokens: list[Token]) -> list[list[Token]]:
    """Statements as token lists, split at `;`; empty statements dropped."""
    statements: list[list[Token]] = [[]]
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            statements.append([])
        else:
            statements[-1].append(token)
    return [statement for statement in statements if statement]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """sqlglot logs a warning when it falls back to a raw Command; the problem is reported instead."""
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _parse(engine: Dialect, statement: list[Token], sql: str, report: SqlReport) -> exp.Expr | None:
    try:
        with _quiet():
            parsed = engine.parser().parse(statement, sql)
    except ParseError as exc:
        error = exc.errors[0] if exc.errors else {}
        description = _plain(error.get("description") or first_line(exc))
        line = error.get("line") or statement[0].line
        report.problems.append((line, f"the SQL cannot be parsed here: {description}"))
        return None
    return parsed[0] if parsed else None


def _plain(description: str) -> str:
    """sqlglot's parse error without its internals: tokens and classes become the SQL words."""
    description = re.sub(r"<Token token_type: [^,]+, text: ([^,]*),[^>]*>", r"`\1`", description)
    description = description.replace("`SENTINEL`", "the end of the SQL")
    missing = re.match(r"Required keyword: '\w+' missing for <class '[\w.]*\.(\w+)'>", description)
    return f"the `{missing.group(1).upper()}` clause is incomplete" if missing else description


def _keyword(statement: list[Token], parsed: exp.Expr) -> str:
    """`INSERT`, `ATTACH`, ... as written (the statement's kind when it starts with WITH)."""
    first = statement[0].text.upper()
    return parsed.key.upper() if first == "WITH" else first


def node_line(node: exp.Expr) -> int | None:
    """The line of the first token under `node` (tokens carry lines; most nodes do not)."""
    for child in node.walk(bfs=False):
        line = child.meta.get("line") if child.meta else None
        if line:
            return line
    return None


# The keyword that starts a clause sqlglot keeps no token of (`FOR UPDATE` is a Lock), to point at its line.
_KEYWORDS = {"lock": ("FOR", "`FOR UPDATE`/`FOR SHARE`")}


def _check_query(query: exp.Query, statement: list[Token], report: SqlReport) -> None:
    for node in query.walk():
        if isinstance(node, _NOT_READ_ONLY):
            keyword, shown = _KEYWORDS.get(node.key, (node.key.upper(), f"`{node.key.upper()}`"))
            line = node_line(node) or next((t.line for t in statement if t.text.upper() == keyword), None)
            report.problems.append((line, f"{shown} is not allowed: an audience is one read-only SELECT"))


def _check_reach(
    statement: list[Token], sql: str, allowed: set[tuple[str, ...]], report: SqlReport, quiet: bool,
    translated: exp.Expr | None = None,
) -> None:
    """The functions and relations the statement reaches, on DuckDB's parse tree (sandbox.py).

    `quiet`: sqlglot already found this statement wrong, so DuckDB's refusal to parse it says nothing new.
    `translated`: the statement parsed from another dialect, checked as sqlglot writes it for DuckDB."""
    if translated is not None:
        text = translated.sql(dialect="duckdb")
        for _, message in sandbox_problems(text, allowed):
            if not (quiet and message.startswith("the SQL cannot be parsed")):
                report.problems.append((_named_line(statement, message), message))
        return
    start = statement[0].start
    text = sql[start:statement[-1].end + 1]
    encoded = text.encode("utf-8")
    for offset, message in sandbox_problems(text, allowed):
        if quiet and message.startswith("the SQL cannot be parsed"):
            continue
        before = start + len(encoded[:offset].decode("utf-8", errors="ignore"))  # DuckDB counts bytes
        report.problems.append((sql.count("\n", 0, before) + 1, message))


def _named_line(statement: list[Token], message: str) -> int:
    """The line of the first token naming what `message` is about (a function, a relation), else the
    statement's first line."""
    found = _NAMED.search(message)
    if found:
        name = found.group(1).lower().split(".")[-1]
        for token in statement:
            if token.text.lower().strip('"') == name:
                return token.line
    return statement[0].line


def _parts(relation: str) -> tuple[str, ...]:
    """`"catalog"."schema"."name"` -> ("catalog", "schema", "name"), lower-case (DuckDB ignores case)."""
    return tuple(part.name.lower() for part in exp.to_table(relation, dialect="duckdb").parts)


def _columns(query: exp.Query, report: SqlReport) -> list[str] | None:
    """Output column names; None when a star or COLUMNS(...) hides them. Reports unnamed and twice-named ones."""
    names: list[str] = []
    seen: set[str] = set()
    hidden = False
    for item in query.selects:
        if _expands(item):
            hidden = True
            continue
        if not isinstance(item, exp.Alias | exp.Column) or not item.alias_or_name:
            shown = item.sql("duckdb")
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            report.problems.append((node_line(item), f"the output column `{shown}` has no name; add `AS some_name`"))
            continue
        name = item.alias_or_name
        if name.lower() in seen:
            report.problems.append((node_line(item), f"the output column `{name}` appears twice; rename one with AS"))
        seen.add(name.lower())
        names.append(name)
    return None if hidden else names


def _expands(item: exp.Expr) -> bool:
    """`*`, `t.*` and `COLUMNS(...)` (also inside a function, `min(COLUMNS(*))`) stand for many columns."""
    if isinstance(item, exp.Star) or (isinstance(item, exp.Column) and isinstance(item.this, exp.Star)):
        return True
    return item.find(exp.Columns) is not None
