"""The project's scheduled jobs: each sync with a `schedule:` or `after: build`, and the build.

A sync file may say

    schedule: "*/15 * * * *"   # cron, in the project's time zone (schedule.timezone in revetl.yml)
    after: build               # build first in the same tick; run only if the build passed

A sync with `after: build` and no `schedule:` of its own follows the build's schedule (`build.schedule` in
revetl.yml). The build is a job when `build.schedule` is set; it also runs, unscheduled, whenever a sync that
is due says `after: build`. A sync with neither key is not scheduled. A sync file with a problem is not a
job: its first problem is reported with the file and line (and `schedule run` exits non-zero), the others
still run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from revetl.config import Project, check_sync, sync_names
from revetl.schedule import cron

__all__ = ["BUILD", "Job", "Jobs", "load_jobs"]

BUILD = "build"


@dataclass(frozen=True)
class Job:
    """One scheduled job. `schedule` is None for a sync that follows the build's schedule."""

    kind: str  # "sync" or "build"
    name: str  # the sync's name; "build" for the build
    schedule: str | None
    after_build: bool = False

    @property
    def key(self) -> str:
        """How the ledger names the job: `sync:NAME` or `build`."""
        return BUILD if self.kind == BUILD else f"sync:{self.name}"

    @property
    def label(self) -> str:
        return BUILD if self.kind == BUILD else f"sync {self.name}"


@dataclass(frozen=True)
class Jobs:
    """The jobs of a project, in name order (the build first), and the sentences of files that have problems."""

    jobs: list[Job]
    problems: list[str]
    timezone: str
    build_schedule: str | None

    @property
    def build(self) -> Job:
        return Job(BUILD, BUILD, self.build_schedule)

    def expression(self, job: Job) -> str | None:
        """The cron expression that makes `job` due (a follower's is the build's); None: due only with a sync."""
        return job.schedule if job.schedule is not None else self.build_schedule

    def window(self, job: Job, now: dt.datetime) -> dt.datetime | None:
        """The latest time at or before `now` when `job` fell due (UTC); None when it has no schedule."""
        expression = self.expression(job)
        return None if expression is None else cron.latest(expression, now, self.timezone)

    def next_time(self, job: Job, now: dt.datetime) -> dt.datetime | None:
        expression = self.expression(job)
        return None if expression is None else cron.following(expression, now, self.timezone)


def load_jobs(project: Project) -> Jobs:
    """Read every sync file and revetl.yml's `build:`; the project's jobs and the problems found."""
    build_schedule = project.settings.build.schedule
    jobs = [Job(BUILD, BUILD, build_schedule)] if build_schedule else []
    problems = []
    for name in sync_names(project):
        checked = check_sync(project, name)
        path = project.syncs_dir / f"{name}.yml"
        if checked.problems:
            line, message = checked.problems[0]
            problems.append(f"{path}, line {line}: {message}" if line else f"{path}: {message}")
            continue
        sync = checked.sync
        assert sync is not None
        after_build = sync.after == BUILD
        if sync.schedule is None and after_build and build_schedule is None:
            line = checked.yaml.lines.get(("after",)) if checked.yaml else None
            problems.append(f"{path}, line {line}: `after: build` without a `schedule:` follows the build's "
                            f"schedule, and revetl.yml sets none; add `schedule:` here or `build: {{schedule: ...}}` "
                            "to revetl.yml")
            continue
        if sync.schedule is not None or after_build:
            jobs.append(Job("sync", name, sync.schedule, after_build))
    return Jobs(jobs, problems, project.settings.schedule.timezone, build_schedule)
