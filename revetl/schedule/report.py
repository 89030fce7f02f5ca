"""What the scheduler shows: a tick's outcomes, each job's schedule (`schedule list`), crontab lines."""

from __future__ import annotations

import datetime as dt
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.segment import Segments
from rich.table import Table
from rich.text import Text

from revetl.config import Project
from revetl.schedule import cron
from revetl.schedule.jobs import BUILD, Job, Jobs
from revetl.schedule.ledger import Record
from revetl.schedule.runner import Tick

__all__ = ["JobRow", "crontab_lines", "job_rows", "print_jobs", "print_tick"]

STYLE = {"succeeded": "green", "failed": "red", "skipped": "yellow", "running": "cyan", "interrupted": "red"}


def _when(moment: dt.datetime | None, timezone: str) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(cron.zone(timezone)).strftime("%Y-%m-%d %H:%M %Z")


def _status(status: str) -> Text:
    return Text(status, style=STYLE.get(status, ""))


def _print(table: Table, console: Console) -> None:
    """A terminal gets the table fitted to its width; cron mail or a pipe gets it whole, never cut at 80."""
    if console.is_terminal:
        console.print(table)
        return
    width = max(console.measure(table, options=console.options.update_width(1_000)).maximum, console.width)
    console.print(Segments(console.render(table, console.options.update_width(width))), crop=False)


def print_tick(tick: Tick, console: Console) -> None:
    """One line per job decided in this tick."""
    table = Table(title=f"schedule run at {_when(tick.now, tick.timezone)}", title_justify="left")
    for column in ("job", "window", "status", "seconds", "run", "message"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for outcome in tick.outcomes:
        table.add_row(outcome.job.label, _when(outcome.window, tick.timezone), _status(outcome.status),
                      "-" if outcome.seconds is None else f"{outcome.seconds:.1f}", outcome.run_id or "-",
                      Text(outcome.message or ""))
    _print(table, console)


@dataclass(frozen=True)
class JobRow:
    label: str
    schedule: str
    next_at: dt.datetime | str | None  # a time, or "due now"
    last: Record | None
    last_status: str | None


def job_rows(project: Project, jobs: Jobs, now: dt.datetime, latest: dict[str, Record],
             running: set[str]) -> list[JobRow]:
    """Every sync (scheduled or not) and the build, with their schedule, next run and latest decision.
    `running`: keys of jobs whose scheduler holds their lock (a `running` record of another is interrupted)."""
    from revetl.config import sync_names

    scheduled = {job.name: job for job in jobs.jobs if job.kind != BUILD}
    rows = []
    followers = any(job.after_build for job in scheduled.values())
    build = jobs.build
    if build.schedule or followers:
        text = build.schedule or "before each sync that says `after: build`"
        rows.append(_row(jobs, build, text, now, latest, running))
    for name in sync_names(project):
        job = scheduled.get(name)
        if job is None:
            rows.append(JobRow(f"sync {name}", "not scheduled", None, latest.get(f"sync:{name}"), None))
            continue
        text = job.schedule or f"{jobs.build_schedule} (the build's)"
        rows.append(_row(jobs, job, text + (", after build" if job.after_build else ""), now, latest, running))
    return rows


def _row(jobs: Jobs, job: Job, text: str, now: dt.datetime, latest: dict[str, Record], running: set[str]) -> JobRow:
    last = latest.get(job.key)
    status = last.status if last else None
    if status == "running" and job.key not in running:
        status = "interrupted"
    window = jobs.window(job, now)
    due = window is not None and (last is None or window > last.window_at)
    return JobRow(job.label, text, "due now" if due else jobs.next_time(job, now), last, status)


def print_jobs(rows: list[JobRow], timezone: str, console: Console) -> None:
    table = Table(title=f"schedules (times in {timezone})", title_justify="left")
    for column in ("job", "schedule", "next run", "last window", "last status", "last finished", "message"):
        table.add_column(column)
    for row in rows:
        last = row.last
        next_at = row.next_at if isinstance(row.next_at, str) else _when(row.next_at, timezone)
        table.add_row(row.label, row.schedule, next_at,
                      _when(last.window_at if last else None, timezone),
                      _status(row.last_status) if row.last_status else "-",
                      _when(last.finished_at if last else None, timezone), Text((last.message or "") if last else ""))
    _print(table, console)


def crontab_lines(project: Project, jobs: Jobs) -> list[str]:
    """Crontab lines: one per scheduled job (cron runs them itself), and the one line that replaces them."""
    found = Path(sys.executable).with_name("revetl")
    revetl = [str(found) if found.exists() else "revetl", "--project-dir", str(project.root)]
    if project.target:
        revetl += ["--target", project.target]
    command = shlex.join(revetl)
    lines = [
        "# The one line that runs every schedule below, with catch-up, build first and no overlap (recommended):",
        f"# * * * * * {command} schedule run",
        "#",
        "# Or one line per job, cron running each itself (no catch-up, no record of skips; a sync's own lock",
        "# still refuses a second run). Times are in the project's time zone: cronie reads CRON_TZ;",
        "# with another cron, run it in that zone.",
        f"CRON_TZ={jobs.timezone}",
    ]
    followers = [job.name for job in jobs.jobs if job.kind != BUILD and job.schedule is None]
    if jobs.build_schedule:
        then = f" && {command} sync {shlex.join(followers)}" if followers else ""
        lines.append(f"{jobs.build_schedule} {command} build{then}")
    for job in jobs.jobs:
        if job.kind == BUILD or job.schedule is None:
            continue
        build = f"{command} build && " if job.after_build else ""
        lines.append(f"{job.schedule} {build}{command} sync {shlex.quote(job.name)}")
    return lines
