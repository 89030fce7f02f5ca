"""Fill PostgreSQL's `landing.events` from landed Parquet, as the loader does (contract 1 of issue 15).

The dbt tests on PostgreSQL need landed events in the server warehouse; this is a small, plain
stand-in for `revetl load`: every Parquet file under the landing directory, its rows with the file's
path relative to that directory, the 0-based row in it and the Hive partition `received_date`,
appended with ADBC's bulk ingest, and the file recorded in `landing.loaded_files`.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import adbc_driver_postgresql.dbapi as adbc
import pyarrow as pa
import pyarrow.parquet as pq

LANDED = [
    ("message_id", pa.string()), ("type", pa.string()), ("event", pa.string()), ("anonymous_id", pa.string()),
    ("user_id", pa.string()), ("group_id", pa.string()), ("previous_id", pa.string()),
    ("timestamp", pa.timestamp("us", tz="UTC")), ("received_at", pa.timestamp("us", tz="UTC")),
    ("properties", pa.string()), ("traits", pa.string()), ("context", pa.string()),
]
SCHEMA = """
create schema if not exists landing;
create table if not exists landing.events (
    message_id text, type text, event text, anonymous_id text, user_id text, group_id text,
    previous_id text, "timestamp" timestamptz, received_at timestamptz, properties text, traits text,
    context text, received_date date, filename text, file_row_number bigint
);
create table if not exists landing.loaded_files (
    filename text primary key, bytes bigint, rows bigint, loaded_at timestamptz
)
"""
_PARTITION = re.compile(r"(?:^|/)received_date=(\d{4}-\d{2}-\d{2})(?:/|$)")


def create_landing(uri: str) -> None:
    """The landing tables, empty (what the loader creates before its first file)."""
    with adbc.connect(uri) as connection, connection.cursor() as cursor:
        for statement in SCHEMA.split(";"):
            cursor.execute(statement)
        connection.commit()


def _rows(path: Path, relative: str) -> pa.Table:
    """One file's rows in contract order: missing columns as nulls, where they were read from."""
    table = pq.read_table(path)
    columns = [
        table.column(name).cast(kind) if name in table.column_names else pa.nulls(table.num_rows, kind)
        for name, kind in LANDED
    ]
    found = _PARTITION.search(relative)
    day = dt.date.fromisoformat(found.group(1)) if found else None
    columns += [
        pa.array([day] * table.num_rows, pa.date32()),
        pa.array([relative] * table.num_rows, pa.string()),
        pa.array(range(table.num_rows), pa.int64()),
    ]
    names = [name for name, _ in LANDED] + ["received_date", "filename", "file_row_number"]
    return pa.Table.from_arrays(columns, names=names)


def load_landed(landing_dir: Path, uri: str) -> int:
    """Append every landed file not loaded yet to landing.events; returns the rows appended."""
    create_landing(uri)
    appended = 0
    with adbc.connect(uri) as connection, connection.cursor() as cursor:
        cursor.execute("select filename from landing.loaded_files")
        loaded = {name for (name,) in cursor.fetchall()}
        for path in sorted(landing_dir.glob("**/*.parquet")):
            relative = path.relative_to(landing_dir).as_posix()
            if relative in loaded:
                continue
            rows = _rows(path, relative)
            if rows.num_rows:
                cursor.adbc_ingest("events", rows, mode="append", db_schema_name="landing")
            cursor.execute(
                "insert into landing.loaded_files values ($1, $2, $3, now())",
                (relative, path.stat().st_size, rows.num_rows),
            )
            appended += rows.num_rows
        connection.commit()
    return appended
