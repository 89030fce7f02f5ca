"""PostgreSQL behind the `Connection` seam (base.py), over ADBC's libpq driver: Arrow out, Arrow in.

Statements. Each runs on a driver statement of its own, in autocommit mode unless a `transaction()` block
is open; placeholders become libpq's `$N` (placeholders.py). `execute` reads its (small) result whole.
`stream` reads a query through `COPY ... TO STDOUT (FORMAT binary)`, the driver's bounded path, so one
Arrow batch is in memory at a time (COPY takes no parameters: a streamed query's values are inlined as
typed SQL literals by sqlglot); while it is open the session runs nothing else. `ingest` and `append` are
ADBC's bulk ingest (COPY FROM STDIN, binary).

Types. `columns` names types in DuckDB's words where revetl compares them (`DOUBLE`, `VARCHAR`, `BIGINT`,
`BOOLEAN`, `TIMESTAMP`, `TIMESTAMP WITH TIME ZONE`, ...). Rows out: `numeric` becomes an int when whole,
else a Decimal; in Arrow streams `numeric` and `json` columns are plain strings.

Sessions. Time zone UTC, `search_path` the target's schema, `application_name` "revetl HOST:PID" (what a
refused lock names). `read_only=True`: `default_transaction_read_only`, so nothing permanent can be written;
as on DuckDB, this session's own temporary tables and views may still be made and dropped (PostgreSQL
refuses even those in a read-only transaction, so such a statement alone runs in a read-write
transaction of its own). `sandbox=True` (connections that run analyst SQL): a statement timeout
(`REVETL_PG_STATEMENT_TIMEOUT` seconds, default 900), and, on a read-only connection whose login role could
reach server files or programs (a superuser, or a member of pg_read_server_files, pg_write_server_files,
pg_execute_server_program), `SET ROLE pg_read_all_data`: a role that reads every table and can write
none, call no file, program or admin function, change no superuser setting. What PostgreSQL cannot
enforce by session (a SELECT may call `set_config`, or functions the login role may execute) is kept out
by the audience checker's deny-by-default function list; a login role without those powers is the
server's own guarantee.

Errors. Every driver error becomes a QueryError (the driver's exception its cause) holding the server's
first line, with the password and any URI credentials scrubbed; a server that cannot be reached is one
sentence naming host:port and database.
"""

from __future__ import annotations

import contextlib
import decimal
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa
from sqlglot import exp

from revetl.errors import QueryError
from revetl.warehouse.base import READ_ROWS, ArrowData, Connection, Parameters, Result, SQL
from revetl.warehouse.dialect import DIALECTS
from revetl.warehouse.libpq import Server, session_settings
from revetl.warehouse.placeholders import inline, numbered

__all__ = ["PostgresConnection", "Server", "open_server", "session"]

_NO_COPY = {"adbc.postgresql.use_copy": "false"}
_LINE = re.compile(r"^LINE (\d+):", re.MULTILINE)
_SERVER_LINE = re.compile(r"(?:ERROR|FATAL):\s+(.*)")
_TEMP_DDL = re.compile(r"\s*create\s+(?:or\s+replace\s+)?temp(?:orary)?\s+(?:table|view)\b", re.IGNORECASE)
_DROP = re.compile(r"\s*drop\s+(?:table|view)\s+(?:if\s+exists\s+)?(\"(?:[^\"]|\"\")+\"|[\w$]+)\s*;?\s*$",
                   re.IGNORECASE)
_STREAM_BYTES = 8 << 20  # what the driver aims one streamed batch at (a hint: rows are cut to `rows` after)

# PostgreSQL type name -> the name DuckDB gives the same type (what callers compare).
_TYPE_NAMES = {
    "int8": "BIGINT", "int4": "INTEGER", "int2": "SMALLINT", "float8": "DOUBLE", "float4": "FLOAT",
    "numeric": "DECIMAL", "text": "VARCHAR", "varchar": "VARCHAR", "bpchar": "VARCHAR", "name": "VARCHAR",
    "char": "VARCHAR", "bool": "BOOLEAN", "timestamp": "TIMESTAMP", "timestamptz": "TIMESTAMP WITH TIME ZONE",
    "date": "DATE", "time": "TIME", "interval": "INTERVAL", "json": "JSON", "jsonb": "JSON", "uuid": "UUID",
    "bytea": "BLOB",
}
_POWERFUL = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")


def session(server: Server, settings: Mapping[str, str]) -> PostgresConnection:
    """A plain revetl session on `server` with these server settings (the advisory lock's own)."""
    return PostgresConnection(server, server.open(settings))


def open_server(server: Server, *, read_only: bool = False, sandbox: bool = False) -> PostgresConnection:
    """Open a revetl session on `server` (see the module docstring for `read_only` and `sandbox`)."""
    connection = PostgresConnection(server, server.open(session_settings(server, read_only=read_only,
                                                                          sandbox=sandbox)), read_only=read_only)
    if sandbox and read_only:
        try:
            connection._restrict()
        except BaseException:
            connection.close()
            raise
    return connection


class _Rows(Result):
    def __init__(self, table: pa.Table | None) -> None:
        self._table = table

    def fetchall(self) -> list[tuple[Any, ...]]:
        if self._table is None:
            return []
        columns = [_python_values(self._table.column(i), field) for i, field in enumerate(self._table.schema)]
        self._table = self._table.slice(0, 0)
        return list(zip(*columns))

    @property
    def columns(self) -> list[str]:
        return [] if self._table is None else list(self._table.column_names)


def _python_values(column: pa.ChunkedArray, field: pa.Field) -> list[Any]:
    if _typname(field) != "numeric":
        return column.to_pylist()
    return [None if value is None else _number(value) for value in column.cast(pa.string()).to_pylist()]


def _number(text: str) -> int | decimal.Decimal:
    return int(text) if text.lstrip("-").isdigit() else decimal.Decimal(text)


def _typname(field: pa.Field) -> str:
    return (field.metadata or {}).get(b"POSTGRESQL:type", b"").decode()


def type_name(field: pa.Field) -> str:
    """The DuckDB name of a PostgreSQL result column's type (arrays as `T[]`)."""
    name = _typname(field)
    if name.startswith("_") and isinstance(field.type, pa.ListType):
        return type_name(field.type.value_field) + "[]"
    modifier = int((field.metadata or {}).get(b"POSTGRESQL:typmod", b"-1"))
    if name == "numeric" and modifier >= 4:  # numeric(p, s): ((p << 16) | s) + 4
        return f"DECIMAL({(modifier - 4) >> 16},{(modifier - 4) & 0xFFFF})"
    return _TYPE_NAMES.get(name, name.upper() or str(field.type).upper())


class PostgresConnection(Connection):
    """One PostgreSQL session (ADBC) as a revetl `Connection`."""

    dialect = DIALECTS["postgres"]

    def __init__(self, server: Server, driver: adbc.Connection, *, read_only: bool = False) -> None:
        self.server = server
        self._driver = driver
        self._read_only = read_only
        self._in_transaction = False

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except adbc_driver_manager.Error as exc:
            raise self._query_error(exc) from exc
        except (pa.ArrowException, OSError) as exc:  # the server's error, as the Arrow stream passes it on
            raise self._query_error(exc) from exc

    def _query_error(self, exc: BaseException) -> QueryError:
        text = self.server.scrub(str(exc))
        server = _SERVER_LINE.search(text)
        line = _LINE.search(text)
        state = getattr(exc, "sqlstate", None) or ""
        message = server.group(1).strip() if server else (text.strip().splitlines() or [type(exc).__name__])[0]
        if "server closed the connection" in text or "no connection to the server" in text:
            message = f"lost the connection to {self.server.where()}: {message}"
        return QueryError(message, out_of_disk=state == "53100" or "No space left" in text,
                          line=int(line.group(1)) if line else None, missing=state in ("42P01", "3F000"))

    def _run(self, text: str, parameters: Parameters, **options: str) -> adbc.Cursor:
        """A cursor that has run `text` (placeholders numbered)."""
        text, values = numbered(text, parameters)
        cursor = self._driver.cursor(adbc_stmt_kwargs={**_NO_COPY, **options})
        try:
            with self._errors():
                cursor.execute(text, values or None)
        except BaseException:
            cursor.close()
            raise
        return cursor

    def execute(self, sql: SQL, parameters: Parameters = None) -> Result:
        text = self.render(sql)
        if self._read_only and not self._in_transaction and self._temporary_ddl(text):
            return self._writable(text, parameters)
        cursor = self._run(text, parameters)
        try:
            with self._errors():
                table = cursor.fetch_arrow_table() if cursor.description else None
        finally:
            cursor.close()
        return _Rows(table)

    def _temporary_ddl(self, text: str) -> bool:
        """Whether `text` makes a temporary table/view, or drops one that is temporary (or absent)."""
        if _TEMP_DDL.match(text):
            return True
        dropped = _DROP.match(text)
        if not dropped:
            return False
        name = dropped.group(1)
        persistence = self.scalar("select relpersistence from pg_class where oid = to_regclass($1)",
                                  [name if name.startswith('"') else name.lower()])
        return persistence in (None, "t")

    def _writable(self, text: str, parameters: Parameters) -> Result:
        with self.transaction(read_write=True):
            return self.execute(text, parameters)

    def executemany(self, sql: SQL, rows: Sequence[Sequence[Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        text, _ = numbered(self.render(sql), rows[0])
        with contextlib.closing(self._driver.cursor(adbc_stmt_kwargs=_NO_COPY)) as cursor, self._errors():
            cursor.executemany(text, [list(row) for row in rows])

    def columns(self, sql: SQL) -> list[tuple[str, str]]:
        query = self.render(sql).rstrip().rstrip(";")
        cursor = self._run(f"select * from ({query}\n) as revetl_columns limit 0", None)
        try:
            with self._errors():
                schema = cursor.fetch_record_batch().schema
        finally:
            cursor.close()
        return [(field.name, type_name(field)) for field in schema]

    def stream(self, sql: SQL, parameters: Parameters = None, rows: int = READ_ROWS) -> pa.RecordBatchReader:
        text = inline(self.render(sql), parameters, lambda value: exp.convert(value).sql(dialect=self.dialect))
        cursor = self._run(text, None, **{"adbc.postgresql.use_copy": "true",
                                             "adbc.postgresql.batch_size_hint_bytes": str(_STREAM_BYTES)})
        try:
            with self._errors():
                reader = cursor.fetch_record_batch()
        except BaseException:
            cursor.close()
            raise
        schema = pa.schema([_plain(field) for field in reader.schema])

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                with self._errors():
                    for batch in reader:
                        batch = pa.RecordBatch.from_arrays([_plain_array(c) for c in batch.columns], schema=schema)
                        for start in range(0, batch.num_rows, rows):
                            yield batch.slice(start, rows)
            finally:
                reader.close()
                cursor.close()

        return pa.RecordBatchReader.from_batches(schema, batches())

    def ingest(self, table: str, data: ArrowData, *, temporary: bool = True) -> None:
        if self._read_only and temporary and not self._in_transaction:
            with self.transaction(read_write=True):
                return self.ingest(table, data, temporary=temporary)
        with contextlib.closing(self._driver.cursor()) as cursor, self._errors():
            cursor.adbc_ingest(table, data, mode="create", temporary=temporary)
        return None

    def append(self, table: str, data: ArrowData) -> None:
        """Append Arrow `data` to the existing `table` (`schema.name`), its columns matched by name: ADBC's
        bulk ingest (COPY FROM STDIN, binary), inside the open transaction if there is one."""
        schema, _, name = table.rpartition(".")
        with contextlib.closing(self._driver.cursor()) as cursor, self._errors():
            cursor.adbc_ingest(name, data, mode="append", db_schema_name=schema or None)

    @contextlib.contextmanager
    def transaction(self, read_write: bool = False) -> Iterator[None]:
        """As `Connection.transaction`; `read_write` opens a writable one on a read-only session. Nested
        blocks are part of the enclosing transaction.

        The driver opens it (ADBC autocommit off), never a BEGIN sent as text: in autocommit mode the driver
        wraps each statement binding a timestamp in a BEGIN/COMMIT of its own, which would commit ours."""
        if self._in_transaction:
            yield
            return
        self._begin()
        try:
            if read_write:
                self.execute("set transaction read write")
            yield
        except BaseException:
            with contextlib.suppress(QueryError):
                self._rollback()
            raise
        self._commit()

    def _begin(self) -> None:
        with self._errors():
            self._driver.adbc_connection.set_autocommit(False)
        self._in_transaction = True

    def _end(self, how: Callable[[], None]) -> None:
        try:
            with self._errors():
                how()
        finally:
            self._in_transaction = False
            with self._errors():
                self._driver.adbc_connection.set_autocommit(True)

    def _commit(self) -> None:
        self._end(self._driver.adbc_connection.commit)

    def _rollback(self) -> None:
        self._end(self._driver.adbc_connection.rollback)

    def _restrict(self) -> None:
        """On a read-only sandbox: drop the login role's powers over server files and programs."""
        powerful = self.scalar(
            "select rolsuper or " + " or ".join(f"pg_has_role(current_user, '{role}', 'member')" for role in _POWERFUL)
            + " from pg_roles where rolname = current_user"
            " and exists (select from pg_roles where rolname = 'pg_read_all_data')")  # PostgreSQL 14+
        if powerful:
            self.execute("set role pg_read_all_data")

    def close(self) -> None:
        with contextlib.suppress(adbc_driver_manager.Error):
            self._driver.close()


def _plain(field: pa.Field) -> pa.Field:
    """`numeric` and `json` columns as the strings they are stored as."""
    if isinstance(field.type, pa.BaseExtensionType) and pa.types.is_string(field.type.storage_type):
        return field.with_type(pa.string())
    return field


def _plain_array(column: pa.Array) -> pa.Array:
    if isinstance(column.type, pa.BaseExtensionType) and pa.types.is_string(column.type.storage_type):
        return column.storage
    return column
