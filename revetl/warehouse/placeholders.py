"""Parameters for engines that number them: the seam's placeholders rewritten as `$1`, `$2`, ...

The seam takes `?` (positional) and `$name` (named, from a mapping) in text, and sqlglot renders an
`exp.Placeholder` for PostgreSQL as `%s` / `%(name)s`. libpq (and so ADBC's PostgreSQL driver) binds only
numbered parameters, so `numbered` rewrites every placeholder outside string literals, quoted identifiers,
comments and dollar-quoted bodies to `$N`, and lists the values in that order (a name used twice is one
parameter). `$1` in the text stays as it is. Values never enter the text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from revetl.errors import QueryError

__all__ = ["inline", "marked", "numbered"]

_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_NAMED = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)|%\(([A-Za-z0-9_]+)\)s")
_NUMBER = re.compile(r"\$(\d+)")


def numbered(sql: str, parameters: Sequence[Any] | Mapping[str, Any] | None) -> tuple[str, list[Any]]:
    """(`sql` with numbered placeholders, the values in their order)."""
    pieces: list[str] = []
    values: list[Any] = []
    names: dict[str, int] = {}
    positional = 0
    numbers_used = False
    for kind, text in _tokens(sql):
        if kind != "placeholder":
            pieces.append(text)
            continue
        number = _NUMBER.fullmatch(text)
        if number:
            numbers_used = True
            pieces.append(text)
            continue
        named = _NAMED.fullmatch(text)
        name = (named.group(1) or named.group(2)) if named else None
        if name is not None and name.isdigit():  # `%(1)s`: sqlglot's rendering of `$1`
            numbers_used = True
            pieces.append(f"${name}")
            continue
        if name is None:  # `?` or `%s`
            positional += 1
            pieces.append(f"${positional}")
            continue
        if name not in names:
            names[name] = len(names) + 1
        pieces.append(f"${names[name]}")
    if names:
        if not isinstance(parameters, Mapping):
            raise QueryError(f"the statement names parameters ({', '.join('$' + n for n in names)}) "
                             "but was given no mapping of their values")
        missing = [name for name in names if name not in parameters]
        if missing:
            raise QueryError(f"no value given for parameter(s) {', '.join('$' + n for n in missing)}")
        if positional or numbers_used:
            raise QueryError("a statement takes named or positional parameters, not both")
        values = [parameters[name] for name in names]
    elif positional or numbers_used:
        if parameters is None or isinstance(parameters, Mapping):
            raise QueryError("the statement takes positional parameters but was given none")
        values = list(parameters)
        if positional and len(values) != positional:
            raise QueryError(f"the statement takes {positional} parameter(s) but was given {len(values)}")
    elif parameters and not isinstance(parameters, Mapping):
        raise QueryError(f"the statement takes no parameters but was given {len(list(parameters))}")
    return "".join(pieces), values


def inline(sql: str, parameters: Sequence[Any] | Mapping[str, Any] | None, literal: Callable[[Any], str]) -> str:
    """`sql` with each placeholder replaced by `literal(value)`: for statements that bind no parameters
    (PostgreSQL's COPY). `literal` must render a value as a safe SQL literal (sqlglot's `exp.convert`)."""
    if not parameters:
        return sql
    text, values = numbered(sql, parameters)
    return "".join(literal(values[int(piece[1:]) - 1]) if kind == "placeholder" else piece
                   for kind, piece in _tokens(text))


def marked(sql: str, parameters: Sequence[Any] | Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """(`sql` with named markers `:p1`, `:p2`, ..., their values by name): Spark's parameters."""
    text, values = numbered(sql, parameters)
    if not values:
        return text, {}
    marked_text = "".join(f":p{piece[1:]}" if kind == "placeholder" else piece for kind, piece in _tokens(text))
    return marked_text, {f"p{number}": value for number, value in enumerate(values, 1)}


def _tokens(sql: str) -> list[tuple[str, str]]:
    """`sql` cut into ("text" | "placeholder", piece); quoted, commented and dollar-quoted text is "text"."""
    out: list[tuple[str, str]] = []
    start = i = 0
    n = len(sql)

    def flush(upto: int) -> None:
        if upto > start:
            out.append(("text", sql[start:upto]))

    while i < n:
        char = sql[i]
        end = None
        if char == "'":
            escapes = i > 0 and sql[i - 1] in "eE" and (i == 1 or not (sql[i - 2].isalnum() or sql[i - 2] == "_"))
            end = _quoted_end(sql, i, "'", escapes)
        elif char == '"':
            end = _quoted_end(sql, i, '"', False)
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            end = n if newline < 0 else newline
        elif sql.startswith("/*", i):
            end = _block_comment_end(sql, i)
        elif char == "$":
            tag = _DOLLAR_TAG.match(sql, i)
            if tag and not (i > 0 and (sql[i - 1].isalnum() or sql[i - 1] == "_")):
                close = sql.find(tag.group(0), tag.end())
                end = n if close < 0 else close + len(tag.group(0))
            else:
                found = _NUMBER.match(sql, i) or _NAMED.match(sql, i)
                if found:
                    flush(i)
                    out.append(("placeholder", found.group(0)))
                    i = start = found.end()
                    continue
        elif char == "?" or (char == "%" and (sql.startswith("%s", i) or _NAMED.match(sql, i))):
            found_text = "?" if char == "?" else ("%s" if sql.startswith("%s", i) else _NAMED.match(sql, i).group(0))
            flush(i)
            out.append(("placeholder", found_text))
            i = start = i + len(found_text)
            continue
        i = end if end is not None and end > i else i + 1
    flush(n)
    return out


def _quoted_end(sql: str, i: int, quote: str, backslash_escapes: bool) -> int:
    """The index just past the quoted text starting at `i` (a doubled quote is part of it)."""
    j = i + 1
    while j < len(sql):
        if backslash_escapes and sql[j] == "\\":
            j += 2
            continue
        if sql[j] == quote:
            if sql.startswith(quote, j + 1):
                j += 2
                continue
            return j + 1
        j += 1
    return len(sql)


def _block_comment_end(sql: str, i: int) -> int:
    """The index just past the (nestable, as in PostgreSQL) block comment starting at `i`."""
    depth, j = 0, i
    while j < len(sql):
        if sql.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif sql.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    return len(sql)
