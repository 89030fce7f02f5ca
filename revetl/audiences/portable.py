"""Audiences on any warehouse: revetl's macros for what drifts between engines, and the drift check.

An audience is written in one dialect (DuckDB, unless its header says `dialect: postgres`) and sqlglot
transpiles it to the target's. Most SQL comes through faithfully. Measured on DuckDB 2.0 and PostgreSQL 15
with sqlglot 30 (tests/test_portable.py), these constructs do not:

    try_cast(x as T)           a plain CAST on PostgreSQL: one bad value fails the whole audience there
    date_diff('week', a, b)    PostgreSQL gets days / 7 rounded, DuckDB truncated: 18 days are 3 weeks there
    date_diff('day', a, b)     calendar days on DuckDB and PostgreSQL, whole 24-hour periods on Spark
    to_char(t, 'Dy Mon ...')   (a PostgreSQL audience on DuckDB) day and month names come out wrong
    age(a, b)                  (a PostgreSQL audience on DuckDB) a differently normalized interval

So an audience calls revetl's macros for them, Jinja like `ref()`, each with a body per engine:

    {{ safe_cast('created_at', 'timestamp') }}   the value, or NULL when it is not one (never an error)
    {{ days_between('p.last_seen_at', as_of()) }}  whole calendar days from a to b (their UTC dates)

`safe_cast` reads the same text the same way on every engine, by accepting only what all of them read
alike (a regular expression decides, then the engine casts what it cannot refuse):
    timestamp, date   ISO 8601: `YYYY-MM-DD`, optionally `[T ]HH:MM[:SS[.ffffff]]` and `Z`, ` UTC` or
                      `+HH[:MM]` (applied: the result is the UTC time); a day the month does not have is NULL
    integer, bigint   up to 9 (integer) or 18 (bigint) digits, with an optional sign
    double            a decimal number with an optional exponent of at most two digits
    boolean           true/false, t/f, yes/no, y/n, 1/0 (any case)

`macros(dialect)` gives the Jinja functions rendering each body for one engine, or (dialect None)
markers, `revetl_safe_cast(...)`, that `transpile` replaces by the target's body after sqlglot has
translated the rest. `drift` finds the constructs above written raw (`revetl audiences check` warns).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlglot
from sqlglot import exp

__all__ = ["CAST_TYPES", "MACROS", "drift", "macros", "transpile"]

_YEAR = "([0-9]{3}[1-9]|[0-9]{2}[1-9]0|[0-9][1-9]00|[1-9]000)"  # 0001-9999
_TIMESTAMP = (
    f"{_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?(Z| UTC|[+-](0[0-9]|1[0-5])(:?[0-5][0-9])?)?)?"
)
_NUMBER = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,2})?"  # below 1e200 in size: no overflow
_TRUE, _FALSE = ("true", "t", "yes", "y", "1"), ("false", "f", "no", "n", "0")


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _spark_quoted(text: str) -> str:
    """A Spark string literal: Spark reads backslash escapes, and 'a''b' as 'a' 'b' joined."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _matches(dialect: str, value: str, pattern: str) -> str:
    """`value` matches `pattern` in full."""
    if dialect == "postgres":
        return f"{value} ~ {_quoted('^' + pattern + '$')}"
    if dialect == "spark":  # Java's regular expressions: rlike finds; \z is the very end (`$` allows a newline)
        return f"{value} rlike " + _spark_quoted("^(?:" + pattern + r")\z")
    return f"regexp_full_match({value}, {_quoted(pattern)})"


def _days_in_month(value: str) -> str:
    """The number of days of the month of ISO date text `value` (arithmetic: it never fails)."""
    year, month = f"cast(substr({value}, 1, 4) as integer)", f"cast(substr({value}, 6, 2) as integer)"
    leap = f"({year} % 4 = 0 and ({year} % 100 <> 0 or {year} % 400 = 0))"
    return (f"case {month} when 2 then case when {leap} then 29 else 28 end "
            "when 4 then 30 when 6 then 30 when 9 then 30 when 11 then 30 else 31 end")


def _timestamp(dialect: str, value: str) -> str:
    if dialect == "postgres":  # PostgreSQL's cast fails on February 30th: the day is checked first
        real = f"cast(substr({value}, 9, 2) as integer) <= {_days_in_month(value)}"
        cast = f"(cast({value} as timestamptz) at time zone 'UTC')"
        return f"case when {_matches(dialect, value, _TIMESTAMP)} then case when {real} then {cast} end end"
    if dialect == "spark":  # a failed cast is NULL (ANSI off), a day the month has not too; ` UTC` is a zone id
        cast = f"cast(regexp_replace({value}, ' UTC$', 'Z') as timestamp)"
    else:
        cast = f"cast(try_cast({value} as timestamptz) as timestamp)"
    return f"case when {_matches(dialect, value, _TIMESTAMP)} then {cast} end"


def _integer(digits: int, kind: str) -> Callable[[str, str], str]:
    def body(dialect: str, value: str) -> str:
        return f"case when {_matches(dialect, value, f'[+-]?[0-9]{{1,{digits}}}')} then cast({value} as {kind}) end"

    return body


def _double(dialect: str, value: str) -> str:
    kind = "double precision" if dialect == "postgres" else "double"
    return f"case when length({value}) <= 100 and {_matches(dialect, value, _NUMBER)} then cast({value} as {kind}) end"


def _boolean(dialect: str, value: str) -> str:
    words = ", ".join(map(_quoted, _TRUE)), ", ".join(map(_quoted, _FALSE))
    return f"case when lower({value}) in ({words[0]}) then true when lower({value}) in ({words[1]}) then false end"


CAST_TYPES: dict[str, Callable[[str, str], str]] = {
    "timestamp": _timestamp,
    "date": lambda dialect, value: f"cast({_timestamp(dialect, value)} as date)",
    "integer": _integer(9, "integer"),
    "int": _integer(9, "integer"),
    "bigint": _integer(18, "bigint"),
    "double": _double,
    "boolean": _boolean,
}


def _safe_cast(dialect: str, value: str, kind: str) -> str:
    body = CAST_TYPES.get(kind.strip().lower())
    if body is None:
        raise ValueError(f"safe_cast() casts to {', '.join(CAST_TYPES)}, not {kind!r}")
    text = "string" if dialect == "spark" else "varchar"
    return f"({body(dialect, f'cast(({value}) as {text})')})"


def _days_between(dialect: str, start: str, end: str) -> str:
    if dialect == "postgres":
        return f"(cast(({end}) as date) - cast(({start}) as date))"
    if dialect == "spark":
        return f"datediff(cast(({end}) as date), cast(({start}) as date))"
    return f"date_diff('day', cast(({start}) as date), cast(({end}) as date))"


# name -> (body, how many leading arguments are SQL; the rest are plain words such as a type name)
MACROS: dict[str, tuple[Callable[..., str], int]] = {
    "safe_cast": (_safe_cast, 1),
    "days_between": (_days_between, 2),
}
_MARKER = "revetl_"


def macros(dialect: str | None) -> dict[str, Callable[..., str]]:
    """The Jinja functions of revetl's macros, rendering each body for `dialect` ("duckdb", "postgres"),
    or as a marker call for `transpile` when `dialect` is None."""

    def macro(name: str) -> Callable[..., str]:
        body, sql_arguments = MACROS[name]

        def render(*arguments: Any) -> str:
            text = [str(argument) for argument in arguments]
            if dialect is not None:
                return body(dialect, *text)
            body("duckdb", *text)  # a wrong type name fails here, in the check's rendering too
            shown = [f"({a})" for a in text[:sql_arguments]] + [_quoted(a) for a in text[sql_arguments:]]
            return f"{_MARKER}{name}({', '.join(shown)})"

        return render

    return {name: macro(name) for name in MACROS}


def transpile(sql: str | exp.Expr, read: str, write: str) -> str:
    """Query `sql` (written in `read`, its macros rendered as markers; text or parsed) in dialect `write`:
    sqlglot translates the query, each marker becomes the macro's body for `write`."""
    tree = sqlglot.parse_one(sql, read=read) if isinstance(sql, str) else sql.copy()
    return _expand(tree, write).sql(dialect=write)


def _expand(tree: exp.Expr, write: str) -> exp.Expr:
    def swap(node: exp.Expr) -> exp.Expr:
        name = node.name.lower() if isinstance(node, exp.Anonymous) else ""
        if not name.startswith(_MARKER) or name[len(_MARKER):] not in MACROS:
            return node
        body, sql_arguments = MACROS[name[len(_MARKER):]]
        arguments = node.expressions
        text = [_expand(a.copy(), write).sql(dialect=write) for a in arguments[:sql_arguments]]
        text += [a.name for a in arguments[sql_arguments:]]
        return sqlglot.parse_one(body(write, *text), read=write)

    return tree.transform(swap)


def drift(tree: exp.Expr, read: str, line: Callable[[exp.Expr], int | None]) -> list[tuple[int | None, str]]:
    """(line, sentence) for each construct of query `tree` (parsed from `read`) that drifts between engines,
    written raw. `line(node)` gives a node's line."""
    found = []
    for node in tree.walk():
        message = _drifts(node, read)
        if message:
            found.append((line(node), message))
    return found


def _jinja_string(sql: str) -> str:
    """`sql` as a Jinja string literal, for the advice a warning gives."""
    return f"'{sql}'" if "'" not in sql else f'"{sql}"' if '"' not in sql else repr(sql)


def _drifts(node: exp.Expr, read: str) -> str | None:
    if isinstance(node, exp.TryCast):
        macro = f"{{{{ safe_cast({_jinja_string(node.this.sql(read))}, '{node.to.sql(read).lower()}') }}}}"
        return ("`try_cast` becomes a plain CAST on PostgreSQL, where one bad value fails the whole audience; "
                f"`{macro}` gives NULL on every warehouse")
    if isinstance(node, exp.DateDiff) and node.unit is not None and node.unit.name.lower() in ("day", "week"):
        start, end = (_jinja_string(part.sql(read)) for part in (node.expression, node.this))
        advice = f"`{{{{ days_between({start}, {end}) }}}}`"
        if node.unit.name.lower() == "week":
            return (f"a difference in weeks is rounded on PostgreSQL and truncated on DuckDB; {advice} // 7 "
                    "counts whole weeks the same on every warehouse")
        return ("a difference in days counts calendar days on DuckDB and PostgreSQL but whole 24-hour periods on "
                f"Spark; {advice} counts calendar days on every warehouse")
    if read == "postgres" and isinstance(node, exp.TimeToStr):
        return "`to_char` formats are translated for other warehouses only in part (day and month names are not)"
    if read == "postgres" and isinstance(node, exp.Anonymous) and node.name.lower() == "age":
        return ("`age()` gives an interval that other warehouses normalize differently (1 mon 9 days, or 39 days); "
                "`{{ days_between(a, b) }}` is the same everywhere")
    return None
