"""What a route keeps on disk: its cursor, its dead letters and its counters.

Everything lives in `<collector log dir>/routes/<NAME>/`:

    cursor          the position (routes/feed.py) before which every row was delivered, dead-lettered or
                    filtered out, written after each acknowledged batch, so a kill -9 resends at most the
                    batches in flight. Two fixed slots of `SLOT` bytes written in place in turn (one
                    `pwrite`, no rename: a rename costs milliseconds here), each `sequence | CRC | JSON`;
                    the valid slot with the higher sequence wins, so a torn write leaves the other.
                    fsync'd at least every second and whenever it moves to a newer segment, before the
                    router deletes any segment behind it.
    dead/*.jsonl    one line per event the route gave up on: `{"route", "reason", "dead_at", "row"}` (the
                    landing row), fsync'd before the cursor moves past it. `revetl routes replay NAME
                    --dead-letters` sends them again; `revetl routes dead-letters NAME` lists them.
    status.json     the counters (`Counters`), rewritten every second: read by `revetl routes status`
                    and the collector's `/health`.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import struct
import time
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from revetl.landing.parquet import fsync_dir
from revetl.routes.feed import Position

SLOT = 512  # bytes of one cursor slot: a segment name and two numbers fit many times over
_SLOT_HEAD = struct.Struct("<QII")  # sequence, CRC-32 of the JSON, its length

__all__ = ["Counters", "RouteStore", "all_statuses", "now_text", "read_statuses", "routes_state_dir"]


def routes_state_dir(log_dir: Path) -> Path:
    """`<log dir>/routes`: the routes' state beside the collector's log (its `log/` holds landed segments)."""
    return Path(log_dir) / "routes"


@dataclass
class Counters:
    """A route's counters since its router started (totals) and now (backlog, lag, state)."""

    delivered: int = 0  # events the destination acknowledged
    retried: int = 0  # requests sent again (429, 5xx, timeouts, a held route)
    filtered: int = 0  # events the route's sources, types, names or condition left out
    unsupported: int = 0  # events of a call the destination has no form for (e.g. an alias to Amplitude)
    dead_lettered: int = 0
    batches: int = 0
    backlog_bytes: int = 0
    lag_p50_ms: float | None = None  # from the collector's receipt to the destination's acknowledgement
    lag_p99_ms: float | None = None
    state: str = "starting"  # running | retrying | stopped
    error: str | None = None  # the last failure while `retrying`
    since: str | None = None
    updated_at: str | None = None
    lags: deque[float] = field(default_factory=lambda: deque(maxlen=20_000), repr=False)

    def observe(self, lags_ms: Sequence[float]) -> None:
        self.lags.extend(lags_ms)

    def snapshot(self) -> dict[str, Any]:
        ordered = sorted(self.lags)
        if ordered:
            self.lag_p50_ms = round(ordered[len(ordered) // 2], 1)
            self.lag_p99_ms = round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1)
        self.updated_at = now_text()
        return {k: v for k, v in asdict(self).items() if k != "lags"}


def now_text() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _write_atomic(path: Path, data: bytes, durable: bool) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        if durable:
            handle.flush()
            os.fsync(handle.fileno())
    os.replace(temporary, path)
    if durable:
        fsync_dir(path.parent)


class RouteStore:
    """One route's directory: cursor, dead letters, status."""

    DURABLE_EVERY_S = 1.0

    def __init__(self, root: Path, name: str) -> None:
        self.directory = Path(root) / name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.durable: Position | None = None  # the cursor as last fsync'd (what segment clean-up trusts)
        self._synced_at = 0.0
        self._fd = -1
        self._sequence = 0
        self.durable = self.cursor()

    def cursor(self) -> Position | None:
        """The last cursor written (None: the route never delivered anything)."""
        try:
            data = (self.directory / "cursor").read_bytes()
        except FileNotFoundError:
            return None
        best: tuple[int, Position] | None = None
        for start in (0, SLOT):
            slot = data[start:start + SLOT]
            if len(slot) < _SLOT_HEAD.size:
                continue
            sequence, crc, length = _SLOT_HEAD.unpack_from(slot)
            body = slot[_SLOT_HEAD.size:_SLOT_HEAD.size + length]
            if length and len(body) == length and zlib.crc32(body) == crc and (best is None or sequence > best[0]):
                raw = orjson.loads(body)
                best = sequence, Position(raw["segment"], int(raw["offset"]), int(raw["index"]))
        self._sequence = best[0] if best else 0
        return best[1] if best else None

    def save_cursor(self, position: Position) -> None:
        """Record `position`; fsync'd when it reaches a newer segment or a second has passed."""
        moved = self.durable is None or position.segment != self.durable.segment
        durable = moved or time.monotonic() - self._synced_at >= self.DURABLE_EVERY_S
        if self._fd < 0:
            self._fd = os.open(self.directory / "cursor", os.O_RDWR | os.O_CREAT, 0o600)
            fsync_dir(self.directory)
        self._sequence += 1
        body = orjson.dumps(position.as_json())
        record = _SLOT_HEAD.pack(self._sequence, zlib.crc32(body), len(body)) + body
        os.pwrite(self._fd, record.ljust(SLOT, b"\0"), SLOT * (self._sequence % 2))
        if durable:
            os.fsync(self._fd)
            self.durable, self._synced_at = position, time.monotonic()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def dead_letter(self, rows: Sequence[dict[str, Any]], reasons: Sequence[str]) -> None:
        """Keep events the route gives up on, durably, each with why."""
        if not rows:
            return
        folder = self.directory / "dead"
        folder.mkdir(exist_ok=True)
        now = now_text()
        lines = b"".join(orjson.dumps({"route": self.name, "reason": reason, "dead_at": now, "row": row}) + b"\n"
                         for row, reason in zip(rows, reasons))
        path = folder / f"{time.time_ns():020d}-{secrets.token_hex(3)}.jsonl"
        _write_atomic(path, lines, durable=True)

    def dead_letters(self) -> Iterator[dict[str, Any]]:
        for path in sorted((self.directory / "dead").glob("*.jsonl")):
            for line in path.read_bytes().splitlines():
                yield orjson.loads(line)

    def clear_dead_letters(self, through: Sequence[Path]) -> None:
        for path in through:
            path.unlink(missing_ok=True)

    def dead_letter_files(self) -> list[Path]:
        return sorted((self.directory / "dead").glob("*.jsonl"))

    def write_status(self, status: dict[str, Any]) -> None:
        _write_atomic(self.directory / "status.json", orjson.dumps(status), durable=False)


def all_statuses(root: Path) -> dict[str, dict[str, Any]]:
    """Every route's last status under `root` (for the collector's `/health`)."""
    names = sorted(path.parent.name for path in Path(root).glob("*/status.json"))
    return {name: status for name, status in read_statuses(root, names).items() if status is not None}


def read_statuses(root: Path, names: Sequence[str]) -> dict[str, dict[str, Any] | None]:
    """Each route's last status (None for a route no router has run yet)."""
    found: dict[str, dict[str, Any] | None] = {}
    for name in names:
        try:
            found[name] = orjson.loads((Path(root) / name / "status.json").read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            found[name] = None
    return found
