"""One tick of the scheduler (`revetl schedule run`): decide what is due, then run it.

The rules (README "Scheduling"):

- **Due.** A job's *window* is the latest time at or before now that its cron expression names (in the
  project's time zone). A job is due when its window is later than the latest window it has a decision for
  in `revetl_state.schedule_runs`; a job never decided is due at once. Whatever the decision (succeeded,
  failed, skipped), a window is answered once: a failed run is tried again at the next window, not every
  minute.
- **Catch-up.** Several windows missed (the machine was off, cron stopped) give one run, for the latest.
- **Never stacked.** A job whose previous scheduled run is still going (its scheduler holds the job's lock),
  or a sync running outside the scheduler (its own lock is held), or a build already running, is *skipped*
  for this window and recorded as such. A `running` decision whose scheduler died (its lock is free) is
  closed as failed.
- **Build first.** When a due sync says `after: build`, or the build's own schedule is due, `revetl build`
  runs once in this tick before those syncs, and they run only if it passed (else they are recorded as
  skipped, saying so). Other syncs do not wait for it.
- **Parallel.** Jobs run as child processes (children.py), at most `schedule.parallel` at once.

Deciding is serialized across scheduler processes by the lock `schedule.tick` (a cron line that fires while
the previous tick still runs its jobs waits a moment here, then finds those jobs running and skips them);
the jobs' own locks (`schedule.sync.NAME`, `schedule.build`) are held by the process that runs them, from the
decision until it is recorded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from revetl.config import Project
from revetl.errors import RevetlError
from revetl.schedule import ledger
from revetl.schedule.jobs import BUILD, Job, Jobs, load_jobs
from revetl.schedule.ledger import Record

if TYPE_CHECKING:  # a minute with nothing due loads neither (revetl.runtime loads asyncio)
    from revetl.runtime import Clock
    from revetl.schedule.children import Finished

__all__ = ["Outcome", "Tick", "due_jobs", "lock_name", "run_due"]


@dataclass(frozen=True)
class Outcome:
    """A job's decision in this tick, and how it ended."""

    job: Job
    window: dt.datetime
    status: str  # succeeded | failed | skipped
    message: str | None = None
    seconds: float | None = None
    run_id: str | None = None


@dataclass
class Tick:
    now: dt.datetime
    timezone: str
    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # files with problems, one sentence each

    @property
    def ok(self) -> bool:
        return not self.problems and all(outcome.status != "failed" for outcome in self.outcomes)


@dataclass
class _Plan:
    """What the decision phase settled: records to write, jobs to run (each holding its lock)."""

    records: list[Record] = field(default_factory=list)
    interrupted: list[Record] = field(default_factory=list)
    run: dict[str, tuple[Job, Record]] = field(default_factory=dict)
    locks: dict[str, contextlib.ExitStack] = field(default_factory=dict)
    skipped: list[Outcome] = field(default_factory=list)


def due_jobs(jobs: Jobs, now: dt.datetime, answered: dict[str, dt.datetime]) -> list[tuple[Job, dt.datetime]]:
    """The jobs due at `now` given each job's latest answered window, with the window each is due for."""
    due = []
    for job in jobs.jobs:
        window = jobs.window(job, now)
        if window is not None and (job.key not in answered or window > answered[job.key]):
            due.append((job, window))
    return due


def run_due(project: Project, clock: Clock | None = None,
            on_finish: Callable[[Outcome, Finished], None] | None = None) -> Tick:
    """Run every job due now (by `clock`, default the system's); `on_finish` sees each job's outcome and
    output as it ends."""
    jobs = load_jobs(project)
    now = clock.now() if clock is not None else dt.datetime.now(dt.timezone.utc)
    tick = Tick(now, jobs.timezone, problems=jobs.problems)
    cache = ledger.cache_path(project)
    if not due_jobs(jobs, now, ledger.read_cache(cache)):
        return tick  # the usual minute: nothing due, the warehouse not even opened
    if clock is None:
        from revetl.runtime import SYSTEM

        clock = SYSTEM
    plan = _decide(project, jobs, now, clock)
    tick.outcomes.extend(plan.skipped)
    try:
        tick.outcomes.extend(_execute(project, plan, clock, on_finish))
    finally:
        for stack in plan.locks.values():
            stack.close()
    return tick


class _Busy(Exception):
    pass


def _take(project: Project, name: str) -> contextlib.ExitStack | None:
    """Hold the named lock in a stack of its own, or None when another process holds it."""
    from revetl.warehouse.connection import lock

    stack = contextlib.ExitStack()
    try:
        stack.enter_context(lock(project, name, lambda holder: _Busy(holder)))
    except _Busy:
        stack.close()
        return None
    return stack


@contextlib.contextmanager
def _deciding(project: Project, clock: Clock):
    """Hold `schedule.tick`, waiting for another tick's decisions (seconds) up to the warehouse's lock wait."""
    from revetl.warehouse.connection import lock_wait_seconds

    deadline = clock.monotonic() + lock_wait_seconds() + 60
    while (stack := _take(project, "schedule.tick")) is None:
        if clock.monotonic() > deadline:
            raise RevetlError("another `revetl schedule run` has been deciding for too long; not running anything")
        clock.block(0.2)
    with stack:
        yield


def _decide(project: Project, jobs: Jobs, now: dt.datetime, clock: Clock) -> _Plan:
    """Under `schedule.tick`: read the ledger, settle each due job (run or skip), record it, refresh the cache."""
    import socket

    from revetl.sync.migrations import migrate
    from revetl.warehouse.connection import connect

    plan = _Plan()
    with _deciding(project, clock), connect(project, clock=clock) as warehouse:
        migrate(warehouse, clock)
        latest = ledger.latest_records(warehouse)
        answered = {key: record.window_at for key, record in latest.items()}
        due = due_jobs(jobs, now, answered)
        wanted = [*due]
        needs_build = [job for job, _ in due if job.kind != BUILD and job.after_build]
        if needs_build and not any(job.kind == BUILD for job, _ in due):
            wanted.insert(0, (jobs.build, now.replace(second=0, microsecond=0)))  # built for them, this minute
        build_runs = True
        for job, window in sorted(wanted, key=lambda item: item[0].kind != BUILD):  # the build first
            reason = _still_going(project, job, latest.get(job.key), plan)
            if reason is None and job.after_build and not build_runs:
                reason = "not run: the build it follows is still running"
            if reason is None and (stack := _take(project, lock_name(job))) is not None:
                plan.locks[job.key] = stack
                record = Record(job.kind, job.name, window, "running", now, pid=os.getpid(),
                                host=socket.gethostname())
                plan.run[job.key] = (job, record)
                plan.records.append(record)
                continue
            reason = reason or f"{job.label} is being run by another scheduler"
            build_runs = build_runs and job.kind != BUILD
            plan.records.append(Record(job.kind, job.name, window, "skipped", now, now, message=reason))
            plan.skipped.append(Outcome(job, window, "skipped", reason))
        for record in plan.interrupted:
            ledger.finish(warehouse, record, "failed", now, None, record.message)
        ledger.insert(warehouse, plan.records)
        for record in plan.records:
            answered[record.key] = max(answered.get(record.key, record.window_at), record.window_at)
    ledger.write_cache(ledger.cache_path(project), answered)
    return plan


def lock_name(job: Job) -> str:
    return "schedule.build" if job.kind == BUILD else f"schedule.sync.{job.name}"


def _still_going(project: Project, job: Job, last: Record | None, plan: _Plan) -> str | None:
    """Why `job` must be skipped now (a run of it is alive), or None. A `running` decision whose process
    died is queued in `plan.interrupted`, to be closed as failed."""
    from revetl.warehouse.connection import locked

    if locked(project, lock_name(job)):
        if last is not None and last.status == "running":
            return (f"skipped: the run for {last.window_at:%Y-%m-%d %H:%M} UTC is still going "
                    f"(pid {last.pid} on {last.host})")
        return f"skipped: a scheduled run of {job.label} is still going"
    if last is not None and last.status == "running":
        plan.interrupted.append(Record(
            last.kind, last.name, last.window_at, "running", last.started_at,
            message=f"interrupted: the scheduler running it (pid {last.pid} on {last.host}) stopped before it ended"))
    if job.kind == BUILD:
        from revetl import locks
        from revetl.warehouse.connection import work_dir

        if locks.held(locks.lock_path(work_dir(project), "build")):
            return "skipped: a build is already running (outside the scheduler)"
        return None
    from revetl.sync.lock import sync_locked

    if sync_locked(project, job.name):
        return f"skipped: sync {job.name} is already running (outside the scheduler)"
    return None


def _execute(project: Project, plan: _Plan, clock: Clock,
             on_finish: Callable[[Outcome, Finished], None] | None) -> list[Outcome]:
    """Run the planned jobs: the build first, the syncs after it once it passed, the others alongside."""
    import threading
    from concurrent.futures import Future, ThreadPoolExecutor

    from revetl.schedule.children import Finished, run_child

    recording = threading.Lock()  # one warehouse writer at a time from this process

    def run(job: Job, record: Record) -> Outcome:
        since = dt.datetime.fromtimestamp(clock.time() - 1, dt.timezone.utc)
        started = time.monotonic()
        try:
            finished = run_child(project, job)
        except OSError as exc:  # the child could not even start
            finished = Finished(127, "", f"could not start {job.label}: {exc}")
        outcome = Outcome(job, record.window_at, "succeeded" if finished.ok else "failed", finished.message,
                          time.monotonic() - started)
        with recording:
            outcome = _record(project, record, outcome, since, clock)
            plan.locks.pop(job.key).close()
            if on_finish is not None:
                on_finish(outcome, finished)
        return outcome

    runs = list(plan.run.values())
    build = [(job, record) for job, record in runs if job.kind == BUILD]
    first = [(job, record) for job, record in runs if job.kind != BUILD and not job.after_build]
    after = [(job, record) for job, record in runs if job.kind != BUILD and job.after_build]
    parallel = project.settings.schedule.parallel
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="schedule") as pool:
        built: Future[Outcome] | None = pool.submit(run, *build[0]) if build else None
        futures = [pool.submit(run, job, record) for job, record in first]
        passed = built is None or (built_outcome := built.result()).status == "succeeded"
        if built is not None:
            outcomes.append(built_outcome)
        for job, record in after:
            if passed:
                futures.append(pool.submit(run, job, record))
                continue
            skipped = Outcome(job, record.window_at, "skipped", "not run: the build failed")
            with recording:
                outcomes.append(_record(project, record, skipped, None, clock))
                plan.locks.pop(job.key).close()
        outcomes.extend(future.result() for future in futures)
    return outcomes


def _record(project: Project, record: Record, outcome: Outcome, since: dt.datetime | None,
            clock: Clock) -> Outcome:
    """Close the job's `running` decision with its outcome (and the sync's run id, read from its runs)."""
    from revetl.warehouse.connection import connect

    try:
        with connect(project, clock=clock) as warehouse:
            found = ledger.sync_run(warehouse, outcome.job.name, since) if (
                since is not None and outcome.job.kind != BUILD) else None
            run_id = found[0] if found else None
            message = outcome.message if outcome.message or found is None else found[2]
            ledger.finish(warehouse, record, outcome.status, clock.now(), run_id, message)
    except RevetlError as exc:  # the job's own outcome stands; the next tick closes the decision
        return Outcome(outcome.job, outcome.window, outcome.status,
                       f"{outcome.message or outcome.status}; not recorded: {exc}", outcome.seconds)
    return Outcome(outcome.job, outcome.window, outcome.status, message, outcome.seconds, run_id)
