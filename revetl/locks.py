"""Process locks in the work directory beside the warehouse: one sync run per sync, one build at a time.

A lock is an `flock` on `<work_dir>/locks/NAME.lock` holding its owner's pid: the kernel releases it
when the process ends, even by SIGKILL, so a lock is never stale; a second taker is refused at once
and told which process holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["held", "hold", "lock_path"]


def lock_path(work_dir: Path, name: str) -> Path:
    directory = work_dir / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{name}.lock"


@contextlib.contextmanager
def hold(path: Path, refuse: Callable[[str], Exception]) -> Iterator[None]:
    """Hold the lock at `path`, or raise `refuse(holder)` (`holder` like "pid 1234") at once."""
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            raise refuse(f"pid {holder}" if holder else "another process") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def held(path: Path) -> bool:
    """Whether a live process holds the lock at `path` (tested without keeping it)."""
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
