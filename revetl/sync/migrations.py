"""The sync state's tables (schema `revetl_state`), created and upgraded by `migrate`, version by version.

    migrations    version, description, applied_at
    acknowledged  per sync, the last row the destination acknowledged for each key
    runs          one row per `revetl sync` run; failures: rows the destination rejected, per run
    versions      per sync, a counter bumped by every change of its acknowledged rows (state.py)
    schedule_runs one row per decision of `revetl schedule run`: a job (a sync, the build) run, or skipped,
                  for a window of its schedule (revetl/schedule/ledger.py)
    alert_states  per alert rule, subject and channel: what the channel was last told (revetl/alerts/store.py)

Append-only: a released version is never edited, a change is a new version. Each version applies in
one transaction. The statements are templates of revetl's own SQL (warehouse/dialect.py), rendered
for the connection's engine.
"""

from __future__ import annotations

import weakref

from revetl.errors import WarehouseError
from revetl.runtime import SYSTEM, Clock
from revetl.warehouse.base import Connection
from revetl.warehouse.dialect import Template

__all__ = ["LATEST", "MIGRATIONS", "SCHEMA", "migrate", "schema_version"]

SCHEMA = "revetl_state"

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "acknowledged rows, journal, runs and failures",
        [
            """create table revetl_state.acknowledged (
                sync varchar not null, key varchar not null, row_hash varchar not null,
                payload json, dest_ref varchar, run_id varchar, acknowledged_at timestamptz)""",
            "create sequence revetl_state.journal_seq",
            """create table revetl_state.journal (
                seq bigint not null, sync varchar not null, run_id varchar not null,
                op varchar not null, key varchar not null, row_hash varchar,
                payload json, dest_ref varchar, acknowledged_at timestamptz)""",
            """create table revetl_state.runs (
                run_id varchar primary key, sync varchar not null, audience varchar,
                started_at timestamptz not null, finished_at timestamptz, status varchar not null,
                members bigint, planned_adds bigint, planned_changes bigint, planned_removes bigint,
                acked_adds bigint default 0, acked_changes bigint default 0, acked_removes bigint default 0,
                failed bigint default 0, message varchar)""",
            """create table revetl_state.failures (
                run_id varchar not null, sync varchar not null, key varchar not null, op varchar not null,
                reason varchar not null, payload json, failed_at timestamptz not null)""",
        ],
    ),
    (
        2,
        "acknowledgements of a run in progress move to a journal file beside the warehouse",
        [
            # Fold what a run of an older revetl left in the table journal, then drop it.
            """create temp table revetl_fold_v2 as
                select * from (
                    select *, row_number() over (partition by sync, key order by seq desc) as newest
                    from revetl_state.journal
                ) latest where newest = 1""",  # the alias: PostgreSQL wants one (same statement on DuckDB)
            """delete from revetl_state.acknowledged a using revetl_fold_v2 f
                where a.sync = f.sync and a.key = f.key""",
            """insert into revetl_state.acknowledged
                select sync, key, row_hash, payload, dest_ref, run_id, acknowledged_at
                from revetl_fold_v2 where op <> 'remove'""",
            "drop table revetl_fold_v2",
            "drop table revetl_state.journal",
            "drop sequence revetl_state.journal_seq",
        ],
    ),
    (
        3,
        "a version per sync, bumped by every change of its acknowledged rows: a plan is applied only to the "
        "state it was made against",
        ["create table revetl_state.versions (sync varchar primary key, version bigint not null)"],
    ),
    (
        4,
        "the scheduler's decisions: per job (a sync, the build) and window of its schedule, run or skipped",
        [
            """create table revetl_state.schedule_runs (
                kind varchar not null, name varchar not null, window_at timestamptz not null,
                status varchar not null, started_at timestamptz not null, finished_at timestamptz,
                run_id varchar, pid bigint, host varchar, message varchar)""",
        ],
    ),
    (
        5,
        "alert states: per rule, subject and channel, whether the channel was last told of a failure or a recovery",
        ["""create table revetl_state.alert_states (
                rule_id varchar not null, subject varchar not null, channel varchar not null,
                failing boolean not null, since timestamptz not null, run_id varchar, message varchar,
                notified_at timestamptz not null, primary key (rule_id, subject, channel))"""],
    ),
]
LATEST = MIGRATIONS[-1][0]

_EXISTS = Template("""select count(*) from information_schema.tables
    where table_schema = 'revetl_state' and table_name = 'migrations'""")
_VERSION = Template("select coalesce(max(version), 0) from revetl_state.migrations")
_CREATE = (
    "create schema if not exists revetl_state",
    "create table if not exists revetl_state.migrations (version integer primary key, description varchar, "
    "applied_at timestamptz)",
)
_RECORD = Template("insert into revetl_state.migrations values ($version, $description, $at)")


# The version each open connection was seen at, once above 0: migrations only add, so it can only grow, and
# a sync asks several times (prepare, plan, apply) without going back to the catalog.
_SEEN: weakref.WeakKeyDictionary[Connection, int] = weakref.WeakKeyDictionary()


def schema_version(connection: Connection) -> int:
    """The migration version the warehouse is at; 0 when revetl never wrote state there."""
    if connection in _SEEN:
        return _SEEN[connection]
    return _read_version(connection)


def _read_version(connection: Connection) -> int:
    version = connection.scalar(_VERSION) if connection.scalar(_EXISTS) else 0
    if version:
        _SEEN[connection] = version
    return version


def migrate(connection: Connection, clock: Clock = SYSTEM) -> int:
    """Create or upgrade the state tables; each version applies in one transaction. Returns the version.
    Always reads the catalog: state upgraded by a newer revetl is refused, never written to."""
    version = _read_version(connection)
    if version > LATEST:
        raise WarehouseError(
            f"the warehouse's sync state is at version {version}, newer than this revetl knows ({LATEST}); upgrade revetl"
        )
    if version == 0:
        for sql in _CREATE:
            connection.execute(Template(sql))
    for number, description, statements in MIGRATIONS:
        if number <= version:
            continue
        with connection.transaction():
            for sql in statements:
                connection.execute(Template(sql))
            connection.execute(_RECORD, {"version": number, "description": description, "at": clock.now()})
    if version < LATEST:  # read back what was recorded (and so the same statements run every time)
        version = _read_version(connection)
    _SEEN[connection] = version
    return version
