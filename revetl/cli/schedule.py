"""Commands of the scheduler: `schedule run` (the one crontab line), `schedule list`, `schedule crontab`."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from revetl.cli.app import app, console, current_project, print_error

if TYPE_CHECKING:
    from revetl.runtime import Clock

schedule_app = typer.Typer(no_args_is_help=True, help="Run the syncs and the build their `schedule:` makes due.")
app.add_typer(schedule_app, name="schedule")

# For tests and dry reasoning only: decide as if the clock said this (the jobs themselves run now).
_NOW = typer.Option("--now", hidden=True, help="Decide as if it were this time (ISO 8601; for tests).")


def _clock(now: Optional[str]) -> Clock | None:
    """The clock `--now` stands for; None: the system's (not loaded on a minute with nothing due)."""
    from revetl.errors import ConfigError

    if now is None:
        return None
    from revetl.runtime import Clock

    try:
        moment = dt.datetime.fromisoformat(now)
    except ValueError:
        raise ConfigError(f"--now {now!r} is not an ISO 8601 time such as 2026-01-05T10:00:00Z") from None
    moment = moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment
    return Clock(now=lambda: moment)


@schedule_app.command("run")
def schedule_run(now: Annotated[Optional[str], _NOW] = None) -> None:
    """Run every job due since its last run (meant for a `* * * * *` crontab line); silent when nothing is due.

    Exit 1 when a job failed or a sync file has a problem; a job skipped because its previous run is still
    going is not a failure."""
    from revetl.errors import ConfigError
    from revetl.schedule.runner import run_due

    def show(outcome, finished) -> None:  # each job's own output, whole, as it ends
        from rich.rule import Rule

        console.print(Rule(f"{outcome.job.label}: {outcome.status}", align="left"), highlight=False)
        if finished.output.strip():
            console.out(finished.output.rstrip(), highlight=False)

    tick = run_due(current_project(), _clock(now), on_finish=show)
    if tick.outcomes:  # nothing due: no output at all (cron mails any)
        from revetl.schedule.report import print_tick

        print_tick(tick, console)
    for problem in tick.problems:
        print_error(ConfigError(problem))
    if not tick.ok:
        raise typer.Exit(1)


@schedule_app.command("list")
def schedule_list(now: Annotated[Optional[str], _NOW] = None) -> None:
    """Show each sync's and the build's schedule, next run and latest scheduled run."""
    from revetl.errors import ConfigError, WarehouseError
    from revetl.schedule import ledger
    from revetl.schedule.jobs import load_jobs
    from revetl.schedule.report import job_rows, print_jobs
    from revetl.schedule.runner import lock_name
    from revetl.warehouse.connection import connect, locked

    project = current_project()
    jobs = load_jobs(project)
    try:
        with connect(project, read_only=True) as warehouse:
            latest = ledger.latest_records(warehouse)
    except WarehouseError:  # no warehouse yet: nothing ran
        latest = {}
    running = {job.key for job in jobs.jobs if locked(project, lock_name(job))}
    clock = _clock(now)
    moment = clock.now() if clock is not None else dt.datetime.now(dt.timezone.utc)
    print_jobs(job_rows(project, jobs, moment, latest, running), jobs.timezone, console)
    for problem in jobs.problems:
        print_error(ConfigError(problem))
    if jobs.problems:
        raise typer.Exit(1)


@schedule_app.command("crontab")
def schedule_crontab() -> None:
    """Print crontab lines: one per scheduled job, and the one `schedule run` line that replaces them all."""
    from revetl.errors import ConfigError
    from revetl.schedule.jobs import load_jobs
    from revetl.schedule.report import crontab_lines

    project = current_project()
    jobs = load_jobs(project)
    for line in crontab_lines(project, jobs):
        print(line)
    for problem in jobs.problems:
        print_error(ConfigError(problem))
    if jobs.problems:
        raise typer.Exit(1)
