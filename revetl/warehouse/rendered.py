"""SQL text rendered by an earlier run, kept so that a command building the same statements again loads
neither sqlglot nor Jinja: a cron line that finds nothing to send costs next to nothing.

A cron line fires every minute, and most minutes the statements are the ones of the minute before: the
same templates (dialect.py), the same sync mapping over the same column types, the same audience file over
the same models. Rendering them costs more than the work itself (sqlglot loads in 0.15 s and translates in
0.15 s more; Jinja and the audience's sandbox check another 0.1 s), so the text is kept:

    text = remember(kind, dialect, parts, render)

returns the text stored for (`kind`, `dialect`, `parts`), or calls `render()` and stores what it returns. (The
relations read from dbt's manifest are kept the same way, by the manifest's size and time: relations.py.)
`parts` is everything the text is made from (a template's text and relations, a mapping and the column
types, an audience file's text and the relations `ref()` names): plain values whose `repr` is stable. An
exception from `render` propagates and stores nothing (a broken audience is checked again every time).

The store as a whole belongs to the code that renders: revetl's own modules, sqlglot, Jinja and DuckDB (the
size and time of their files). Any edit or upgrade starts an empty store, so a stale text is never served.
It is one JSON file per code fingerprint in `$REVETL_CACHE_DIR` (default `$XDG_CACHE_HOME/revetl`, else
`~/.cache/revetl`), read once per process, written atomically at exit when it grew (merged with what other
processes wrote meanwhile); files of other code untouched for a week are deleted. A store that cannot be
read or written is no store: the text is rendered every time, nothing fails. `REVETL_CACHE_DIR=""` turns
it off.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["remember", "store_path"]

MAX_ENTRIES = 5000  # a store holds at most this many texts (the oldest go first)
STALE_SECONDS = 7 * 24 * 3600  # another code's store untouched this long is deleted
_CODE = ("sqlglot", "jinja2", "duckdb")  # besides revetl: the packages whose output or checks are stored


def remember(kind: str, dialect: str, parts: object, render: Callable[[], str]) -> str:
    """The text stored for (`kind`, `dialect`, `parts`), or `render()`'s, stored for next time."""
    return _STORE.get(kind, dialect, parts, render)


def store_path() -> Path | None:
    """The store's file for this code, or None when the store is off."""
    return _STORE.path()


class _Store:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._file: Path | None = None
        self._entries: dict[str, str] | None = None  # None: not read yet
        self._new: dict[str, str] = {}
        self._off = False

    def path(self) -> Path | None:
        if self._file is None and not self._off:
            directory = _directory()
            if directory is None:
                self._off = True
            else:
                self._file = directory / f"sql-{_fingerprint()}.json"
        return self._file

    def get(self, kind: str, dialect: str, parts: object, render: Callable[[], str]) -> str:
        key = hashlib.sha256(repr((kind, dialect, parts)).encode()).hexdigest()[:40]
        with self._lock:
            text = self._read().get(key)
        if text is not None:
            return text
        text = render()
        with self._lock:
            if self.path() is not None:
                if not self._new:
                    atexit.register(self.write)
                self._read()[key] = self._new[key] = text
        return text

    def _read(self) -> dict[str, str]:
        if self._entries is None:
            file = self.path()
            self._entries = _load(file) if file is not None else {}
        return self._entries

    def write(self) -> None:
        """Merge what this process rendered into the file (atomically); errors are ignored."""
        with self._lock:
            file, new = self.path(), dict(self._new)
            self._new.clear()
        if file is None or not new:
            return
        try:
            entries = {**_load(file), **new}
            if len(entries) > MAX_ENTRIES:
                entries = dict(list(entries.items())[-MAX_ENTRIES:])
            file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            temporary = file.with_name(f".{file.name}.{os.getpid()}.tmp")
            # the user's own: an audience's SQL is the analyst's business logic
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as out:
                json.dump(entries, out)
            temporary.replace(file)
            _prune(file)
        except OSError:
            return


def _directory() -> Path | None:
    configured = os.environ.get("REVETL_CACHE_DIR")
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "revetl"


def _load(file: Path) -> dict[str, str]:
    try:
        entries = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _prune(current: Path) -> None:
    limit = time.time() - STALE_SECONDS
    for other in current.parent.glob("sql-*.json"):
        try:
            if other != current and other.stat().st_mtime < limit:
                other.unlink()
        except OSError:
            continue


def _fingerprint(package: Path = Path(__file__).resolve().parents[1]) -> str:
    """Of the code that renders: each file of revetl's `package`, and the first file of sqlglot, Jinja and
    DuckDB (a pip upgrade rewrites it), by path, size and modification time."""
    digest = hashlib.sha256()
    for folder, _, files in sorted(os.walk(package)):
        for name in sorted(files):
            if name.endswith(".py"):
                _add(digest, os.path.join(folder, name))
    for package in _CODE:
        spec = importlib.util.find_spec(package)
        _add(digest, spec.origin if spec is not None and spec.origin else package)
    return digest.hexdigest()[:20]


def _add(digest: Any, path: str) -> None:
    try:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    except OSError:
        digest.update(f"{path}\0missing\n".encode())


_STORE = _Store()
