"""The one warehouse seam: what revetl asks of a warehouse connection, whatever the engine.

Plan, state, apply, audiences (check, preview) and the demo talk only to a `Connection`; each engine
implements it in a module of its own (`embedded.py`: DuckDB, the default). SQL reaches it as text or
as a sqlglot expression, which the connection renders in its own `dialect` with every identifier
quoted; values go in as parameters, never into the text.

    execute(sql, parameters)       -> Result: fetchall(), fetchone(), columns
    executemany(sql, rows)
    columns(sql)                   (name, type) of a query's output, reading no rows
    stream(sql, parameters, rows)  the rows out as Arrow record batches, one batch in memory at a time
    ingest(table, data)            an Arrow table or reader into a new (temporary) table
    scratch(name, data)            Arrow data readable by name for the length of a block
    relation(name, sql)            a query of the warehouse's models readable by name (drop_relation)
    source                         the connection the models are read from (itself, but on Spark)
    transaction()                  all of a block's statements, or none
    close()

Named locks (one sync run, one build) are the project's, not a connection's: `connection.lock(project, name,
refuse)` holds one without holding the warehouse (an flock beside a DuckDB file, an advisory lock on PostgreSQL).

Every failure of the engine reaches the caller as one `QueryError` (errors.py), the engine's own
exception as its cause: no module outside `revetl/warehouse/` names an engine.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeAlias

from revetl.errors import QueryError

if TYPE_CHECKING:  # neither is imported by the commands that only open a connection to read
    import pyarrow as pa
    from sqlglot import exp

    from revetl.warehouse.dialect import Template

__all__ = ["ArrowData", "Connection", "Parameters", "Result", "SQL"]

SQL: TypeAlias = "str | exp.Expression | Template"
Parameters: TypeAlias = "Sequence[Any] | Mapping[str, Any] | None"
ArrowData: TypeAlias = "pa.Table | pa.RecordBatchReader"
READ_ROWS = 20_000  # rows per Arrow batch streamed out, unless the caller says otherwise


class Result(ABC):
    """The rows of one executed statement."""

    @abstractmethod
    def fetchall(self) -> list[tuple[Any, ...]]:
        """Every row (the result is then exhausted)."""

    def fetchone(self) -> tuple[Any, ...] | None:
        """The first row, or None: for statements that return one row (a count). Reads them all."""
        rows = self.fetchall()
        return rows[0] if rows else None

    @property
    @abstractmethod
    def columns(self) -> list[str]:
        """The names of the result's columns."""


class Connection(ABC):
    """One open session with the warehouse. Close it (or use it as a context manager) when done."""

    dialect: ClassVar[str]  # sqlglot's name of the engine's SQL dialect

    def render(self, sql: SQL) -> str:
        """SQL text for this engine: an expression (or a `dialect.Template`) rendered in its dialect,
        identifiers quoted; text as is."""
        return sql if isinstance(sql, str) else sql.sql(dialect=self.dialect, identify=True)

    @abstractmethod
    def execute(self, sql: SQL, parameters: Parameters = None) -> Result:
        """Run one statement with its parameters (`?` in text, or named, `$name` / exp.Placeholder)."""

    def fetchall(self, sql: SQL, parameters: Parameters = None) -> list[tuple[Any, ...]]:
        return self.execute(sql, parameters).fetchall()

    def scalar(self, sql: SQL, parameters: Parameters = None) -> Any:
        """The first column of the first row (None when there is no row)."""
        row = self.execute(sql, parameters).fetchone()
        return None if row is None else row[0]

    @abstractmethod
    def executemany(self, sql: SQL, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement once per row of parameters."""

    @abstractmethod
    def columns(self, sql: SQL) -> list[tuple[str, str]]:
        """(name, type) of each output column of a query, without reading its rows. Types are the
        engine's own names, upper case (`DOUBLE`, `VARCHAR`)."""

    @abstractmethod
    def stream(self, sql: SQL, parameters: Parameters = None, rows: int = READ_ROWS) -> pa.RecordBatchReader:
        """The query's rows as Arrow record batches of about `rows` rows, read as they are consumed.
        Close the reader when done; an engine error while reading raises QueryError."""

    @abstractmethod
    def ingest(self, table: str, data: ArrowData, *, temporary: bool = True) -> None:
        """Create `table` (temporary: this session's, gone when it closes) holding the Arrow `data`."""

    @contextlib.contextmanager
    def scratch(self, name: str, data: ArrowData) -> Iterator[str]:
        """Arrow `data` readable as the relation `name` inside the block, gone after it. Engines that can
        read Arrow in place override this; by default it is a temporary table."""
        from revetl.warehouse.dialect import drop_table

        self.ingest(name, data)
        try:
            yield name
        finally:
            self.execute(drop_table(name))

    @property
    def source(self) -> Connection:
        """Where the warehouse's models are read: this connection, except where the sync state lives apart
        from them (on Spark: a DuckDB file whose `source` is the Spark session, warehouse/spark.py)."""
        return self

    def relation(self, name: str, sql: str) -> None:
        """The query `sql` of the models (in `source`'s dialect) readable here as the temporary relation
        `name`, replacing any before; by default a view."""
        from revetl.warehouse.dialect import drop_table

        self.execute(drop_table(name, kind="VIEW"))
        self.execute(f"create temp view {name} as {sql}\n")

    def drop_relation(self, name: str) -> None:
        """Drop what `relation` made."""
        from revetl.warehouse.dialect import drop_table

        self.execute(drop_table(name, kind="VIEW"))

    @abstractmethod
    def _begin(self) -> None: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _rollback(self) -> None: ...

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Every statement of the block takes effect, or none does (the block's error is re-raised)."""
        self._begin()
        try:
            yield
            self._commit()
        except BaseException:
            with contextlib.suppress(QueryError):  # a failed commit has already ended the transaction
                self._rollback()
            raise

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
