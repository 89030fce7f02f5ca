"""`revetl routes load`: the routes' dead letters and counters into the warehouse, once each.

    revetl_state.route_dead_letters   route, message_id, type, event, reason, dead_at, event_json (the event
                                      as the route read it): what `revetl routes replay --dead-letters` sends
    revetl_state.route_stats          one row per route and snapshot (the router appends one a minute and one
                                      when it stops): at, state, delivered, retried, filtered, unsupported,
                                      dead_lettered, batches, backlog_bytes, lag_p50_ms, lag_p99_ms, since (when
                                      the router run began: its counters count from there, `revetl report`
                                      subtracts within a run)
    revetl_state.route_loaded         the ledger: each file under `<log dir>/routes/` and the bytes of it loaded

The router never opens the warehouse (an embedded DuckDB admits one writer, and a destination must never wait
for a build): it keeps dead letters and snapshots as files, and this command, from cron or the scheduler,
copies what is new, in one transaction with the ledger, so a kill at any moment neither loses nor doubles a row.
The tables are created here when missing (`create ... if not exists`), outside the sync state's versioned
migrations.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from revetl.collect.settings import collector_dir
from revetl.config import Project
from revetl.routes.store import routes_state_dir
from revetl.warehouse.dialect import Template

__all__ = ["LoadReport", "load_route_files"]

_CREATE = (
    "create schema if not exists revetl_state",
    "create table if not exists revetl_state.route_loaded (path varchar primary key, loaded_bytes bigint)",
    "create table if not exists revetl_state.route_dead_letters (route varchar, message_id varchar, type varchar, "
    "event varchar, reason varchar, dead_at timestamptz, event_json varchar)",
    "create table if not exists revetl_state.route_stats (route varchar, at timestamptz, state varchar, "
    "delivered bigint, retried bigint, filtered bigint, unsupported bigint, dead_lettered bigint, batches bigint, "
    "backlog_bytes bigint, lag_p50_ms double, lag_p99_ms double, since timestamptz)",
    # tables made before `since` was kept: the column goes last, where `create` puts it
    "alter table revetl_state.route_stats add column if not exists since timestamptz",
)
STATS = ("delivered", "retried", "filtered", "unsupported", "dead_lettered", "batches", "backlog_bytes")
_LOADED = Template("select path, loaded_bytes from revetl_state.route_loaded")
_FORGET = Template("delete from revetl_state.route_loaded where path = $path")
_NOTE = Template("insert into revetl_state.route_loaded values ($path, $size)")


@dataclass
class LoadReport:
    dead_letters: int = 0
    snapshots: int = 0
    files: int = 0


def _time(text: Any) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _new_lines(path: Path, loaded: int) -> tuple[list[dict[str, Any]], int]:
    """The whole lines after byte `loaded` (a line being written is left for next time), and the new size."""
    with open(path, "rb") as handle:
        handle.seek(loaded)
        data = handle.read()
    whole = data[: data.rfind(b"\n") + 1]
    return [orjson.loads(line) for line in whole.splitlines() if line.strip()], loaded + len(whole)


def load_route_files(project: Project) -> LoadReport:
    """Copy the dead letters and snapshots not loaded yet into the warehouse; one transaction."""
    import pyarrow as pa

    from revetl.warehouse.connection import connect

    root = routes_state_dir(collector_dir(project))
    files = sorted([*root.glob("*/dead/*.jsonl"), *root.glob("*/stats.jsonl")])
    with connect(project) as connection:
        for sql in _CREATE:
            connection.execute(Template(sql))
        loaded = dict(connection.fetchall(_LOADED))
        letters: list[dict[str, Any]] = []
        snapshots: list[dict[str, Any]] = []
        sizes: dict[str, int] = {}
        for path in files:
            key = str(path.relative_to(root))
            lines, size = _new_lines(path, int(loaded.get(key, 0)))
            if not lines:
                continue
            sizes[key] = size
            if path.name == "stats.jsonl":
                snapshots += [{"route": path.parent.name, **line} for line in lines]
            else:
                letters += lines
        with connection.transaction():
            if letters:
                rows = {"route": [x["route"] for x in letters], "message_id": [x["row"].get("message_id") for x in letters],
                        "type": [x["row"].get("type") for x in letters], "event": [x["row"].get("event") for x in letters],
                        "reason": [x["reason"] for x in letters], "dead_at": [_time(x["dead_at"]) for x in letters],
                        "event_json": [orjson.dumps(x["row"], default=str).decode() for x in letters]}
                with connection.scratch("revetl_dead_letters", pa.table(rows)) as name:
                    connection.execute(Template(f"insert into revetl_state.route_dead_letters select * from {name}"))
            if snapshots:
                rows = {"route": [s["route"] for s in snapshots], "at": [_time(s.get("updated_at")) for s in snapshots],
                        "state": [s.get("state") for s in snapshots],
                        **{field: pa.array([s.get(field) for s in snapshots], pa.int64()) for field in STATS},
                        "lag_p50_ms": pa.array([s.get("lag_p50_ms") for s in snapshots], pa.float64()),
                        "lag_p99_ms": pa.array([s.get("lag_p99_ms") for s in snapshots], pa.float64()),
                        "since": [_time(s.get("since")) for s in snapshots]}
                with connection.scratch("revetl_route_stats", pa.table(rows)) as name:
                    connection.execute(Template(f"insert into revetl_state.route_stats select * from {name}"))
            for key, size in sizes.items():
                connection.execute(_FORGET, {"path": key})
                connection.execute(_NOTE, {"path": key, "size": size})
    return LoadReport(len(letters), len(snapshots), len(sizes))
