"""What the scheduler decided: `revetl_state.schedule_runs` in the warehouse, and a cache of it.

    schedule_runs  kind (sync | build), name, window_at (the time of the schedule this decision answers, UTC),
                   status (running | succeeded | failed | skipped), started_at, finished_at, run_id (the
                   sync's run in revetl_state.runs), pid and host of the scheduler that ran it, message

A window is answered once: whatever the status, a job is due again only at a later window of its schedule.
The warehouse is the truth (on PostgreSQL it is shared by every host running the crontab). The cache,
`target/schedule/windows-<hash naming the warehouse>.json`, holds each job's latest answered window as
last read from or written to the warehouse. Decisions are only ever added, so it is behind the truth, never
ahead, and a tick that finds every job's current window in it has nothing to do and need not open the
warehouse (the cron line that fires every minute). Only replacing the warehouse by an empty one at the same
place puts it ahead: jobs then wait for their next window (delete `target/schedule/` to run them now).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from revetl.config import Project
    from revetl.warehouse.base import Connection

__all__ = ["Record", "cache_path", "finish", "insert", "latest_records", "read_cache", "sync_run", "write_cache"]

STATUSES = ("running", "succeeded", "failed", "skipped")


@dataclass(frozen=True)
class Record:
    kind: str
    name: str
    window_at: dt.datetime
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    run_id: str | None = None
    pid: int | None = None
    host: str | None = None
    message: str | None = None

    @property
    def key(self) -> str:
        return "build" if self.kind == "build" else f"sync:{self.name}"


_COLUMNS = "kind, name, window_at, status, started_at, finished_at, run_id, pid, host, message"
_TABLE_EXISTS = """select count(*) from information_schema.tables
    where table_schema = 'revetl_state' and table_name = 'schedule_runs'"""
_LATEST = f"""select {_COLUMNS} from (
        select *, row_number() over (partition by kind, name order by window_at desc, started_at desc) as newest
        from revetl_state.schedule_runs
    ) ranked where newest = 1"""
_INSERT = f"""insert into revetl_state.schedule_runs ({_COLUMNS})
    values ($kind, $name, $window_at, $status, $started_at, $finished_at, $run_id, $pid, $host, $message)"""
_FINISH = """update revetl_state.schedule_runs
    set status = $status, finished_at = $finished_at, run_id = $run_id, message = $message
    where kind = $kind and name = $name and window_at = $window_at and status = 'running'"""
_SYNC_RUN = """select run_id, status, message from revetl_state.runs
    where sync = $sync and started_at >= $since order by started_at desc limit 1"""


def _utc(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)
    return value


def latest_records(connection: Connection) -> dict[str, Record]:
    """Each job's latest decision (its latest window), by job key; empty before the first."""
    from revetl.warehouse.dialect import Template

    if not connection.scalar(Template(_TABLE_EXISTS)):
        return {}
    records = [Record(*map(_utc, row)) for row in connection.fetchall(Template(_LATEST))]
    return {record.key: record for record in records}


def insert(connection: Connection, records: list[Record]) -> None:
    """Record decisions, in one transaction."""
    from revetl.warehouse.dialect import Template

    with connection.transaction():
        for record in records:
            connection.execute(Template(_INSERT), {
                "kind": record.kind, "name": record.name, "window_at": record.window_at, "status": record.status,
                "started_at": record.started_at, "finished_at": record.finished_at, "run_id": record.run_id,
                "pid": record.pid, "host": record.host, "message": record.message,
            })


def finish(connection: Connection, record: Record, status: str, finished_at: dt.datetime,
           run_id: str | None, message: str | None) -> None:
    """Close the `running` decision `record` with how its run ended."""
    from revetl.warehouse.dialect import Template

    with connection.transaction():
        connection.execute(Template(_FINISH), {
            "status": status, "finished_at": finished_at, "run_id": run_id, "message": message,
            "kind": record.kind, "name": record.name, "window_at": record.window_at,
        })


def sync_run(connection: Connection, sync: str, since: dt.datetime) -> tuple[str, str, str | None] | None:
    """(run_id, status, message) of the sync's latest run started at or after `since`, if any."""
    from revetl.sync.state import has_state
    from revetl.warehouse.dialect import Template

    if not has_state(connection):
        return None
    rows = connection.fetchall(Template(_SYNC_RUN), {"sync": sync, "since": since})
    return (rows[0][0], rows[0][1], rows[0][2]) if rows else None


def cache_path(project: Project) -> Path:
    """The cache of the warehouse the project reaches, found without rendering profiles.yml (no Jinja on
    the minute with nothing due): named by a hash of what decides that warehouse, i.e. the project
    directory, dbt_project.yml and profiles.yml as written, the environment variables profiles.yml reads
    (their values; not those that look like secrets, which change no warehouse), the target and
    REVETL_WORK_DIR. Kept in dbt's target directory (`target/schedule/`); deleting it costs one read of
    the warehouse."""
    digest = hashlib.blake2b(digest_size=10)
    profiles = _read_bytes(project.root / "profiles.yml")
    names = sorted(set(_ENV_VAR.findall(profiles.decode("utf-8", "replace"))))
    parts = [str(project.root), project.target or "", os.environ.get("REVETL_WORK_DIR", ""),
             _read_bytes(project.root / "dbt_project.yml").hex(), profiles.hex(),
             *(f"{name}={os.environ.get(name)}" for name in names if not _SECRET.search(name))]
    for part in parts:
        digest.update(part.encode("utf-8", "surrogateescape") + b"\0")
    return project.target_dir / "schedule" / f"windows-{digest.hexdigest()}.json"


_ENV_VAR = re.compile(r"""env_var\(\s*['"]([^'"]+)['"]""")
_SECRET = re.compile("PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def read_cache(path: Path) -> dict[str, dt.datetime]:
    """Job key -> its latest answered window, as cached; empty when there is no (readable) cache."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return {str(key): dt.datetime.fromisoformat(value) for key, value in raw.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}  # no cache, or a damaged one: the warehouse decides


def write_cache(path: Path, windows: dict[str, dt.datetime]) -> None:
    """Replace the cache (atomically: a reader sees the old file or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps({key: value.isoformat() for key, value in sorted(windows.items())}),
                         encoding="utf-8")
    os.replace(temporary, path)
