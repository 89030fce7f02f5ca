"""Tables for what syncs did: a run's summary, past runs, rejected rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from rich.console import Console
from rich.segment import Segments
from rich.table import Table

from revetl.sync.apply import RunResult
from revetl.sync.state import RunRecord

__all__ = ["print_failures", "print_result", "print_runs"]

STATUS_STYLE = {"succeeded": "green", "failed": "red", "crashed": "red", "refused": "yellow",
                "cancelled": "yellow", "running": "cyan"}


def _status(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def print_result(results: Sequence[RunResult], console: Console) -> None:
    """One line per sync run: acknowledged of planned per operation, failures, time, throughput."""
    table = Table(title="sync summary", title_justify="left")
    for column, justify in (("sync", "left"), ("status", "left"), ("adds", "right"), ("changes", "right"),
                            ("removes", "right"), ("failed", "right"), ("seconds", "right"), ("rows/s", "right"),
                            ("requests", "right")):
        table.add_column(column, justify=justify)
    for r in results:
        plan = r.plan
        rate = r.acknowledged / r.seconds if r.seconds else 0
        table.add_row(
            r.sync, _status(r.status),
            f"{r.acked['add']:,}/{plan.adds:,}", f"{r.acked['change']:,}/{plan.changes:,}",
            f"{r.acked['remove']:,}/{plan.removes:,}", f"{r.failed:,}", f"{r.seconds:.1f}", f"{rate:,.0f}",
            f"{r.requests:,}" + (f" ({r.retries:,} retried)" if r.retries else ""),
        )
    _print_whole(table, console)
    for r in results:
        if r.message:
            console.print(f"{r.sync}: {r.message}", highlight=False)


def _print_whole(table: Table, console: Console) -> None:
    """Print `table` without cutting any cell. A terminal gets it fitted to its width; a log or a pipe
    (cron mail, CI), where rich would assume 80 columns and cut names and figures short, gets it as
    wide as its content."""
    needed = console.measure(table, options=console.options.update_width(1_000)).maximum
    if console.is_terminal or needed <= console.width:
        console.print(table)
    else:
        console.print(Segments(console.render(table, console.options.update_width(needed))), crop=False)


def _when(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def print_runs(runs: Sequence[RunRecord], console: Console) -> None:
    if not runs:
        console.print("no runs yet")
        return
    table = Table(title="runs (newest first)", title_justify="left")
    for column in ("run", "sync", "started (UTC)", "status", "members", "adds", "changes", "removes", "failed",
                   "seconds", "message"):
        table.add_column(column, justify="right" if column in ("members", "failed", "seconds") else "left")
    for run in runs:
        (pa, pc, pr), (aa, ac, ar) = run.planned, run.acked
        table.add_row(
            run.run_id, run.sync, _when(run.started_at), _status(run.status), _count(run.members),
            _of(aa, pa), _of(ac, pc), _of(ar, pr), _count(run.failed),
            f"{run.duration:.1f}" if run.duration is not None else "-", run.message or "",
        )
    _print_whole(table, console)


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _of(done: int | None, planned: int | None) -> str:
    """`acknowledged/planned`; a run that stopped before planning has no counts."""
    return "-" if planned is None else f"{done or 0:,}/{planned:,}"


def print_failures(sync: str, rows: Sequence[tuple], console: Console) -> None:
    if not rows:
        console.print(f"no rejected rows for sync {sync}")
        return
    table = Table(title=f"rows rejected in run {rows[0][0]} of sync {sync}", title_justify="left")
    for column in ("key", "operation", "reason", "at (UTC)"):
        table.add_column(column)
    for _run, key, op, reason, at in rows:
        table.add_row(key, op, reason, _when(at))
    _print_whole(table, console)
