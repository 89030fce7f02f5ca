"""Structured log lines: one JSON object per line on stderr (start-up, access, rolls, errors).

Every line has `time` (UTC, ISO-8601), `level` and `msg`; the rest are fields a log pipeline can
index. Write keys never reach this module: requests are logged by their source name.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
from typing import Any, TextIO

import orjson

__all__ = ["LogLines"]


class LogLines:
    """Writes log lines to `stream` (stderr by default); `access=False` silences per-request lines."""

    def __init__(self, stream: TextIO | None = None, access: bool = True) -> None:
        self._stream = stream
        self.access_enabled = access
        self.dropped = 0  # lines that could not be written
        self._lock = threading.Lock()

    def emit(self, level: str, msg: str, **fields: Any) -> None:
        """Write one line; values that are not JSON (paths, datetimes) are written as text."""
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")
        record = {"time": now, "level": level, "msg": msg}
        record.update(fields)
        try:
            line = orjson.dumps(record, default=str).decode() + "\n"
        except TypeError:  # text orjson refuses (a lone surrogate): json escapes it as \udXXX
            line = json.dumps(record, default=str) + "\n"
        stream = self._stream or sys.stderr
        with self._lock:  # rolls log from a worker thread
            try:
                stream.write(line)
                stream.flush()
            except OSError:
                # stderr on a full disk (or a closed pipe) must not stop requests or rolls: the
                # line is lost, and counted.
                self.dropped += 1

    def info(self, msg: str, **fields: Any) -> None:
        self.emit("info", msg, **fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self.emit("warning", msg, **fields)

    def error(self, msg: str, **fields: Any) -> None:
        self.emit("error", msg, **fields)

    def access(self, **fields: Any) -> None:
        """One line per HTTP request (method, path, status, source, events, duration)."""
        if self.access_enabled:
            self.emit("info", "request", **fields)
