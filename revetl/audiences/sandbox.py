"""What one audience query reaches, read from DuckDB's own parse tree: deny by default.

sqlglot (sql.py) decides that an audience is one read-only SELECT. Which functions it
calls and which relations it reads is decided here, on the tree DuckDB's parser builds for the
very SQL the warehouse will run (`warehouse.embedded.parse_tree`: parses, runs nothing): so no
difference between two parsers can hide a call. Every node of that tree must be known:

- every function (scalar, aggregate, window, and those DuckDB's parser writes for syntax: `||`,
  `[1, 2]`, `{'a': 1}`, list comprehensions) is in the allowlist (functions.py), called
  without a schema; every table function read in FROM is one of the few pure ones;
- every relation is a CTE in scope or exactly one that `ref()` renders (`"catalog"."schema"."name"`):
  not a bare or schema-qualified name, not `revetl_state.*`, not a file path;
- expression and relation kinds outside the known ones (parameters, DESCRIBE/SHOW, ...) are refused.

The connections that run audiences are sandboxed by the engine too (warehouse.connect(sandbox=True):
DuckDB's settings; on PostgreSQL a read-only session or transaction, a role without server files or
programs, a statement timeout): this check is what keeps an audience from reading the warehouse's
other tables, settings and catalog, which those allow, and it names the file and line of each problem.
An audience written for PostgreSQL is checked here once sqlglot has translated it to DuckDB (sql.py).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from revetl.audiences.functions import function_problem, table_function_problem
from revetl.warehouse.embedded import parse_tree

__all__ = ["sandbox_problems"]

# Kinds of expressions and relations an audience may use; the walk refuses any other.
_EXPRESSIONS = frozenset({
    "BETWEEN", "CASE", "CAST", "COLLATE", "COLUMN_REF", "COMPARISON", "CONJUNCTION", "CONSTANT", "FUNCTION",
    "LAMBDA", "LAMBDA_REF", "OPERATOR", "POSITIONAL_REFERENCE", "STAR", "SUBQUERY", "TYPE", "WINDOW",
})
_RELATIONS = frozenset({"BASE_TABLE", "EMPTY", "EXPRESSION_LIST", "JOIN", "PIVOT", "SUBQUERY", "TABLE_FUNCTION"})
_UNKNOWN = 2**64 - 1  # DuckDB's "no location"
_PATH_MARKS = "./\\:*"  # a relation name holding one of these is a file path to DuckDB


def sandbox_problems(sql: str, relations: Collection[tuple[str, ...]]) -> list[tuple[int, str]]:
    """(byte offset in `sql`, sentence) for each thing the query `sql` may not reach.

    `relations` are the relations ref() renders, as lower-case name parts (catalog, schema, name).
    A query DuckDB cannot parse is one problem (its own message)."""
    tree = parse_tree(sql)
    if tree.get("error"):
        where = int(tree.get("position") or 0)
        return [(where, f"the SQL cannot be parsed here: {tree.get('error_message', 'unknown error')}")]
    walk = _Walk(frozenset(relations))
    walk.node(tree.get("statements", []), frozenset(), 0)
    return walk.problems


class _Walk:
    """One walk over a parse tree, collecting problems. `visible` are the CTE names in scope."""

    def __init__(self, relations: frozenset[tuple[str, ...]]) -> None:
        self.relations = relations
        self.problems: list[tuple[int, str]] = []

    def node(self, node: Any, visible: frozenset[str], where: int) -> None:
        if isinstance(node, list):
            for item in node:
                self.node(item, visible, where)
            return
        if not isinstance(node, dict):
            return
        location = node.get("query_location")
        where = location if isinstance(location, int) and location != _UNKNOWN else where
        if "cte_map" in node:  # a query: its CTEs are visible to the later CTEs and to its body
            visible = self._ctes(node["cte_map"].get("map", []), visible, where)
            self._children(node, visible, where, skip=("cte_map",))
        elif "class" in node:
            self._expression(node, visible, where)
        elif {"type", "alias", "sample"} <= node.keys():
            self._relation(node, visible, where)
        else:
            self._children(node, visible, where)

    def _children(self, node: dict, visible: frozenset[str], where: int, skip: Iterable[str] = ()) -> None:
        for key, value in node.items():
            if key not in skip:
                self.node(value, visible, where)

    def _ctes(self, entries: list[dict], visible: frozenset[str], where: int) -> frozenset[str]:
        for entry in entries:
            name = str(entry.get("key", "")).lower()
            value = entry.get("value", {})
            recursive = (value.get("query_node") or {}).get("type") == "RECURSIVE_CTE_NODE"
            self.node(value, visible | {name} if recursive else visible, where)
            visible = visible | {name}
        return visible

    def _expression(self, node: dict, visible: frozenset[str], where: int) -> None:
        kind = node["class"]
        if kind not in _EXPRESSIONS:
            self.problems.append((where, f"{_kind(node['type'])} is not allowed in an audience"))
        elif kind in ("FUNCTION", "WINDOW"):
            self._function(node, where, function_problem)
        self._children(node, visible, where)

    def _relation(self, node: dict, visible: frozenset[str], where: int) -> None:
        kind = node["type"]
        if kind == "BASE_TABLE":
            self._table(node, visible, where)
        elif kind == "TABLE_FUNCTION":
            function = node.get("function") or {}
            self._function(function, where, table_function_problem)
            self._children(function, visible, where)  # its arguments, not the function again as a scalar
            self._children(node, visible, where, skip=("function",))
            return
        elif kind not in _RELATIONS:
            self.problems.append((where, f"{_kind(kind)} is not allowed in an audience; it reads only through ref()"))
        self._children(node, visible, where)

    def _function(self, node: dict, where: int, problem_of: Any) -> None:
        name = str(node.get("function_name", ""))
        qualifier = ".".join(part for part in (node.get("catalog"), node.get("schema")) if part)
        if qualifier:
            self.problems.append((where, f"`{qualifier}.{name}()`: call functions without a schema in an audience"))
            return
        problem = problem_of(name)
        if problem:
            self.problems.append((where, problem))

    def _table(self, node: dict, visible: frozenset[str], where: int) -> None:
        parts = tuple(str(node.get(key) or "") for key in ("catalog_name", "schema_name", "table_name"))
        parts = tuple(part for part in parts if part)
        lowered = tuple(part.lower() for part in parts)
        if len(lowered) == 1 and lowered[0] in visible or lowered in self.relations:
            return
        name = parts[-1] if parts else ""
        if len(parts) == 1 and any(mark in name for mark in _PATH_MARKS):
            self.problems.append((where, (
                f"`'{name}'` reads a file directly; an audience reads only warehouse models, through ref()"
            )))
            return
        shown = ".".join(parts)
        self.problems.append((where, (
            f"`{shown}` is not read through ref(); an audience reads only warehouse models, "
            f"as {{{{ ref('{name}') }}}}, and its own CTEs"
        )))


def _kind(kind: str) -> str:
    """DuckDB's node kind as words: VALUE_PARAMETER -> `VALUE PARAMETER`, SHOW_REF -> `DESCRIBE/SHOW/SUMMARIZE`."""
    if kind == "SHOW_REF":
        return "`DESCRIBE`, `SHOW` or `SUMMARIZE`"
    return f"`{kind.replace('_', ' ')}`"
