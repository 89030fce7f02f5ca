"""SQL as sqlglot expressions, and the dialect each warehouse type renders them in (named here, once).

revetl's own SQL (plan, state) is built from these and rendered by the connection for its engine
(`Connection.render`), identifiers quoted, values as parameters (`$name` in a template). Where engines truly differ,
a builder here is the one place that says how.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import sqlglot
from sqlglot import exp

__all__ = ["DIALECTS", "TEMPLATES", "Template", "drop_table", "param", "table", "temp_table"]

DIALECTS = {"duckdb": "duckdb", "postgres": "postgres"}  # dbt target type -> sqlglot dialect


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


@dataclass(frozen=True)
class Template:
    """A statement of revetl's own, written as text in the template dialect (`TEMPLATES`). Each table named
    in `relations` stands for another template, filled in as a subquery under the same alias. A template
    is parsed, filled and rendered once per process and dialect: a plan pays sqlglot's cost once."""

    text: str
    relations: tuple[tuple[str, Template], ...] = ()

    def fill(self, **relations: Template) -> Template:
        """This template with more relations filled in."""
        return Template(self.text, (*self.relations, *sorted(relations.items())))

    def expression(self) -> exp.Expression:
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
    return template.expression().sql(dialect=dialect, identify=identify)
