"""The collector's write-ahead log: append-only segment files, fsync'd before a request is answered.

A request is acknowledged (HTTP 200) only once its rows are in a segment on disk. The roller later
turns a closed segment into Parquet and deletes it; a segment still on disk at start-up is replayed
(`roller.recover`). So every acknowledged event reaches Parquet, whatever moment a crash hits.

Layout: `<log_dir>/<time_ns>-<random>.log`; names sort in creation order and are never reused.
A record (`revetl/records.py`) is `length (u32 LE) | CRC-32 (u32 LE) | payload`, the payload being one request's landing
rows as a JSON array. A crash mid-write leaves a torn or corrupt last record; reading stops there,
and that record was never acknowledged.

Group commit: a single writer thread writes and fsyncs everything queued since its last fsync, so
concurrent requests share one fsync. `on_commit` is called from that thread with the outcome of
every operation it finished.

A failed write or fsync (a full disk, an I/O error) fails the requests of that group commit, and
after it the segment's state is unknown: it is sealed (closed, never written again; the records
acknowledged before were fsync'd and stay valid, a torn tail is ignored by `read_records`) and the
next write goes to a new segment. So the log recovers by itself once the disk has room again;
`failure` holds the last error until a write succeeds, and `retry_at` says when to try again.
"""

from __future__ import annotations

import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from revetl.errors import CollectError
from revetl.landing.events import LANDING_SCHEMA
from revetl.landing.parquet import fsync_dir
from revetl.records import HEADER_SIZE, frame, read_frames

__all__ = [
    "Done",
    "EventLog",
    "encode_rows",
    "select_rows",
    "tag_source",
    "list_segments",
    "read_records",
    "remove_segment",
]

SUFFIX = ".log"
_FIRST = LANDING_SCHEMA.names[0]
_APPEND, _ROTATE, _STOP = 0, 1, 2

# (token given to append/rotate, segment name(s) or None, error or None): an append reports its
# segment, a rotation the tuple of segments it closed (oldest first).
Done = tuple[Any, "str | tuple[str, ...] | None", "BaseException | None"]
RETRY_SECONDS = 1.0  # after a failed write, requests get 503 for this long before the next attempt


def encode_rows(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Landing rows -> one record payload: a compact JSON array of row objects, `message_id` first.

    Timestamps are written as RFC 3339 text. `message_id` leading every object is what lets
    `roller.payloads_to_table` split the array into JSON lines without parsing it.
    """
    if rows and next(iter(rows[0])) != _FIRST:
        rows = [{name: row.get(name) for name in LANDING_SCHEMA.names} for row in rows]
    return orjson.dumps(rows)


def select_rows(payload: bytes, keep: Sequence[int]) -> bytes:
    """The record payload holding only the rows at positions `keep` (duplicates dropped)."""
    rows = orjson.loads(payload)
    return orjson.dumps([rows[index] for index in keep])


def tag_source(payload: bytes, source: str) -> bytes:
    """A record payload whose every row also names its `_source` (read by routes, ignored by the roller).

    Byte surgery like `roller.payloads_to_table`: a row ends where the next row's `{"message_id":` starts."""
    if len(payload) <= 2:
        return payload
    tag = b',"_source":' + orjson.dumps(source)
    row_break = b'},{"' + _FIRST.encode() + b'":'
    return payload[:-2].replace(row_break, tag + row_break) + tag + b"}]"


def list_segments(directory: Path) -> list[str]:
    """Names of the segments in `directory`, oldest first."""
    if not directory.is_dir():
        return []
    return sorted(path.stem for path in directory.glob(f"*{SUFFIX}") if not path.name.startswith("."))


def read_records(path: Path) -> tuple[list[bytes], int]:
    """The intact record payloads of a segment, and the byte count of any torn tail after them."""
    records = list(read_frames(path))
    return records, path.stat().st_size - sum(HEADER_SIZE + len(record) for record in records)


def remove_segment(directory: Path, name: str, keep: Path | None = None) -> None:
    """Delete a segment that has been rolled into Parquet, durably; or, when routes read the log
    (`keep`, revetl/routes/feed.py), move it there for them instead."""
    path = directory / f"{name}{SUFFIX}"
    if keep is not None and path.exists():
        keep.mkdir(parents=True, exist_ok=True)
        os.replace(path, keep / path.name)
        fsync_dir(keep)
    else:
        path.unlink(missing_ok=True)
    fsync_dir(directory)


class EventLog:
    """The append side of the log: one open segment, one writer thread doing group commits."""

    def __init__(self, directory: Path, on_commit: Callable[[list[Done]], None], sync: bool = True) -> None:
        self.directory = Path(directory)
        self._on_commit = on_commit
        self._sync = sync
        self._queue: queue.SimpleQueue[tuple[int, bytes | None, Any]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="revetl-collect-log", daemon=True)
        self._fd = -1
        self._size = 0
        self._acknowledged = False  # a write to the open segment succeeded (its records were acknowledged)
        self._last_name = 0
        self.segment = ""  # the open segment ("" while none is open, after a failure)
        self.sealed: list[str] = []  # segments closed by a failure, not yet reported by a rotation
        self.failure: BaseException | None = None
        self.retry_at = 0.0  # time.monotonic() before which writing is not tried again

    def start(self) -> None:
        """Open a fresh segment and start the writer thread."""
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._open_segment()
        except OSError as exc:  # e.g. a full disk: answer 503 until a later write succeeds
            self._seal(exc)
        self._thread.start()

    def append(self, payload: bytes, token: Any) -> None:
        """Queue one record; `on_commit` reports `(token, segment, error)` once it is on disk."""
        self._queue.put((_APPEND, payload, token))

    def rotate(self, token: Any) -> None:
        """Close the open segment after everything queued before and start a new one; reports
        `(token, closed, None)`, `closed` being every segment closed since the last rotation."""
        self._queue.put((_ROTATE, None, token))

    def close(self) -> None:
        """Write what is queued, close the segment (deleting it if empty) and stop the thread."""
        if self._thread.is_alive():
            self._queue.put((_STOP, None, None))
            self._thread.join()

    # -- writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            ops = [self._queue.get()]
            while True:
                try:
                    ops.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            done: list[Done] = []
            frames: list[bytes] = []
            tokens: list[Any] = []
            for kind, payload, token in ops:
                if stopping:  # queued after close(): nothing will write it
                    if kind != _STOP:
                        done.append((token, None, CollectError("the collector is stopping", 503, "stopping")))
                    continue
                if kind == _APPEND:
                    frames.append(frame(payload))
                    tokens.append(token)
                    continue
                done += self._write(frames, tokens)
                frames, tokens = [], []
                if kind == _ROTATE:
                    done.append(self._rotate(token))
                else:
                    stopping = True
                    self._close_segment()
            done += self._write(frames, tokens)
            if done:
                self._on_commit(done)

    def _write(self, frames: list[bytes], tokens: list[Any]) -> list[Done]:
        if not tokens:
            return []
        try:
            if self._fd < 0:
                self._open_segment()
            data = memoryview(b"".join(frames))
            while data:
                written = os.write(self._fd, data)
                data = data[written:]
                self._size += written
            if self._sync:
                _datasync(self._fd)
        except OSError as exc:
            self._seal(exc)
            error = CollectError(
                f"the write-ahead log could not be written ({_describe(exc)}); retry shortly", 503, "log_failed"
            )
            return [(token, None, error) for token in tokens]
        self.failure = None
        self._acknowledged = True
        return [(token, self.segment, None) for token in tokens]

    def _seal(self, exc: OSError) -> None:
        """After a failed write or fsync: close the segment for good; the next write opens a new one.

        A segment that acknowledged nothing is deleted at once (so retrying on a full disk does not
        pile up files); one that did is kept for the next roll, which lands its records.
        """
        self.failure = exc
        self.retry_at = time.monotonic() + RETRY_SECONDS
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass  # the descriptor is released either way
            self._fd = -1
        if self.segment and self._acknowledged:
            self.sealed.append(self.segment)
        elif self.segment:
            try:
                remove_segment(self.directory, self.segment)
            except OSError:
                pass  # left for the next start, which lands nothing from it
        self.segment = ""

    def _rotate(self, token: Any) -> Done:
        closed, self.sealed = self.sealed, []
        if self._fd >= 0:
            closed.append(self.segment)
            self._close_segment(delete_if_empty=False)
            self.segment = ""
        try:
            self._open_segment()
        except OSError as exc:
            self._seal(exc)  # the next append tries again
        return (token, tuple(closed), None)

    def _open_segment(self) -> None:
        # Names sort in creation order even if the wall clock steps back.
        self._last_name = max(time.time_ns(), self._last_name + 1)
        name = f"{self._last_name:020d}-{secrets.token_hex(4)}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        self._fd = os.open(self.directory / f"{name}{SUFFIX}", flags, 0o600)
        self._size = 0
        self._acknowledged = False
        self.segment = name
        if self._sync:
            fsync_dir(self.directory)  # the new file's name must survive a crash too

    def _close_segment(self, delete_if_empty: bool = True) -> None:
        if self._fd < 0:
            return
        try:
            os.close(self._fd)
        except OSError:
            pass  # the descriptor is released either way; what was fsync'd is on disk
        self._fd = -1
        if delete_if_empty and self._size == 0:
            try:
                remove_segment(self.directory, self.segment)
            except OSError:
                pass  # an empty segment left behind is harmless: recovery lands nothing from it


def _datasync(fd: int) -> None:
    (getattr(os, "fdatasync", None) or os.fsync)(fd)


def _describe(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
