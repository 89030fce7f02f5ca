"""The embedded warehouse: DuckDB behind the `Connection` seam (base.py). The only module that imports duckdb,
with dbt.py's publish step.

Sharing the file. DuckDB lets one process write a file, or several read it, never both: a second
process's open fails at once with "Could not set lock". So every revetl command holds the warehouse
only for short steps (a plan, a fold of acknowledgements, a build's publish) and `open_file` waits for
the file with backoff (up to `wait` seconds), saying once on stderr which process it waits for. Cron
may start many syncs and a build in the same minute: they take turns for seconds, they do not fail.

Start-up. The engine is DuckDB's C extension (`_duckdb`), not the `duckdb` package around it: importing the
package costs 0.2 s more (its relational API in Python, and its version read from the installed metadata), which a
cron line's sync with nothing to send would pay for statements the extension runs alone. The methods that hand
rows to or from Arrow (`stream`, `scratch`, `ingest`) load the package first (`_relational`): it adds those
methods to every connection, open ones too.

Sandbox. A connection that runs analyst SQL (audiences: check, preview, plan, sync) is opened with
`sandbox=True`: DuckDB itself then refuses files, network, extension installs and loads
(`enable_external_access`, `autoinstall/autoload_known_extensions`, `allow_community_extensions`)
and any change of settings (`lock_configuration`), whatever the SQL manages to call.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The extension alone where it is importable by itself (see Start-up in the docstring); else the package.
try:
    import _duckdb as duckdb
except ImportError:  # pragma: no cover - a duckdb whose extension lives inside the package
    import duckdb  # type: ignore[no-redef]

from revetl.errors import ConfigError, QueryError, WarehouseError, first_line
from revetl.runtime import SYSTEM, Clock
from revetl.warehouse.base import READ_ROWS, ArrowData, Connection, Parameters, Result, SQL
from revetl.warehouse.dialect import DIALECTS, Template, temp_table

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["DuckDBConnection", "open_file", "parse_tree"]

# Settings that keep analyst SQL inside the warehouse; applied in this order, the lock last.
_SANDBOX = (
    ("enable_external_access", False),  # no files, no network, no ATTACH, no COPY, no extension loads
    ("autoinstall_known_extensions", False),
    ("autoload_known_extensions", False),
    ("allow_community_extensions", False),
    ("lock_configuration", True),  # and no SET/RESET from here on
)
_LOCKED = re.compile(r"Could not set lock on file(?:.*?\(PID (\d+)\))?", re.S)
_LINE = re.compile(r"^LINE (\d+):", re.MULTILINE)


def _query_error(exc: Exception) -> QueryError:
    """One QueryError for an error of DuckDB (or of the Arrow stream it feeds), what callers test read off it."""
    text = str(exc)
    line = _LINE.search(text)
    return QueryError(
        first_line(exc),
        out_of_disk="failed to offload" in text or "No space left" in text,
        line=int(line.group(1)) if line else None,
        missing="does not exist" in text,
    )


@contextlib.contextmanager
def _engine_errors() -> Iterator[None]:
    try:
        yield
    except duckdb.Error as exc:
        raise _query_error(exc) from exc


class _Result(Result):
    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self._cursor = cursor

    def fetchall(self) -> list[tuple[Any, ...]]:
        with _engine_errors():
            return self._cursor.fetchall()

    @property
    def columns(self) -> list[str]:
        return [column[0] for column in self._cursor.description or ()]


class DuckDBConnection(Connection):
    """A DuckDB connection (a file, or in memory) as a revetl `Connection`."""

    dialect = DIALECTS["duckdb"]

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self._connection = connection

    def execute(self, sql: SQL, parameters: Parameters = None) -> Result:
        with _engine_errors():
            return _Result(self._connection.execute(self.render(sql), parameters))

    def executemany(self, sql: SQL, rows: Sequence[Sequence[Any]]) -> None:
        with _engine_errors():
            self._connection.executemany(self.render(sql), rows)

    def columns(self, sql: SQL) -> list[tuple[str, str]]:
        with _engine_errors():  # DESCRIBE binds the query, runs nothing; its types are the relational API's names
            return [(row[0], row[1]) for row in self._connection.execute(f"describe {self.render(sql)}").fetchall()]

    def stream(self, sql: SQL, parameters: Parameters = None, rows: int = READ_ROWS) -> pa.RecordBatchReader:
        import pyarrow as pa  # loaded by the commands that stream rows out

        _relational()
        with _engine_errors():
            reader = self._connection.sql(self.render(sql), params=parameters).to_arrow_reader(rows)

        def batches() -> Iterator[pa.RecordBatch]:
            try:
                with _engine_errors():
                    yield from reader
            except (pa.ArrowException, OSError) as exc:  # DuckDB's error, as its Arrow stream passes it on
                raise _query_error(exc) from exc
            finally:
                reader.close()

        return pa.RecordBatchReader.from_batches(reader.schema, batches())

    def ingest(self, table: str, data: ArrowData, *, temporary: bool = True) -> None:
        with self.scratch("revetl_ingest", data) as name:
            create = temp_table(table, Template(f"select * from {name}").expression())
            if not temporary:
                create.set("properties", None)
            self.execute(create)

    @contextlib.contextmanager
    def scratch(self, name: str, data: ArrowData) -> Iterator[str]:
        """Arrow data read in place (DuckDB scans it where it lies: no copy)."""
        _relational()
        with _engine_errors():
            self._connection.register(name, data)
        try:
            yield name
        finally:
            with _engine_errors():
                self._connection.unregister(name)

    def _begin(self) -> None:
        self.execute("begin transaction")

    def _commit(self) -> None:
        self.execute("commit")

    def _rollback(self) -> None:
        self.execute("rollback")

    def close(self) -> None:
        self._connection.close()


def _relational() -> None:
    """Load the `duckdb` package: its Arrow sources and relational methods join the extension's connections."""
    import duckdb  # noqa: F401 - imported for what it adds to the extension


def open_file(path: Path, *, read_only: bool, wait: float, settings: Mapping[str, Any], threads: int | None,
              memory_limit: str | None, sandbox: bool, clock: Clock = SYSTEM,
              wrap: Callable[[duckdb.DuckDBPyConnection], DuckDBConnection] | None = None) -> DuckDBConnection:
    """Open the DuckDB file at `path` with the profile's `settings` and `threads`, and `memory_limit`
    when given. Time zone is pinned to UTC. While another process holds the file, waits up to `wait`
    seconds. `sandbox=True` for connections that run analyst SQL (see the module docstring). `wrap` makes the
    revetl connection of the DuckDB one (default DuckDBConnection)."""
    connection = _open(path, read_only, wait, clock)
    try:
        connection.execute("SET TimeZone = 'UTC'")
        for name, value in settings.items():
            if name.lower() != "timezone":
                connection.execute(f"SET {name} = ?", [value])  # names come from the project's own profile
        if threads:
            connection.execute("SET threads = ?", [int(threads)])
        if memory_limit:
            try:
                connection.execute("SET memory_limit = ?", [memory_limit])
            except duckdb.Error as exc:
                raise ConfigError(f"invalid DuckDB memory limit {memory_limit!r}: {exc}") from exc
        if sandbox:
            for name, value in _SANDBOX:
                connection.execute(f"SET {name} = {str(value).lower()}")
    except BaseException:
        connection.close()
        raise
    return (wrap or DuckDBConnection)(connection)


def _open(path: Path, read_only: bool, wait: float, clock: Clock) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, retried with backoff and jitter while another process holds the file."""
    deadline = clock.monotonic() + wait
    delay, told = 0.02, False
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            locked = _LOCKED.search(str(exc))
            if locked is None:
                raise WarehouseError(f"cannot open the warehouse {path}: {first_line(exc)}") from exc
            holder = f"process {locked.group(1)}" if locked.group(1) else "another process"
            if clock.monotonic() >= deadline:
                raise WarehouseError(
                    f"the warehouse {path} is still in use by {holder} after {wait:g} s; "
                    "try again later, or wait longer with REVETL_LOCK_WAIT"
                ) from exc
            if not told and delay >= 0.5:
                told = True
                print(f"waiting for the warehouse {path}: {holder} is using it", file=sys.stderr, flush=True)
            clock.block(min(clock.uniform(delay / 2, delay), max(0.0, deadline - clock.monotonic())))
            delay = min(delay * 2, 1.0)


_parser_lock = threading.Lock()
_parser: duckdb.DuckDBPyConnection | None = None


def parse_tree(sql: str) -> dict[str, Any]:
    """DuckDB's own parse tree of `sql` as JSON (`json_serialize_sql`: parses, runs nothing), from a private
    in-memory connection that can reach nothing. A query it cannot parse gives `{"error": true, ...}`."""
    global _parser
    with _parser_lock:
        if _parser is None:
            _parser = duckdb.connect(config={
                "enable_external_access": False, "autoinstall_known_extensions": False,
                "autoload_known_extensions": False, "lock_configuration": True,
            })
        return json.loads(_parser.execute("select json_serialize_sql(?)", [sql]).fetchall()[0][0])
