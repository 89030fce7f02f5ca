"""One job run as a child process: `python -m revetl --project-dir ROOT [--target T] sync NAME` (or `build`).

A child is the same command a person or a crontab line would run, so everything hooked to it (its lock, its
run record, its alerts) happens as it always does, and a crash of one job (a segfault in a driver, memory
exhausted) ends that child only, never the scheduler or the other jobs. Its output is captured whole and
handed back, so that jobs running in parallel do not interleave their lines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass

from revetl.config import Project
from revetl.schedule.jobs import BUILD, Job

__all__ = ["Finished", "command", "run_child"]


@dataclass(frozen=True)
class Finished:
    """How a child ended: its exit code, its output (stdout then stderr) and the sentence that says why."""

    returncode: int
    output: str
    message: str | None

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def command(project: Project, job: Job) -> list[str]:
    """The child's argv."""
    target = ["--target", project.target] if project.target else []
    action = ["build"] if job.kind == BUILD else ["sync", job.name]
    return [sys.executable, "-m", "revetl", "--project-dir", str(project.root), *target, *action]


def run_child(project: Project, job: Job) -> Finished:
    """Run the job to its end (no time limit: a sync may take hours) and say how it ended."""
    completed = subprocess.run(command(project, job), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                               errors="replace", env=os.environ.copy())
    output = completed.stdout + completed.stderr
    return Finished(completed.returncode, output, _why(completed.returncode, completed.stderr, completed.stdout))


def _why(returncode: int, stderr: str, stdout: str) -> str | None:
    """The child's own error sentence (`error: ...`, the CLI's one red line), else its last line; None if it
    succeeded."""
    if returncode == 0:
        return None
    if returncode < 0:
        return f"the process was killed by {signal.Signals(-returncode).name}"
    errors = [line.removeprefix("error: ").strip() for line in stderr.splitlines() if line.startswith("error: ")]
    if errors:
        return errors[-1]
    lines = [line.strip() for line in (stderr or stdout).splitlines() if line.strip()]
    return lines[-1][:300] if lines else f"exited with code {returncode}"
