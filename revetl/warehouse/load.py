"""Landed Parquet into a server warehouse, exactly once per file (`revetl load`; `revetl build` runs it first).

DuckDB reads the landing directory in place; PostgreSQL cannot, so each landed file not loaded yet is copied
into `landing.events` (notes 15, contract 1): the landing columns, then `received_date` (the Hive partition
of the file's path, null when there is none), `filename` (the path relative to the landing directory) and
`file_row_number` (the row's place in the file, from 0), as DuckDB's `read_parquet` shows them.

Exactly once. A file is loaded in one transaction that first claims it in the ledger `landing.loaded_files`
(`insert ... on conflict do nothing`), then streams its rows in with ADBC's bulk ingest (COPY, binary),
then commits: its rows and its ledger row are committed together or not at all. A process killed at any
moment leaves the file either loaded whole and recorded, or not at all (the server rolls the transaction
back when the session drops), and the next run loads exactly what is missing. Two loaders at once (two
hosts' cron) never load a file twice: the second one's claim waits for the first's transaction, then finds
the file taken.

The quarantine (events a tracking plan blocked, revetl/governance/quarantine.py) is mirrored whole into
`quarantine.events` by every load, in one transaction: `revetl violations replay` rewrites and removes its
files, so it is not loaded once per file but replaced, and it is small (what a plan blocked and nobody
replayed yet). The `quarantined_events` model reads it when the loading host has quarantine files.

Two files load at once by default, each on a session of its own (`REVETL_LOAD_SESSIONS`).

Files as DuckDB reads them (`union_by_name`): a column a file lacks is null, a column the contract does not
know is ignored, types are cast to the contract's (a timestamp without a time zone is UTC). Memory: one
Arrow batch of a file at a time, however large the file.

A file that cannot be read as Parquet (or whose column cannot be cast) is skipped and reported in one
sentence naming it; the other files still load, and the run fails (exit 1, and `revetl build` stops before
dbt, as it does on DuckDB for the same file) until the file is moved out of the landing directory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from revetl.config import Project
from revetl.errors import ConfigError, QueryError
from revetl.landing.events import LANDING_SCHEMA
from revetl.warehouse.base import Connection
from revetl.warehouse.postgres import PostgresConnection

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["EVENTS_SCHEMA", "LoadReport", "ensure_tables", "landed_files", "load_landed", "load_sessions",
           "print_load"]

SCHEMA = "landing"
BATCH_ROWS = 64_000  # rows per Arrow batch read from a file and sent to the server

EVENTS_SCHEMA = pa.schema([*LANDING_SCHEMA, ("received_date", pa.date32()), ("filename", pa.string()),
                           ("file_row_number", pa.int64())])
_DDL = (
    f"create schema if not exists {SCHEMA}",
    f"""create table if not exists {SCHEMA}.events (
        message_id text, type text, event text, anonymous_id text, user_id text, group_id text,
        previous_id text, "timestamp" timestamptz, received_at timestamptz, properties text, traits text,
        context text, received_date date, filename text, file_row_number bigint)""",
    f"""create table if not exists {SCHEMA}.loaded_files (
        filename text primary key, bytes bigint, rows bigint, loaded_at timestamptz)""",
    "create schema if not exists quarantine",
    f"create table if not exists quarantine.events (like {SCHEMA}.events)",
)
_CLAIM = (f"insert into {SCHEMA}.loaded_files (filename, bytes, rows, loaded_at) values ($1, $2, $3, $4) "
          "on conflict (filename) do nothing returning filename")
_PARTITION = re.compile(r"(?:^|/)received_date=(\d{4}-\d{2}-\d{2})(?:/|$)")


@dataclass
class LoadReport:
    """What one load did."""

    files: int = 0  # loaded by this run
    events: int = 0
    already: int = 0  # in the ledger before (or loaded meanwhile by another loader)
    quarantined: int = 0  # rows of the quarantine mirrored
    failures: list[tuple[Path, str]] = field(default_factory=list)  # (file, why) for each one not loaded
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def add(self, other: LoadReport) -> None:
        self.files += other.files
        self.events += other.events
        self.already += other.already
        self.failures += other.failures

    def problems(self, landing_dir: Path, then: str = "load") -> list[str]:
        """One sentence per file that could not be loaded; `then` is the command to run again."""
        return [f"the landing file {path} cannot be loaded ({reason}); move it out of {landing_dir} and {then} "
                "again (the other files were loaded)" for path, reason in self.failures]

    def summary(self) -> str:
        quarantine = f"; {self.quarantined:,} quarantined events mirrored" if self.quarantined else ""
        return (f"{self.files:,} files, {self.events:,} events loaded ({self.already:,} files already loaded)"
                f"{quarantine}")


def ensure_tables(connection: PostgresConnection) -> None:
    """Create the `landing` schema, `landing.events` and the ledger when missing (one loader at a time)."""
    with connection.transaction():
        connection.scalar("select pg_advisory_xact_lock(hashtext('revetl landing tables'))")
        for statement in _DDL:
            connection.execute(statement)


def landed_files(landing_dir: Path) -> list[Path]:
    """Every landed Parquet file under `landing_dir`, in path order."""
    return sorted(landing_dir.glob("**/*.parquet")) if landing_dir.is_dir() else []


def load_sessions() -> int:
    """How many files load at once, each on a session of its own: $REVETL_LOAD_SESSIONS, default 2.

    Measured (bench/load_bench.py, 1M events, server on the same 2 cores): one session 105k events/s, two
    162k, three 177k. The server parses and writes each COPY on one core; two keep both busy."""
    raw = os.environ.get("REVETL_LOAD_SESSIONS", "2")
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"REVETL_LOAD_SESSIONS must be a whole number from 1, not {raw!r}")
    return int(raw)


def load_landed(project: Project, console: Console | None = None, connection: PostgresConnection | None = None,
                sessions: int | None = None) -> LoadReport:
    """Load every landed file the ledger does not hold yet into `landing.events` (see the module docstring),
    `sessions` files at a time (default `load_sessions()`)."""
    from revetl.warehouse.connection import connect

    started = time.monotonic()
    own = connection is None
    connection = connection or connect(project)
    assert isinstance(connection, PostgresConnection), "the loader is for server warehouses"
    report = LoadReport()
    try:
        ensure_tables(connection)
        loaded = {row[0] for row in connection.fetchall(f"select filename from {SCHEMA}.loaded_files")}
        files = [(path, path.relative_to(project.landing_dir).as_posix()) for path in landed_files(project.landing_dir)]
        waiting = [(path, name) for path, name in files if name not in loaded]
        report.already = len(files) - len(waiting)
        with _progress(console, waiting) as advance:
            _load_all(lambda: connect(project), connection, waiting, report, advance,
                      min(sessions or load_sessions(), len(waiting)))
        _mirror_quarantine(connection, project, report)
    finally:
        if own:
            connection.close()
    report.seconds = time.monotonic() - started
    return report


def _load_all(open_session: Callable[[], Connection], connection: PostgresConnection, files: list[tuple[Path, str]],
              report: LoadReport, advance: Callable[[Path], None], sessions: int) -> None:
    """Load `files` on `connection` and `sessions - 1` more sessions, each taking the next file when done
    with one. The first error that is not a file's own (a lost server) stops them all and is raised."""
    pending = iter(files)
    guard = threading.Lock()
    errors: list[BaseException] = []

    def work(session: Connection) -> None:
        assert isinstance(session, PostgresConnection), "the loader is for server warehouses"
        while not errors:
            with guard:
                item = next(pending, None)
            if item is None:
                return
            done = LoadReport()
            _load_one(session, *item, done)
            with guard:
                report.add(done)
                advance(item[0])

    def guarded(task: Callable[[], None]) -> None:
        try:
            task()
        except BaseException as exc:  # raised below, in the caller's thread
            errors.append(exc)

    def own_session() -> None:
        with open_session() as session:
            work(session)

    helpers = [threading.Thread(target=guarded, args=(own_session,), daemon=True) for _ in range(sessions - 1)]
    for helper in helpers:
        helper.start()
    guarded(lambda: work(connection))
    for helper in helpers:
        helper.join()
    if errors:
        raise errors[0]


def _load_one(connection: PostgresConnection, path: Path, name: str, report: LoadReport) -> None:
    try:
        parquet = pq.ParquetFile(path)
        rows = parquet.metadata.num_rows
        size = path.stat().st_size
    except (OSError, pa.ArrowException) as exc:
        report.failures.append((path, _reason(exc)))
        return
    unreadable: list[BaseException] = []  # what stopped reading the file, as the driver cannot pass it on whole
    try:
        with connection.transaction():
            if not connection.fetchall(_CLAIM, [name, size, rows, dt.datetime.now(dt.timezone.utc)]):
                report.already += 1  # another loader has just loaded it
                return
            connection.append(f"{SCHEMA}.events", _batches(parquet, name, unreadable))
        report.files += 1
        report.events += rows
    except QueryError:
        if not unreadable:
            raise
        report.failures.append((path, _reason(unreadable[0])))
    finally:
        parquet.close()


def _mirror_quarantine(connection: PostgresConnection, project: Project, report: LoadReport) -> None:
    """Make `quarantine.events` hold exactly the quarantine's files' rows (one loader at a time). A file that
    cannot be read is reported as a landing file is, and the table keeps what it had."""
    from revetl.governance.quarantine import quarantine_dir, quarantine_files

    directory = quarantine_dir(project.landing_dir)
    unreadable: list[BaseException] = []
    current = directory
    try:
        with connection.transaction():
            connection.scalar("select pg_advisory_xact_lock(hashtext('revetl quarantine'))")
            connection.execute("delete from quarantine.events")
            for path in quarantine_files(project.landing_dir):
                current = path
                with contextlib.closing(pq.ParquetFile(path)) as parquet:
                    connection.append("quarantine.events",
                                      _batches(parquet, path.relative_to(directory).as_posix(), unreadable))
                    report.quarantined += parquet.metadata.num_rows
    except (OSError, pa.ArrowException, QueryError) as exc:
        if isinstance(exc, QueryError) and not unreadable:
            raise
        report.quarantined = 0
        report.failures.append((current, _reason(unreadable[0] if unreadable else exc)))


def _reason(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _batches(parquet: pq.ParquetFile, name: str, unreadable: list[BaseException]) -> pa.RecordBatchReader:
    """The file's rows in the `landing.events` layout, one batch at a time; an error reading it is also put
    in `unreadable`."""
    present = set(parquet.schema_arrow.names)
    known = [column for column in LANDING_SCHEMA.names if column in present]
    partition = _PARTITION.findall(name)
    received = dt.date.fromisoformat(partition[-1]) if partition else None

    def batches() -> Iterator[pa.RecordBatch]:
        first = 0
        try:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=known, use_threads=False):
                count = batch.num_rows
                columns = [
                    _cast(batch.column(known.index(column.name)), column) if column.name in known
                    else pa.nulls(count, column.type)
                    for column in LANDING_SCHEMA
                ]
                columns += [pa.array([received] * count, pa.date32()) if received else pa.nulls(count, pa.date32()),
                            pa.array([name] * count, pa.string()),
                            pa.array(range(first, first + count), pa.int64())]
                first += count
                yield pa.RecordBatch.from_arrays(columns, schema=EVENTS_SCHEMA)
        except (OSError, pa.ArrowException) as exc:
            unreadable.append(exc)
            raise

    return pa.RecordBatchReader.from_batches(EVENTS_SCHEMA, batches())


def _cast(values: pa.Array, column: pa.Field) -> pa.Array:
    if pa.types.is_string(column.type):
        return _without_nul(values if values.type == column.type else _cast_to(values, column))
    if values.type == column.type:
        return values
    return _cast_to(values, column)


def _without_nul(values: pa.Array) -> pa.Array:
    """PostgreSQL text cannot hold U+0000 (JSON lets an app send "\\u0000"): each becomes U+FFFD, as a lone
    surrogate does at landing (landing/events.py) and a \\u0000 escape inside JSON does in the models."""
    import pyarrow.compute as pc

    if not pc.any(pc.match_substring(values, "\x00")).as_py():
        return values
    return pc.replace_substring(values, "\x00", "\ufffd")


def _cast_to(values: pa.Array, column: pa.Field) -> pa.Array:
    if pa.types.is_timestamp(values.type) and values.type.tz is None:  # a naive time is UTC, as in DuckDB
        values = values.cast(pa.timestamp(values.type.unit, "UTC"))
    try:
        return values.cast(column.type)
    except pa.ArrowException as exc:
        raise pa.ArrowInvalid(f"column {column.name} of type {values.type} cannot be read as {column.type}: "
                              f"{exc}") from exc


@contextlib.contextmanager
def _progress(console: Console | None, files: list[tuple[Path, str]]) -> Iterator:
    """advance(path) per file: a progress bar by bytes on a terminal when there is much to load."""
    total = sum(path.stat().st_size for path, _ in files) if console is not None else 0
    if console is None or not console.is_terminal or total < 16 << 20:  # about 400,000 events: a few seconds
        yield lambda path: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("loading events"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("load", total=total)
        yield lambda path: progress.advance(task, os.path.getsize(path))


def print_load(report: LoadReport, console: Console) -> None:
    """The summary line (the files that could not be loaded are the caller's errors)."""
    console.print(f"{report.summary()} in {report.seconds:.1f} s", highlight=False)
