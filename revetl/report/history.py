"""What the report shows, read once: sync runs and rejected rows from the warehouse's sync state, the last
dbt build's timings from its run_results.json, the collector's volume from the files it landed, and the
routes' counters from `revetl_state.route_stats` (as `revetl routes load` copies them there).

Everything is read, nothing written: the warehouse through a read-only connection, in revetl's own SQL
templates (they render for DuckDB and PostgreSQL alike). Runs are read over a window (`days`, counted back
from now); rejected rows are counted in the warehouse, by reason and sync, so a table of millions of
failures costs one aggregate. What cannot be read (no warehouse yet, a run_results.json that is not JSON)
becomes a sentence the page shows in place of its chart, never an error that stops the report.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from revetl.config import Project, read_yaml
from revetl.errors import RevetlError, scrub_urls
from revetl.runtime import SYSTEM, Clock
from revetl.warehouse.dialect import Template

__all__ = ["BUCKETS", "Build", "Collector", "History", "MAX_MARKS", "Node", "RouteBucket", "Run", "bucket_width",
           "read_history", "read_routes"]

LATEST_ROWS = 50  # rows of the "latest runs" and "latest failures" tables
FOOTERS = 500  # collector files whose row counts are read; past that, the others' are estimated
MAX_MARKS = 120  # marks of one series; past that, time buckets (charts.py)
BUCKETS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)  # seconds


def bucket_width(start: float, end: float) -> int:
    """The narrowest round width (seconds) that cuts `start`..`end` into at most `MAX_MARKS` buckets."""
    return next((size for size in BUCKETS if (end - start) / size <= MAX_MARKS), BUCKETS[-1])


@dataclass(frozen=True)
class Run:
    """One sync run, as the charts need it: times in epoch seconds, counts acknowledged by the destination."""

    run_id: str
    sync: str
    audience: str
    started: float
    seconds: float | None
    status: str
    members: int | None
    adds: int
    changes: int
    removes: int
    failed: int
    message: str
    sent: int = field(init=False)  # adds + changes + removes, summed once (charts read it often)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sent", self.adds + self.changes + self.removes)


@dataclass(frozen=True)
class Failure:
    at: dt.datetime
    sync: str
    run_id: str
    key: str
    op: str
    reason: str


@dataclass(frozen=True)
class Node:
    """One node of the last dbt build: `model`, `test`, `seed`...; seconds as dbt timed them."""

    name: str
    kind: str
    status: str
    seconds: float


@dataclass(frozen=True)
class Build:
    """The last dbt build (run_results.json), or why it could not be read (`problem`)."""

    path: Path
    generated_at: str = ""
    elapsed: float = 0.0
    nodes: tuple[Node, ...] = ()
    problem: str = ""


@dataclass(frozen=True)
class Collector:
    """Events the collector landed, per file (segment start in epoch seconds, rows), and segments still
    waiting in its write-ahead log."""

    landing_dir: Path
    files: tuple[tuple[float, int], ...] = ()
    waiting_segments: int = 0
    estimated: bool = False  # rows of most files estimated from their size (see `read_collector`)


@dataclass(frozen=True)
class RouteBucket:
    """One route's counters over one time bucket (`start`, epoch seconds, `width` seconds): events delivered and
    dead-lettered and requests retried in it, the mean of its lag p50 readings and the worst p99 (ms), the
    largest backlog (bytes of log behind the route), from `readings` snapshots."""

    route: str
    start: float
    width: float
    readings: int
    delivered: int
    retried: int
    dead_lettered: int
    lag_p50_ms: float | None
    lag_p99_ms: float | None
    backlog_bytes: int


@dataclass(frozen=True)
class History:
    """Everything one report shows."""

    generated: dt.datetime
    since: dt.datetime
    target: str
    runs: tuple[Run, ...] = ()
    latest_failures: tuple[Failure, ...] = ()
    rejected: tuple[tuple[str, str, int], ...] = ()  # (reason, sync, rows)
    destinations: dict[str, str] = field(default_factory=dict)  # sync -> destination type
    build: Build | None = None
    collector: Collector | None = None
    problem: str = ""  # why the sync state could not be read, if it could not
    # Tracking-plan violations per day received (day start, epoch seconds), kind and landed or blocked, from
    # the `violations` model of the last build; None when the warehouse has no such model.
    violations: tuple[tuple[float, str, bool, int], ...] | None = None
    # The routes' counters by time bucket; None when the warehouse has none (no route ever loaded).
    routes: tuple[RouteBucket, ...] | None = None

    @property
    def empty(self) -> bool:
        return not self.runs


_HAS_STATE = Template("""select count(*) from information_schema.tables
    where table_schema = 'revetl_state' and table_name = 'runs'""")
_RUNS = Template("""select run_id, sync, audience, started_at, finished_at, status, members,
        coalesce(acked_adds, 0), coalesce(acked_changes, 0), coalesce(acked_removes, 0), coalesce(failed, 0),
        message
    from revetl_state.runs where started_at >= $since order by started_at, run_id""")
_REJECTED = Template("""select reason, sync, count(*) as n from revetl_state.failures where failed_at >= $since
    group by reason, sync order by n desc limit 2000""")
_HAS_VIOLATIONS = Template("select count(*) from information_schema.tables where table_name = 'violations'")
_VIOLATIONS = Template("""select cast(received_at as date) as day, kind, blocked, count(*) from violations
    where received_at >= $since group by 1, 2, 3 order by 1, 2, 3""")
_LATEST_FAILURES = Template("""select failed_at, sync, run_id, key, op, reason from revetl_state.failures
    order by failed_at desc, run_id limit $limit""")


def read_history(project: Project, days: float = 90.0, clock: Clock = SYSTEM) -> History:
    """The report's data for the last `days` days of the project's current target."""
    from revetl.warehouse.connection import target_name

    now = clock.now()
    since = now - dt.timedelta(days=days)
    runs, failures, rejected, problem = _read_state(project, since)
    syncs = sorted({run.sync for run in runs} | {sync for _, sync, _ in rejected})
    return History(
        generated=now, since=since, target=target_name(project), runs=runs, latest_failures=failures,
        rejected=rejected, destinations={sync: _destination(project, sync) for sync in syncs},
        build=read_build(project), collector=read_collector(project, since), problem=problem,
        violations=read_violations(project, since), routes=read_routes(project, since),
    )


def read_violations(project: Project, since: dt.datetime) -> tuple[tuple[float, str, bool, int], ...] | None:
    """Violations per day, kind and blocked, from the warehouse's `violations` model (None without one)."""
    from revetl.warehouse.connection import connect

    naive = since.astimezone(dt.timezone.utc).replace(tzinfo=None)  # the model's times are UTC without a zone
    try:
        with connect(project, read_only=True) as connection:
            if not connection.scalar(_HAS_VIOLATIONS):
                return None
            rows = connection.fetchall(_VIOLATIONS, {"since": naive})
    except RevetlError:
        return None  # the sync state's reading says why the warehouse cannot be read
    epoch = dt.date(1970, 1, 1)
    return tuple(((day - epoch).days * 86400.0, str(kind), bool(blocked), int(n)) for day, kind, blocked, n in rows)


_HAS_ROUTES = Template("""select count(*) from information_schema.tables
    where table_schema = 'revetl_state' and table_name = 'route_stats'""")
_ROUTE_SPAN = Template("""select count(*), min(case when at >= $since then at end),
        max(case when at >= $since then at end)
    from revetl_state.route_stats""")
# A snapshot's counters count from its router run's start (`since`): what a bucket saw is each reading less the one
# before it in the same run (a reading below the one before: a run whose start was not kept, counted from zero).
_STEP = "case when {c} >= coalesce(before_{c}, 0) then {c} - coalesce(before_{c}, 0) else {c} end"
_BEFORE = "lag({c}) over (partition by route, since order by at) as before_{c}"
_COUNTED = ("delivered", "retried", "dead_lettered")
_ROUTES = Template(f"""select route, cast(floor(extract(epoch from at) / $width) as bigint) as bucket, count(*),
        {", ".join(f"sum({_STEP.format(c=c)})" for c in _COUNTED)}, avg(lag_p50_ms), max(lag_p99_ms),
        max(backlog_bytes)
    from (select route, at, lag_p50_ms, lag_p99_ms, backlog_bytes, {", ".join(_COUNTED)},
                 {", ".join(_BEFORE.format(c=c) for c in _COUNTED)}
          from revetl_state.route_stats) as readings
    where at >= $since group by 1, 2 order by 1, 2""")


def read_routes(project: Project, since: dt.datetime) -> tuple[RouteBucket, ...] | None:
    """The routes' counters since `since` in time buckets (`bucket_width` of their span); None when the
    warehouse holds no route counters at all, () when none in the window."""
    from revetl.warehouse.connection import connect

    try:
        with connect(project, read_only=True) as connection:
            if not connection.scalar(_HAS_ROUTES):
                return None
            [(count, first, last)] = connection.fetchall(_ROUTE_SPAN, {"since": since})
            if not count:
                return None
            if first is None:
                return ()
            width = bucket_width(_utc(first).timestamp(), _utc(last).timestamp())
            rows = connection.fetchall(_ROUTES, {"since": since, "width": width})
    except RevetlError:
        return None  # the sync state's reading says why the warehouse cannot be read
    return tuple(RouteBucket(str(route), float(bucket) * width, float(width), int(readings), int(delivered or 0),
                             int(retried or 0), int(dead or 0), None if p50 is None else float(p50),
                             None if p99 is None else float(p99), int(backlog or 0))
                 for route, bucket, readings, delivered, retried, dead, p50, p99, backlog in rows)


def _read_state(project: Project, since: dt.datetime) -> tuple[tuple[Run, ...], tuple[Failure, ...],
                                                                tuple[tuple[str, str, int], ...], str]:
    from revetl.warehouse.connection import connect

    try:
        with connect(project, read_only=True) as connection:
            if not connection.scalar(_HAS_STATE):
                return (), (), (), ""
            rows = connection.fetchall(_RUNS, {"since": since})
            rejected = tuple((str(reason), str(sync), int(n))
                             for reason, sync, n in connection.fetchall(_REJECTED, {"since": since}))
            failures = tuple(Failure(_utc(at), sync, run_id, str(key), op, str(reason)) for at, sync, run_id, key, op, reason
                             in connection.fetchall(_LATEST_FAILURES, {"limit": LATEST_ROWS}))
    except RevetlError as exc:  # no warehouse yet, a server that is down: the page says so
        return (), (), (), scrub_urls(str(exc))
    return tuple(_run(row) for row in rows), failures, rejected, ""


def _run(row: tuple[Any, ...]) -> Run:
    run_id, sync, audience, started, finished, status, members, adds, changes, removes, failed, message = row
    started, finished = _utc(started), _utc(finished)
    seconds = (finished - started).total_seconds() if finished is not None else None
    return Run(str(run_id), str(sync), str(audience or sync), started.timestamp(), seconds, str(status),
               None if members is None else int(members), int(adds), int(changes), int(removes), int(failed),
               scrub_urls(message or ""))


def _utc(moment: dt.datetime | None) -> dt.datetime | None:
    """Timestamps are stored as UTC; a driver that hands them back without a zone means UTC too."""
    return moment.replace(tzinfo=dt.timezone.utc) if moment is not None and moment.tzinfo is None else moment


def _destination(project: Project, sync: str) -> str:
    """The `destination.type` of syncs/SYNC.yml, read without expanding its `${VAR}`s (no secret is read)."""
    path = project.syncs_dir / f"{sync}.yml"
    try:
        raw = read_yaml(path) if path.is_file() else None
    except RevetlError:
        return "unknown"
    destination = raw.get("destination") if isinstance(raw, dict) else None
    kind = destination.get("type") if isinstance(destination, dict) else None
    return str(kind) if kind else "unknown"


def read_build(project: Project) -> Build | None:
    """The last build's nodes from dbt's run_results.json in the target's dbt directory; None without one."""
    from revetl.warehouse.connection import dbt_target_path

    path = dbt_target_path(project) / "run_results.json"
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        nodes = tuple(
            Node(name=str(result["unique_id"]).split(".")[-1], kind=str(result["unique_id"]).split(".")[0],
                 status=str(result.get("status") or ""), seconds=float(result.get("execution_time") or 0.0))
            for result in document["results"]
        )
        return Build(path, str(document.get("metadata", {}).get("generated_at", "")),
                     float(document.get("elapsed_time") or 0.0), nodes)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        return Build(path, problem=f"{path} could not be read as dbt's run results ({reason})")


def read_collector(project: Project, since: dt.datetime) -> Collector | None:
    """Files `revetl collect` landed since `since` and the segments its write-ahead log still holds; None when
    it never landed anything there.

    A collector file is `received_date=D/collect-<segment start, ns>-<random>-....parquet` (collect/roller.py):
    the segment's start says when its events arrived, to within one roll (`flush_seconds`). Rows are read
    from each file's Parquet footer, up to `FOOTERS` files; past that (a collector rolling every 10 s lands
    8,640 files a day), the rows of `FOOTERS` files spread over the window give rows per byte, and every
    file's rows are estimated from its size (`Collector.estimated`). The collector's own package is not
    imported (it loads its server): its two names are spelled here."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    first_day = f"received_date={since.date().isoformat()}"
    found = []  # (segment start, path, bytes)
    for partition in sorted(project.landing_dir.glob("received_date=*")):
        if partition.name < first_day:
            continue
        for path in partition.glob("collect-*.parquet"):
            try:
                found.append((int(path.name.split("-")[1]) / 1e9, path, path.stat().st_size))
            except (ValueError, IndexError, OSError):
                continue  # not a collector file after all
    found.sort()
    sample = found if len(found) <= FOOTERS else found[::math.ceil(len(found) / FOOTERS)]
    rows = {}
    for _, path, _ in sample:
        try:
            rows[path] = pq.read_metadata(path).num_rows
        except (OSError, pa.ArrowException):
            rows[path] = 0  # unreadable: `revetl build` names those
    estimated = len(sample) < len(found)
    per_byte = sum(rows.values()) / max(sum(size for _, path, size in sample), 1)
    files = tuple((started, rows[path] if path in rows else round(size * per_byte)) for started, path, size in found)
    log_dir = Path(os.environ.get("REVETL_COLLECTOR_DIR") or project.settings.collect.log_dir)
    log_dir = log_dir if log_dir.is_absolute() else project.root / log_dir
    waiting = len([path for path in log_dir.glob("*.log") if not path.name.startswith(".")]) if log_dir.is_dir() else 0
    if not files and not waiting:
        return None
    return Collector(project.landing_dir, files, waiting, estimated)
