"""Where a generated day goes: landing Parquet (one atomic file per day) or wire-format JSON lines."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc

from revetl.landing import parquet as landing
from revetl.landing.events import LANDING_SCHEMA
from revetl.landing.generate.stream import COLUMNS, Day, Row, iso

__all__ = ["JsonlSink", "ParquetSink", "Sink"]

_quote = json.encoder.encode_basestring  # a JSON string literal, without the encoder's overhead


def _day_table(day: Day, prefix: str) -> pa.Table:
    """One day's rows as an Arrow table: on-time rows with ids and receipt times computed, then
    the late and re-sent ones."""
    arrays = dict(zip(COLUMNS, day.columns))
    count = len(day.columns[0])
    numbers = pa.array(range(day.first, day.first + count), pa.int64())
    ts = pa.array(arrays["timestamp"], pa.int64())
    latency = pc.add(pc.bit_wise_and(pc.multiply(numbers, 7919), 1023), 30)  # as receipt_latency()
    derived = {
        "message_id": pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers.cast(pa.string()), 12, "0"), ""),
        "timestamp": ts,
        "received_at": pc.add(ts, latency),
    }
    on_time = pa.table([
        _to_arrow(derived[field.name] if field.name in derived else arrays[field.name], field.type)
        for field in LANDING_SCHEMA
    ], schema=LANDING_SCHEMA)
    return pa.concat_tables([on_time, _rows_table(day.extras)]) if day.extras else on_time


def _rows_table(rows: list[Row]) -> pa.Table:
    columns = list(zip(*rows)) if rows else [[] for _ in LANDING_SCHEMA]
    return pa.table([_to_arrow(c, f.type) for c, f in zip(columns, LANDING_SCHEMA)], schema=LANDING_SCHEMA)


def _to_arrow(values: Any, type_: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(type_):  # epoch milliseconds -> the landing timestamp type
        values = values if isinstance(values, pa.Array) else pa.array(values, pa.int64())
        return values.cast(pa.timestamp("ms", tz="UTC")).cast(type_)
    return values if isinstance(values, pa.Array) else pa.array(values, type_)


class Sink:
    """Where the days go: `write` each day in order inside `with sink:`; `rows` and `files` count what was written."""

    rows = 0
    files: list[Path]

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def write(self, day: Day, prefix: str) -> None:
        raise NotImplementedError


class ParquetSink(Sink):
    """One Arrow table per chunk; one atomic file per day (each day is one received date)."""

    def __init__(self, landing_dir: Path) -> None:
        self.landing_dir = landing_dir
        self.files = []
        landing.sweep_temporary(landing_dir)

    def write(self, day: Day, prefix: str) -> None:
        # One received date (two when `end` is not midnight), so write_table makes one file.
        table = _day_table(day, prefix)
        self.files += landing.write_table(self.landing_dir, table, prefix="generated")
        self.rows += table.num_rows


class JsonlSink(Sink):
    """Wire-format JSON lines, as a Segment export writes them; gzipped when the name ends in .gz."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.files = [self.path]
        self.handle: IO[str] | None = None

    def __enter__(self) -> JsonlSink:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.suffix == ".gz":
            self.handle = gzip.open(self.path, "wt", encoding="utf-8")
        else:
            self.handle = open(self.path, "w", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()

    def write(self, day: Day, prefix: str) -> None:
        assert self.handle is not None, "use the sink as a context manager"
        self.handle.writelines(map(_wire_line, day.rows(prefix)))
        self.rows += len(day)


def _wire_line(row: Row) -> str:
    """One landing row back to the camelCase payload that normalize() turns into that row."""
    mid, kind, event, anon, user, group, previous, ts, received, props, traits, context = row
    parts = [f'{{"messageId":"{mid}","type":"{kind}"']
    if event is not None:
        parts.append(f',"{"name" if kind in ("page", "screen") else "event"}":{_quote(event)}')
    for key, value in (("anonymousId", anon), ("userId", user), ("groupId", group), ("previousId", previous)):
        if value is not None:
            parts.append(f',"{key}":{_quote(value)}')
    sent = max(ts, received - 25)  # a queued (late) event is sent just before it is received
    parts.append(f',"timestamp":"{iso(ts)}","sentAt":"{iso(sent)}","receivedAt":"{iso(received)}"')
    for key, value in (("properties", props), ("traits", traits), ("context", context)):
        if value is not None:
            parts.append(f',"{key}":{value}')
    parts.append("}\n")
    return "".join(parts)
