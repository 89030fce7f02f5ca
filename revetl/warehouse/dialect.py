"""SQL as sqlglot expressions, and the dialect each warehouse type renders them in (named here, once).

revetl's own SQL (plan, state) is built from these and rendered by the connection for its engine
(`Connection.render`), identifiers quoted, values as parameters (`param`). Where engines truly differ,
a builder here is the one place that says how.
"""

from __future__ import annotations

import functools

import sqlglot
from sqlglot import exp

__all__ = ["DIALECTS", "TEMPLATES", "drop_table", "param", "statement", "table", "temp_table", "template"]

DIALECTS = {"duckdb": "duckdb"}  # dbt target type -> sqlglot dialect


def param(name: str) -> exp.Placeholder:
    """A named parameter: `$name` in DuckDB; its value goes in the parameters, never in the text."""
    return exp.Placeholder(this=name)


def table(name: str, schema: str | None = None) -> exp.Table:
    return exp.table_(name, db=schema)


def temp_table(name: str, query: exp.Expression | None = None, columns: dict[str, str] | None = None,
               replace: bool = False) -> exp.Create:
    """`create [or replace] temporary table name` as `query`, or with `columns` (name -> SQL type)."""
    target: exp.Expression = table(name)
    if columns is not None:
        target = exp.Schema(this=target, expressions=[
            exp.ColumnDef(this=exp.to_identifier(column), kind=exp.DataType.build(kind))
            for column, kind in columns.items()
        ])
    return exp.Create(this=target, kind="TABLE", replace=replace, expression=query,
                      properties=exp.Properties(expressions=[exp.TemporaryProperty()]))


def drop_table(name: str, schema: str | None = None, kind: str = "TABLE") -> exp.Drop:
    """`drop table if exists` (or `kind`: VIEW)."""
    return exp.Drop(tables=[table(name, schema)], kind=kind, exists=True)


# revetl's own SQL written as text is DuckDB-flavoured, with `$name` parameters: parsed, then rendered
# for the connection's dialect.
TEMPLATES = DIALECTS["duckdb"]


@functools.lru_cache(maxsize=256)
def _parsed(sql: str) -> exp.Expression:
    return sqlglot.parse_one(sql, read=TEMPLATES)


def template(sql: str, **relations: exp.Query) -> exp.Expression:
    """A statement of revetl's own, written as text in the template dialect, as an expression (parsed once
    per process). Each table named in `relations` becomes that query, as a subquery under the same alias."""
    tree = _parsed(sql).copy()
    if not relations:
        return tree

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and not node.db and node.name in relations:
            return relations[node.name].subquery(node.alias or node.name, copy=True)
        return node

    return tree.transform(swap)


@functools.lru_cache(maxsize=256)
def statement(sql: str, dialect: str) -> str:
    """A template without relations to fill, rendered for `dialect`: parsed and rendered once per process."""
    return template(sql).sql(dialect=dialect, identify=True)
