"""One run per sync: the warehouse's named lock (`warehouse.connection.lock`), so cron never overlaps a sync.

On DuckDB it is an flock in the work directory beside the warehouse file (the processes sharing a file share
its file system); on PostgreSQL an advisory lock in the database, so two hosts running cron against one
warehouse never overlap a sync either. Either is released when its process dies, however it dies.
"""

from __future__ import annotations

import contextlib

from revetl.config import Project
from revetl.errors import SyncRefused

__all__ = ["sync_lock", "sync_locked"]


def sync_lock(project: Project, sync: str) -> contextlib.AbstractContextManager[None]:
    """Hold the sync's lock, or raise SyncRefused naming the process that holds it."""
    from revetl.warehouse.connection import lock

    return lock(project, sync, lambda holder: SyncRefused(
        f"sync {sync} is already running ({holder}); not starting a second run"))


def sync_locked(project: Project, sync: str) -> bool:
    """Whether a process holds the sync's lock now (a run of it is alive)."""
    from revetl.warehouse.connection import locked

    return locked(project, sync)
