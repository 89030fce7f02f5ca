"""One run per sync: a process lock beside the warehouse (revetl/locks.py), so cron never overlaps a sync."""

from __future__ import annotations

import contextlib
from pathlib import Path

from revetl import locks
from revetl.config import Project
from revetl.errors import SyncRefused

__all__ = ["sync_lock", "sync_locked"]


def _lock_path(project: Project, sync: str) -> Path:
    from revetl.warehouse.connection import work_dir

    return locks.lock_path(work_dir(project), sync)


def sync_lock(project: Project, sync: str) -> contextlib.AbstractContextManager[None]:
    """Hold the sync's lock, or raise SyncRefused naming the process that holds it."""
    return locks.hold(_lock_path(project, sync), lambda holder: SyncRefused(
        f"sync {sync} is already running ({holder}); not starting a second run"))


def sync_locked(project: Project, sync: str) -> bool:
    """Whether a process holds the sync's lock now (a run of it is alive)."""
    return locks.held(_lock_path(project, sync))
