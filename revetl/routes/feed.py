"""Reading the collector's write-ahead log from a route's position: what every route is fed from.

The collector (`revetl/collect/log.py`) appends each request's rows as one CRC-framed record to the
open segment of its log directory and answers 200 only once the record is fsync'd. When the project
has routes, a segment it has rolled into Parquet is moved to `<log dir>/routes/log/` instead of being
deleted (`remove_segment(..., keep)`), so the log itself is every route's durable backlog: a route
only keeps a position in it, and a slow route holds nothing but disk.

A position is (segment, byte offset of a record, row within it); segment names sort in creation order.
A segment is read while it is written: a record not yet whole is not read (its frame does not check
out) until it is. The collector opens a new segment only after it stopped writing the previous one,
so once a newer segment exists, whatever the older one holds is all it will ever hold (a torn tail
after a crash is skipped). The feed reads what the collector wrote; a record whose fsync failed was
answered 503 and its client retries it, so at worst a destination sees it twice under one messageId.
"""

from __future__ import annotations

import struct
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from revetl.collect.log import SUFFIX
from revetl.governance.door import BLOCKED_KEY
from revetl.records import HEADER_SIZE
from revetl.routes.mapping import event_of

__all__ = ["LogFeed", "Position", "RecordCache", "segments_in"]

_HEADER = struct.Struct("<II")


class RecordCache:
    """The last records parsed (as events), by (segment, offset): routes near the head of the log share them
    instead of each parsing every record. Events are shared: nothing downstream changes them in place."""

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._records: OrderedDict[tuple[str, int], tuple[list[dict[str, Any]], int]] = OrderedDict()

    def get(self, segment: str, offset: int) -> tuple[list[dict[str, Any]], int] | None:
        return self._records.get((segment, offset))

    def put(self, segment: str, offset: int, events: list[dict[str, Any]], next_offset: int) -> None:
        self._records[(segment, offset)] = (events, next_offset)
        if len(self._records) > self.capacity:
            self._records.popitem(last=False)


@dataclass(frozen=True, order=True)
class Position:
    """Where a route stands in the log: the next row it has not finished with."""

    segment: str
    offset: int = 0
    index: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"segment": self.segment, "offset": self.offset, "index": self.index}


def segments_in(*directories: Path) -> list[str]:
    """Segment names in any of `directories`, oldest first."""
    names: set[str] = set()
    for directory in directories:
        if directory.is_dir():
            names.update(p.stem for p in directory.glob(f"*{SUFFIX}") if not p.name.startswith("."))
    return sorted(names)


class LogFeed:
    """Rows of the collector's log, one at a time, from a position on."""

    def __init__(self, log_dir: Path, kept_dir: Path, start: Position | None,
                 cache: RecordCache | None = None) -> None:
        self.cache = cache or RecordCache()  # shared by the routes of one router: each record parsed once
        self.log_dir = Path(log_dir)
        self.kept_dir = Path(kept_dir)
        self.position = start  # the next row to hand out; None: the oldest segment there is
        self._handle: BinaryIO | None = None
        self._rows: list[dict[str, Any]] = []  # the rows of the record at `position`
        self._next_offset = 0  # where the record after it starts
        self.skipped: list[str] = []  # segments that were gone before they could be read

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def path(self, segment: str) -> Path | None:
        for directory in (self.log_dir, self.kept_dir):
            candidate = directory / f"{segment}{SUFFIX}"
            if candidate.exists():
                return candidate
        return None

    def next(self) -> tuple[dict[str, Any], Position] | None:
        """The next row and the position after it, or None when the log holds nothing more yet."""
        if not self._rows and not self._load_record():
            return None
        assert self.position is not None
        here = self.position
        row = self._rows[here.index]
        if here.index + 1 < len(self._rows):
            self.position = Position(here.segment, here.offset, here.index + 1)
        else:
            self._rows = []
            self.position = Position(here.segment, self._next_offset, 0)
        return row, self.position

    def _load_record(self) -> bool:
        """Read the record at `position` into `_rows` (moving to newer segments as needed); False if none yet."""
        while True:
            if self.position is None:
                names = segments_in(self.log_dir, self.kept_dir)
                if not names:
                    return False
                self.position = Position(names[0])
            if self._handle is None and not self._open():
                if not self._advance():
                    return False
                continue
            cached = self.cache.get(self.position.segment, self.position.offset)
            if cached is not None:
                rows, self._next_offset = cached
                if not rows:
                    self.position = Position(self.position.segment, self._next_offset, 0)
                    continue
                self._rows = rows
                if self.position.index >= len(rows):
                    self._rows, self.position = [], Position(self.position.segment, self._next_offset, 0)
                    continue
                return True
            payload = self._frame()
            if payload is None:
                # Nothing whole at the end of this segment: wait, unless a newer segment exists (then
                # this one is finished; read once more, as it may have been finished meanwhile).
                if not any(name > self.position.segment for name in segments_in(self.log_dir, self.kept_dir)):
                    return False
                payload = self._frame()
                if payload is None:
                    if not self._advance():
                        return False
                    continue
            # rows a tracking plan blocked travel the log to the quarantine, never to a destination
            rows = [event_of(row) for row in orjson.loads(payload) if not row.get(BLOCKED_KEY)]
            self.cache.put(self.position.segment, self.position.offset, rows, self._next_offset)
            if not rows:
                self.position = Position(self.position.segment, self._next_offset, 0)
                continue
            self._rows = rows
            if self.position.index >= len(rows):  # a stale index: the record was finished
                self._rows, self.position = [], Position(self.position.segment, self._next_offset, 0)
                continue
            return True

    def _open(self) -> bool:
        assert self.position is not None
        path = self.path(self.position.segment)
        if path is None:
            return False
        try:
            self._handle = open(path, "rb")  # noqa: SIM115 - held open across calls while the segment grows
        except FileNotFoundError:  # moved between the look and the open: look again
            path = self.path(self.position.segment)
            if path is None:
                return False
            self._handle = open(path, "rb")  # noqa: SIM115
        return True

    def _advance(self) -> bool:
        """Go on to the next newer segment; False when there is none yet."""
        assert self.position is not None
        newer = [name for name in segments_in(self.log_dir, self.kept_dir) if name > self.position.segment]
        if not newer:
            return False
        if self._handle is None:
            self.skipped.append(self.position.segment)
        self.close()
        self.position = Position(newer[0])
        return True

    def _frame(self) -> bytes | None:
        """The whole record at `position.offset`, or None (nothing, or not whole yet)."""
        assert self._handle is not None and self.position is not None
        self._handle.seek(self.position.offset)
        header = self._handle.read(HEADER_SIZE)
        if len(header) < HEADER_SIZE:
            return None
        length, crc = _HEADER.unpack(header)
        payload = self._handle.read(length)
        if len(payload) != length or zlib.crc32(payload) != crc:
            return None
        self._next_offset = self.position.offset + HEADER_SIZE + length
        return payload

    def backlog_bytes(self) -> int:
        """Bytes of the log from the position to its end: how far behind the route is."""
        total = 0
        for name in segments_in(self.log_dir, self.kept_dir):
            if self.position is not None and name < self.position.segment:
                continue
            path = self.path(name)
            try:
                size = path.stat().st_size if path is not None else 0
            except FileNotFoundError:
                size = 0
            here = self.position
            total += size - (here.offset if here is not None and name == here.segment else 0)
        return max(0, total)
