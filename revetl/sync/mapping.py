"""The audience's rows as a plan compares them: `revetl_current` (key, payload, row_hash), the first step of
`plan.make_plan`, read from the view `revetl_audience` of the compiled audience.

The key is the sync's `identity.from` column cast to text; the payload the JSON text of the mapped fields
(dialect.json_object: the same text on every warehouse for the same values), its md5 the row hash. The
audience is the one SQL revetl did not write: where the engine's session does not keep it from writing by
itself (PostgreSQL), it is read in a read-only transaction (dialect.READ_ONLY).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revetl.config import SyncConfig
from revetl.warehouse.base import Connection
from revetl.warehouse.dialect import READ_ONLY, Template, built, computed_once, drop_table, json_object, temp_table

if TYPE_CHECKING:
    from sqlglot import exp

__all__ = ["AUDIENCE", "audience_types", "map_rows", "payload_expression"]

AUDIENCE = "revetl_audience"


def payload_expression(sync: SyncConfig, types: dict[str, str], dialect: str = "duckdb") -> exp.Expression:
    """JSON text of the mapped fields, keyed by destination field name (sorted: a stable hash), the same text
    on every engine (dialect.json_object). `types` are the audience's column types by lower-case name
    (`Connection.columns`)."""
    fields = sorted(sync.fields.items(), key=lambda kv: kv[1])
    return json_object(dialect, [(dest, column, types.get(column.lower(), "")) for column, dest in fields])


def _mapped(sync: SyncConfig, types: dict[str, str], dialect: str) -> exp.Select:
    """key, payload, row_hash of the audience's rows."""
    from sqlglot import exp

    mapped = exp.select(exp.Star(), payload_expression(sync, types, dialect).as_("payload")).from_(
        exp.table_(AUDIENCE).as_("audience"))
    return exp.select(
        exp.cast(exp.column(sync.key), "VARCHAR").as_("key"), exp.column("payload"),
        exp.MD5(this=exp.column("payload")).as_("row_hash"),
    ).from_(computed_once(dialect, mapped).subquery("mapped"))


def audience_types(connection: Connection) -> dict[str, str]:
    """The audience's column types by lower-case name, as `Connection.columns` names them (`DECIMAL(10,2)`)."""
    return {name.lower(): kind for name, kind in connection.columns(Template(f"select * from {AUDIENCE}"))}


def map_rows(connection: Connection, sync: SyncConfig, types: dict[str, str]) -> None:
    """`revetl_current`: the audience's rows, mapped. Where the engine's session does not keep analyst SQL
    from writing by itself (dialect.READ_ONLY), the audience is read in a read-only transaction."""
    dialect = connection.dialect
    # everything the statements are made of (rendered.py keeps their text between runs)
    parts = (sync.key, tuple(sorted(sync.fields.items())), tuple(sorted(types.items())))
    connection.execute(drop_table("revetl_current"))
    read_only = READ_ONLY[dialect]
    if read_only is None:
        connection.execute(built("mapped rows", dialect, parts,
                                 lambda: temp_table("revetl_current", _mapped(sync, types, dialect))))
        return
    columns = dict.fromkeys(("key", "payload", "row_hash"), "VARCHAR")
    connection.execute(built("mapped rows table", dialect, (), lambda: temp_table("revetl_current", columns=columns)))
    with connection.transaction():
        connection.execute(read_only)
        connection.execute(built("mapped rows insert", dialect, parts,
                                 lambda: _insert(_mapped(sync, types, dialect), "revetl_current")))


def _insert(query: exp.Select, table: str) -> exp.Insert:
    from sqlglot import exp

    return exp.insert(query, table)
