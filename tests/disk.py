"""A small, real filesystem for disk-full tests: a tmpfs of a few hundred KiB (imported by name).

As root (CI) the tmpfs is mounted on a directory and unmounted afterwards. Otherwise it is mounted
inside a user and mount namespace (`unshare -rm`) held open by a sleeping process, and reached by
every process of the same user through `/proc/<that pid>/root/<directory>`; if the kernel allows
neither, the test fails and says why (it is never skipped).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["fill", "small_disk"]


@contextlib.contextmanager
def small_disk(directory: Path, size_kib: int, namespace: bool | None = None) -> Iterator[Path]:
    """A tmpfs of `size_kib` KiB; yields the path through which processes reach it.

    `namespace` forces the way it is mounted (default: a plain mount when root).
    """
    directory.mkdir(parents=True, exist_ok=True)
    if not (os.geteuid() != 0 if namespace is None else namespace):
        _run("mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(directory))
        try:
            yield directory
        finally:
            _run("umount", "-l", str(directory))
        return
    if shutil.which("unshare") is None:
        raise AssertionError("disk-full tests need root (to mount a tmpfs) or `unshare` (util-linux)")
    holder = subprocess.Popen(
        ["unshare", "-rm", "sh", "-c",
         f'mount -t tmpfs -o size={size_kib}k tmpfs "$1" && touch "$1/.ready" && exec sleep 86400', "sh",
         str(directory)],
        stderr=subprocess.PIPE,
    )
    try:
        inside = Path(f"/proc/{holder.pid}/root") / directory.relative_to("/")
        deadline = time.monotonic() + 10
        while not (inside / ".ready").exists():
            if holder.poll() is not None or time.monotonic() > deadline:
                error = holder.stderr.read().decode() if holder.stderr and holder.poll() is not None else ""
                raise AssertionError(f"could not mount a tmpfs in a user namespace (unshare -rm): {error.strip()}")
            time.sleep(0.02)
        (inside / ".ready").unlink()
        yield inside
    finally:
        holder.kill()
        holder.wait()


def fill(disk: Path, name: str = "ballast", leave: int = 0) -> Path:
    """Write a file until the disk is full (ENOSPC), or has only `leave` bytes free; returns it, to be
    deleted to free the space."""
    ballast = disk / name
    chunk = os.urandom(64 * 1024)
    with open(ballast, "wb", buffering=0) as out:
        if leave:
            stats = os.statvfs(disk)
            out.write(b"\0" * max(0, stats.f_bavail * stats.f_frsize - leave))
            return ballast
        size = len(chunk)
        while size:
            try:
                out.write(chunk[:size])
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                size //= 2  # top up the last pages too
    return ballast


def _run(*command: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed: {result.stderr.strip()}")
