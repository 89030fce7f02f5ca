"""Apache Spark, the engine past one machine: the session revetl and dbt share (DESIGN 8).

The `spark` output of profiles.yml uses dbt-spark's `session` method: dbt runs its SQL through a
SparkSession in revetl's own process (`SparkSession.builder.getOrCreate()`), so revetl creates that
session first, from the same output, and dbt then finds it. One session per process: the JVM costs
10-40 s to start, and everything after (dbt's models, revetl's queries) reuses it.

The output's `server_side_parameters` are Spark settings. `spark.master` is a local session
(`local[*]`) unless $REVETL_SPARK_MASTER names a cluster (`spark://host:7077`, `yarn`,
`k8s://...`). A Spark Connect URL (`sc://`) is refused with a sentence: the session method needs the
driver, and its JVM, in revetl's process, which Spark Connect's thin client does not have. Relative paths in `spark.sql.warehouse.dir` and in the metastore's Derby URL are taken
from the project directory (where dbt runs), so every command finds the same tables wherever it is
started. Set here unless the profile says otherwise: the driver on loopback, the web UI off, UTC,
Derby's log beside its database. dbt-spark turns ANSI mode off for its sessions; revetl's queries
run in that same mode (a double-quoted "name" is then a string literal: the models quote with
`adapter.quote`, revetl's SQL with backticks, through sqlglot).

The default metastore is an embedded Derby database: one process at a time may open it. A second
revetl process waits for the first (a file lock beside it, up to REVETL_LOCK_WAIT seconds), as it
does for an embedded DuckDB file. A cluster shared by many users names its own metastore
(`spark.hadoop.hive.metastore.uris`) in the profile.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from revetl.errors import ConfigError, QueryError, WarehouseError
from revetl.warehouse.base import READ_ROWS, SQL, ArrowData, Connection, Parameters, Result
from revetl.warehouse.embedded import DuckDBConnection

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["SparkConnection", "SparkState", "session", "spark_settings", "stop_session"]

_DERBY = re.compile(r"^(jdbc:derby:;databaseName=)([^;]+)(.*)$")
_DEFAULTS = {
    "spark.master": "local[*]",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",  # revetl shows its own progress
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.sql.ansi.enabled": "false",  # as dbt-spark sets it for its sessions: one mode for both
}
_METASTORE_URL = "spark.hadoop.javax.jdo.option.ConnectionURL"
_LOG = f"-Dlog4j2.configurationFile={Path(__file__).with_name('spark_log4j2.properties')}"

_held: tuple[SparkSession, Any] | None = None  # this process's session and the metastore lock it holds


def spark_settings(root: Path, config: dict[str, Any]) -> dict[str, str]:
    """The Spark settings of a `spark` output of profiles.yml (`config`) in the project at `root`: the
    profile's, relative paths made absolute, revetl's defaults where the profile is silent."""
    if config.get("method", "session") != "session":
        raise ConfigError(f"{root / 'profiles.yml'}: revetl reaches Spark through dbt-spark's `session` "
                          f"method, not {config.get('method')!r}; name a cluster with REVETL_SPARK_MASTER")
    given = {str(key): str(value) for key, value in (config.get("server_side_parameters") or {}).items()}
    settings = {**_DEFAULTS, **given}
    if settings["spark.master"].startswith("sc://"):
        raise ConfigError(f"{root / 'profiles.yml'}: the Spark master {settings['spark.master']!r} is a Spark Connect "
                          f"server, which revetl does not support (dbt-spark's session method runs the driver in "
                          f"revetl's own process); name a spark://, yarn or k8s:// master, or local[N]")
    warehouse = Path(settings.get("spark.sql.warehouse.dir", "data/spark/warehouse"))
    if "://" not in str(warehouse):
        warehouse = warehouse if warehouse.is_absolute() else root / warehouse
        settings["spark.sql.warehouse.dir"] = str(warehouse)
    url = settings.get(_METASTORE_URL, f"jdbc:derby:;databaseName={warehouse.parent / 'metastore_db'};create=true")
    found = _DERBY.match(url)
    if found:
        database = Path(found.group(2))
        database = database if database.is_absolute() else root / database
        url = f"{found.group(1)}{database}{found.group(3)}"
        settings.setdefault("spark.driver.extraJavaOptions", f"-Dderby.system.home={database.parent} {_LOG}")
    settings.setdefault("spark.driver.extraJavaOptions", _LOG)
    settings[_METASTORE_URL] = url
    return settings


def _metastore_dir(settings: dict[str, str]) -> Path | None:
    found = _DERBY.match(settings.get(_METASTORE_URL, ""))
    return Path(found.group(2)).parent if found else None


def session(root: Path, config: dict[str, Any], wait: float) -> SparkSession:
    """This process's SparkSession for the `spark` output `config` of the project at `root`, started on first
    use (the first project's settings hold for the life of the process); waits up to `wait` seconds for
    another process's metastore."""
    global _held
    if _held is not None:
        return _held[0]
    from revetl import locks

    settings = spark_settings(root, config)
    directory = _metastore_dir(settings)
    held = None
    if directory is not None:  # an embedded Derby metastore: one process at a time
        directory.mkdir(parents=True, exist_ok=True)
        held = locks.wait_for(directory / "metastore.lock", wait, f"the Spark metastore in {directory}")
    try:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        from pyspark.sql import SparkSession

        builder = SparkSession.builder.enableHiveSupport()
        for key, value in settings.items():
            builder = builder.config(key, value)
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("ERROR")
    except Exception as exc:
        if held is not None:
            held.close()
        raise WarehouseError(f"cannot start Spark ({settings['spark.master']}): {str(exc).strip().splitlines()[0]}") \
            from exc
    _held = (spark, held)
    return spark


def stop_session() -> None:
    """Stop this process's session and release the metastore (tests; a long-lived process)."""
    global _held
    if _held is None:
        return
    spark, held = _held
    _held = None
    spark.stop()
    if held is not None:
        held.close()


class _Rows(Result):
    """A Spark query's rows, collected as Arrow."""

    def __init__(self, table: pa.Table) -> None:
        self._table = table

    def fetchall(self) -> list[tuple[Any, ...]]:
        columns = [column.to_pylist() for column in self._table.columns]
        return list(zip(*columns)) if columns else []

    @property
    def columns(self) -> list[str]:
        return list(self._table.schema.names)


class SparkConnection(Connection):
    """Queries on Spark through the process's session (`session`), in the target's schema. Reads only: Spark
    holds the models; revetl's state is kept in a DuckDB file beside the project (`connection.state_store`).
    Times come out as DuckDB gives them, UTC without a time zone."""

    dialect = "spark"

    def __init__(self, spark: SparkSession, schema: str) -> None:
        self._spark = spark
        self._schema = schema
        self._schema_built = False

    def _frame(self, sql: SQL, parameters: Parameters = None) -> DataFrame:
        from revetl.warehouse.placeholders import marked

        text, args = marked(self.render(sql), parameters)
        try:
            if self._schema_built or self._spark.catalog.databaseExists(self._schema):
                self._schema_built = True  # before the first build, names resolve in `default` (and fail)
                self._spark.catalog.setCurrentDatabase(self._schema)
            return self._spark.sql(text, args=args or None)
        except Exception as exc:  # noqa: BLE001 - Spark's errors come through py4j as several types
            raise QueryError(_first_line(exc)) from exc

    def _arrow(self, frame: DataFrame) -> pa.Table:
        import pyarrow as pa

        try:
            batches = frame._collect_as_arrow()
        except Exception as exc:  # noqa: BLE001
            raise QueryError(_first_line(exc)) from exc
        from pyspark.sql.pandas.types import to_arrow_schema

        schema = _utc_naive(batches[0].schema if batches else to_arrow_schema(frame.schema))
        return pa.Table.from_batches([batch.cast(schema) for batch in batches], schema=schema)

    def execute(self, sql: SQL, parameters: Parameters = None) -> Result:
        return _Rows(self._arrow(self._frame(sql, parameters)))

    def executemany(self, sql: SQL, rows: Sequence[Sequence[Any]]) -> None:
        for row in rows:
            self.execute(sql, row)

    def columns(self, sql: SQL) -> list[tuple[str, str]]:
        frame = self._frame(sql)
        return [(field.name, field.dataType.simpleString().upper()) for field in frame.schema.fields]

    def stream(self, sql: SQL, parameters: Parameters = None, rows: int = READ_ROWS) -> pa.RecordBatchReader:
        """The rows as Arrow. Spark sends a query's whole result to the driver as Arrow batches (about 100
        bytes a row of an audience: 100 MB for a million members), then they are read `rows` at a time."""
        import pyarrow as pa

        table = self._arrow(self._frame(sql, parameters))
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=rows))

    def ingest(self, table: str, data: ArrowData, *, temporary: bool = True) -> None:
        raise QueryError("revetl writes nothing into Spark: its state lives in a DuckDB file (warehouse/spark.py)")

    def _begin(self) -> None:
        raise QueryError("Spark has no transactions: revetl's state lives in a DuckDB file (warehouse/spark.py)")

    def _commit(self) -> None:
        raise QueryError("Spark has no transactions")

    def _rollback(self) -> None:
        """Nothing began."""

    def close(self) -> None:
        """The session stays up for the rest of the process (its JVM is slow to start)."""


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "desc", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _utc_naive(schema: pa.Schema) -> pa.Schema:
    """Spark's TIMESTAMP (an instant, in UTC) as DuckDB's TIMESTAMP: the UTC time without a zone."""
    import pyarrow as pa

    return pa.schema([pa.field(f.name, pa.timestamp(f.type.unit)) if pa.types.is_timestamp(f.type) and f.type.tz
                      else f for f in schema])


class SparkState(DuckDBConnection):
    """The sync state of a Spark target: a DuckDB file in the work directory (`state.duckdb`), with the Spark
    warehouse as its `source`. Spark's Parquet tables take no UPDATE, DELETE or MERGE and have no transaction,
    so the state store stays transactional (DESIGN 8): an audience's rows are read from Spark as Arrow into a
    temporary table here, and the plan, the acknowledgements and the run records are DuckDB's, exactly as on
    an embedded warehouse (one writer at a time, waiting for the file like it). Spark itself is started only
    when the models are read: `revetl runs`, the report, alerts and the scheduler read the state alone."""

    def __init__(self, connection: Any, *, source: Callable[[], SparkConnection]) -> None:
        super().__init__(connection)
        self._open_source = source
        self._source: SparkConnection | None = None

    @property
    def source(self) -> Connection:
        if self._source is None:
            self._source = self._open_source()
        return self._source

    def relation(self, name: str, sql: str) -> None:
        from revetl.warehouse.dialect import drop_table

        self.execute(drop_table(name))
        self.ingest(name, self.source.stream(sql))

    def drop_relation(self, name: str) -> None:
        from revetl.warehouse.dialect import drop_table

        self.execute(drop_table(name))
