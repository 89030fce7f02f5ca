"""SQL as sqlglot expressions, and the dialect each warehouse type renders them in (named here, once).
sqlglot loads only when a statement is rendered that no earlier run rendered (rendered.py).

revetl's own SQL (plan, state) is built from these and rendered by the connection for its engine
(`Connection.render`), identifiers quoted, values as parameters (`$name` in a template). Where engines truly differ,
a builder here is the one place that says how:

    revetl_hash64(x)     in a template: a 64-bit hash of text (DuckDB `hash`, PostgreSQL `hashtextextended`)
    revetl_bytewise(x)   in a template: text ordered by its bytes, as DuckDB orders it (PostgreSQL: `collate "C"`,
                         whatever the database's collation), so that samples and examples agree
    json_object          JSON text of mapped columns, the same text on every engine for the same values (a
                         plan's payload and row hash): DuckDB's `to_json(struct_pack(...))`, and on PostgreSQL
                         the same text spelled out (its own JSON puts doubles, timestamps and control
                         characters differently)
    computed_once        a subquery PostgreSQL must not inline into its reader (`offset 0`)
    READ_ONLY            the statement that makes a transaction read-only, on engines whose session does not
                         keep analyst SQL from writing by itself (PostgreSQL); None where it does (DuckDB)

What sqlglot translates faithfully is written once: `create temporary table` (never `or replace`: PostgreSQL
has none, so a table is dropped first), `count(*) filter (where ...)`, `::json`, window functions in place
of `qualify` and `arg_max`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from revetl.warehouse.rendered import remember

if TYPE_CHECKING:  # sqlglot loads when a statement is rendered that no earlier run rendered (rendered.py)
    from sqlglot import exp

__all__ = ["DIALECTS", "READ_ONLY", "TEMPLATES", "Template", "built", "computed_once", "drop_table",
           "json_object", "table", "temp_table"]

DIALECTS = {"duckdb": "duckdb", "postgres": "postgres", "spark": "spark"}  # dbt target type -> sqlglot dialect


def table(name: str, schema: str | None = None) -> exp.Table:
    from sqlglot import exp

    return exp.table_(name, db=schema)


def temp_table(name: str, query: exp.Expression | None = None, columns: dict[str, str] | None = None,
               replace: bool = False) -> exp.Create:
    """`create [or replace] temporary table name` as `query`, or with `columns` (name -> SQL type)."""
    from sqlglot import exp

    target: exp.Expression = table(name)
    if columns is not None:
        target = exp.Schema(this=target, expressions=[
            exp.ColumnDef(this=exp.to_identifier(column), kind=exp.DataType.build(kind))
            for column, kind in columns.items()
        ])
    return exp.Create(this=target, kind="TABLE", replace=replace, expression=query,
                      properties=exp.Properties(expressions=[exp.TemporaryProperty()]))


def drop_table(name: str, schema: str | None = None, kind: str = "TABLE") -> Template:
    """`drop table if exists` (or `kind`: VIEW); `name` and `schema` are revetl's own identifiers."""
    return Template(f"drop {kind.lower()} if exists {schema + '.' if schema else ''}{name}")


# revetl's own SQL written as text is DuckDB-flavoured, with `$name` parameters: parsed, then rendered
# for the connection's dialect.
TEMPLATES = DIALECTS["duckdb"]


@functools.lru_cache(maxsize=256)
def _parsed(sql: str) -> exp.Expression:
    import sqlglot

    return sqlglot.parse_one(sql, read=TEMPLATES)


@dataclass(frozen=True)
class Template:
    """A statement of revetl's own, written as text in the template dialect (`TEMPLATES`). Each table named
    in `relations` stands for another template, filled in as a subquery under the same alias. A template
    is parsed, filled and rendered once per dialect, its text kept between runs (rendered.py): a plan pays
    sqlglot's cost once, and a run that renders nothing new does not load it."""

    text: str
    relations: tuple[tuple[str, Template], ...] = ()

    def fill(self, **relations: Template) -> Template:
        """This template with more relations filled in."""
        return Template(self.text, (*self.relations, *sorted(relations.items())))

    def expression(self) -> exp.Expression:
        from sqlglot import exp

        tree = _parsed(self.text).copy()
        if not self.relations:
            return tree
        filled = dict(self.relations)

        def swap(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Table) and not node.db and node.name in filled:
                return filled[node.name].expression().subquery(node.alias or node.name)
            return node

        return tree.transform(swap)

    def sql(self, dialect: str, identify: bool = True) -> str:
        """The statement for `dialect`, identifiers quoted (as `exp.Expression.sql`, which `Connection.render`
        calls)."""
        return _rendered(self, dialect, identify)


@functools.lru_cache(maxsize=256)
def _rendered(template: Template, dialect: str, identify: bool) -> str:
    def render() -> str:
        return template.expression().transform(functools.partial(_engine_function, dialect)).sql(
            dialect=dialect, identify=identify)

    return remember("template", dialect, (template, identify), render)


# revetl's functions in templates -> each engine's own, `{0}` the argument
_FUNCTIONS = {
    "revetl_hash64": {"duckdb": "hash({0})", "postgres": "hashtextextended({0}, 0)"},
    "revetl_bytewise": {"duckdb": "{0}", "postgres": '{0} collate "C"'},
}


def _engine_function(dialect: str, node: exp.Expression) -> exp.Expression:
    import sqlglot
    from sqlglot import exp

    if isinstance(node, exp.Anonymous) and node.name.lower() in _FUNCTIONS:
        body = _FUNCTIONS[node.name.lower()][dialect]
        argument = node.expressions[0].sql(dialect=dialect)
        return sqlglot.parse_one(body.format(argument), read=dialect)
    return node


def built(kind: str, dialect: str, parts: object, build: Callable[[], exp.Expression]) -> str:
    """The statement `build()` makes, rendered for `dialect` (identifiers quoted), kept between runs under
    (`kind`, `parts`): `parts` must be everything `build` reads (rendered.py)."""
    return remember(kind, dialect, parts, lambda: build().sql(dialect=dialect, identify=True))


READ_ONLY = {"duckdb": None, "postgres": "set transaction read only"}


def computed_once(dialect: str, query: exp.Select) -> exp.Select:
    """`query`, to be read as a subquery whose columns its reader uses more than once (a payload, and its md5):
    PostgreSQL inlines a subquery into its reader and would compute such a column once per use; `offset 0`
    keeps it whole (measured: a 1M-row plan's payloads in 7 s instead of 14). DuckDB computes it once anyway."""
    return query.offset(0) if dialect == "postgres" else query


# Significant digits kept of floating-point values: what survives a round trip through text.
_DIGITS = {"DOUBLE": 15, "FLOAT": 6}


def json_object(dialect: str, fields: Sequence[tuple[str, str, str]]) -> exp.Expression:
    """JSON text of an object, one member per (key, column, the column's type as `Connection.columns`
    names it), in the order given. Floating-point values are rounded to 15 significant digits (6 for FLOAT),
    NaN and infinities become null.

    DuckDB writes it with `to_json(struct_pack(...))`; PostgreSQL spells out the same text (`_postgres_value`)."""
    import sqlglot
    from sqlglot import exp

    if not fields:
        return exp.Literal.string("{}")
    if dialect == "postgres":
        parts = [f"'{{' || {_postgres_members(fields)} || '}}'"]
        return sqlglot.parse_one(parts[0], read="postgres")
    pairs = [exp.PropertyEQ(this=exp.to_identifier(key), expression=_duckdb_value(column, kind))
             for key, column, kind in fields]
    return exp.cast(exp.Anonymous(this="to_json", expressions=[exp.Struct(expressions=pairs)]), "VARCHAR")


def _duckdb_value(column: str, kind: str) -> exp.Expression:
    from sqlglot import exp

    digits = _DIGITS.get(kind)
    value = exp.column(column)
    if digits is None:
        return value
    rounded = exp.Anonymous(this="printf", expressions=[exp.Literal.string(f"%.{digits}g"), value.copy()])
    return exp.Case().when(exp.Anonymous(this="isfinite", expressions=[value]), exp.cast(rounded, "DOUBLE"))


def _postgres_members(fields: Sequence[tuple[str, str, str]]) -> str:
    from sqlglot import exp

    members = []
    for number, (key, column, kind) in enumerate(fields):
        name = json.dumps(key, ensure_ascii=False)  # as DuckDB writes a struct's field name
        quoted = exp.to_identifier(column, quoted=True).sql("postgres")
        value = f"coalesce({_postgres_value(quoted, kind)}, 'null')"
        members.append(_text(("," if number else "") + name + ":") + f" || {value}")
    return " || ".join(members)


def _text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _postgres_value(column: str, kind: str) -> str:
    """JSON text of one value as DuckDB's `to_json` writes it (NULL for null), in PostgreSQL."""
    if kind in _DIGITS:
        return _postgres_number(column)
    precision = re.fullmatch(r"DECIMAL\((\d+),\s*\d+\)", kind)
    if precision and int(precision.group(1)) < 18:  # DuckDB writes a narrow DECIMAL as a double
        return _postgres_number(f"cast({column} as double precision)")
    if kind.startswith("TIMESTAMP"):  # DuckDB: "2026-01-05 10:00:00+00", PostgreSQL's JSON has a T and +00:00
        return f"cast(to_json(cast({column} as text)) as text)"
    if kind == "VARCHAR":
        return _postgres_string(f"cast(to_json({column}) as text)")
    return f"cast(to_json({column}) as text)"


# DuckDB escapes control characters as \u001F, PostgreSQL as \u001f: the nine with a letter in their code
_CONTROLS = ("000b", "000e", "000f", "001a", "001b", "001c", "001d", "001e", "001f")


def _postgres_string(json_text: str) -> str:
    """`json_text` (PostgreSQL's JSON of a string) with the escapes of control characters in DuckDB's case.
    Escaped backslashes are set aside first (as chr(1): JSON text never holds it raw), so that a backslash
    written in the value is never read as the start of an escape."""
    fixed = f"replace({json_text}, chr(92) || chr(92), chr(1))"
    for code in _CONTROLS:
        fixed = f"replace({fixed}, chr(92) || 'u{code}', chr(92) || 'u{code.upper()}')"
    fixed = f"replace({fixed}, chr(1), chr(92) || chr(92))"
    return f"case when strpos({json_text}, chr(92) || 'u00') > 0 then {fixed} else {json_text} end"


def _postgres_number(column: str) -> str:
    """A double (or real) as DuckDB's `to_json` writes it once rounded: the shortest digits (those of its
    15, or 6, significant digits: PostgreSQL's cast to numeric rounds so), in plain notation with `.0` when
    whole from 1e-6 to 1e21, else as `1.5e-7`, `1e21`. NaN and infinities: NULL. (Below 1e-307, where
    doubles lose precision, the digits may differ.)"""
    n = f"cast({column} as numeric)"
    a = f"abs({n})"
    plain = f"cast({n} as text)"
    t = f"cast({a} as text)"  # no point above 1e21; `0.000000...` below 1e-6
    digits = f"trim(replace({t}, '.', ''), '0')"
    fraction = f"substr({t}, 3)"
    exponent = (f"case when {a} >= 1 then length({t}) - 1 "
                f"else -(length({fraction}) - length(ltrim({fraction}, '0')) + 1) end")
    mantissa = f"left({digits}, 1) || case when length({digits}) > 1 then '.' || substr({digits}, 2) else '' end"
    return (f"case when {column} in ('NaN', 'Infinity', '-Infinity') then null "
            f"when {column} = 0 then case when cast({column} as text) like '-%' then '-0.0' else '0.0' end "
            f"when {a} >= 0.000001 and {a} < 1e21 then "
            f"case when strpos({plain}, '.') > 0 then {plain} else {plain} || '.0' end "
            f"else case when {n} < 0 then '-' else '' end || {mantissa} || 'e' || cast({exponent} as text) end")
