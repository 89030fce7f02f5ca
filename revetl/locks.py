"""Process locks in the work directory beside the warehouse: one sync run per sync, one build at a time.

A lock is an `flock` on `<work_dir>/locks/NAME.lock` holding its owner's pid: the kernel releases it
when the process ends, even by SIGKILL, so a lock is never stale; a second taker is refused at once
and told which process holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO
from pathlib import Path

__all__ = ["held", "hold", "lock_path", "wait_for"]


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
        _claim(handle)
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


def wait_for(path: Path, wait: float, what: str) -> IO[str]:
    """Take the lock at `path`, waiting up to `wait` seconds for its holder (told once on stderr); the
    open file is returned: closing it releases the lock. Past `wait`, a WarehouseError names `what` and the holder."""
    from revetl.errors import WarehouseError

    handle = open(path, "a+")
    deadline, delay, told = time.monotonic() + wait, 0.05, False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            handle.seek(0)
            holder = f"pid {handle.read().strip() or '?'}"
            if time.monotonic() >= deadline:
                handle.close()
                raise WarehouseError(f"{what} is still in use by {holder} after {wait:g} s; try again later, "
                                     "or wait longer with REVETL_LOCK_WAIT") from None
            if not told and delay >= 0.4:
                told = True
                print(f"waiting for {what}: {holder} is using it", file=sys.stderr, flush=True)
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)
    _claim(handle)
    return handle


def _claim(handle: IO[str]) -> None:
    """Write this process's pid into a lock file it holds, for whoever is refused or waits."""
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
