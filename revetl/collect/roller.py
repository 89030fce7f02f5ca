"""Rolling write-ahead log segments into Parquet, exactly once, and recovering after a crash.

A segment's rows land as `received_date=YYYY-MM-DD/collect-<segment>-....parquet` (atomically, via
`revetl.landing.parquet`), and only then is the segment deleted. The Parquet file's name is the record of
what was landed: a crash after the rename but before the delete leaves both, and recovery sees the
segment's file for that date and does not land those rows again.

`recover` runs at start-up, before the collector listens: it replays every segment left on disk in
creation order, lands what is missing, and seeds the duplicate filter with the ids it just landed
and the ids of the newest collector files, so that a client retrying a batch it never saw
acknowledged is not landed twice.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from revetl.collect.dedupe import RecentIds
from revetl.collect.log import SUFFIX, list_segments, read_records, remove_segment
from revetl.governance.door import BLOCKED_KEY
from revetl.governance.quarantine import divert
from revetl.landing.events import LANDING_SCHEMA
from revetl.landing.parquet import write_table

__all__ = ["PREFIX", "Recovery", "land_segment", "landed_dates", "payloads_to_table", "recover", "seed_recent"]

PREFIX = "collect"

# The landing columns, and the mark of a row a tracking plan blocked (governance/door.py).
_PARSE = pa_json.ParseOptions(explicit_schema=LANDING_SCHEMA.append(pa.field(BLOCKED_KEY, pa.bool_())),
                              unexpected_field_behavior="ignore")
# Between two row objects of a record (`[{"message_id":...},{"message_id":...}]`). Inside a JSON
# string a quote is always escaped, so this byte sequence only ever occurs between rows.
_ROW_BREAK = b'},{"' + LANDING_SCHEMA.names[0].encode() + b'":'
_LINE_BREAK = b'}\n{"' + LANDING_SCHEMA.names[0].encode() + b'":'


def payloads_to_table(payloads: Sequence[bytes]) -> pa.Table:
    """Log record payloads (`log.encode_rows`) -> an Arrow table of LANDING_SCHEMA.

    The arrays become JSON lines by byte replacement and Arrow's JSON reader parses them, outside
    the GIL: rolling does not stall the event loop that answers requests.
    """
    lines = [payload[1:-1].replace(_ROW_BREAK, _LINE_BREAK) for payload in payloads if len(payload) > 2]
    if not lines:
        return LANDING_SCHEMA.empty_table()
    return pa_json.read_json(io.BytesIO(b"\n".join(lines)), parse_options=_PARSE)


def landed_dates(landing_dir: Path, segment: str) -> set[str]:
    """The `received_date` partitions that already hold this segment's Parquet file."""
    pattern = f"received_date=*/{PREFIX}-{segment}-*.parquet"
    return {path.parent.name.partition("=")[2] for path in Path(landing_dir).glob(pattern)}


def land_segment(landing_dir: Path, log_dir: Path, segment: str, table: pa.Table, keep: Path | None = None
                 ) -> list[Path]:
    """Write a closed segment's rows as Parquet (dates not landed yet), then delete the segment (or
    hand it to the routes: `keep`); rows a tracking plan blocked go to the quarantine instead (once,
    named after the segment too)."""
    table = divert(landing_dir, table, prefix=f"{PREFIX}-{segment}")
    done = landed_dates(landing_dir, segment)
    if done and table.num_rows:
        table = table.filter(pc.invert(pc.is_in(_dates(table), pa.array(sorted(done)))))
    written = write_table(landing_dir, table, prefix=f"{PREFIX}-{segment}") if table.num_rows else []
    remove_segment(log_dir, segment, keep)
    return written


@dataclass
class Recovery:
    """What start-up recovery found and landed."""

    segments: int = 0
    events: int = 0
    duplicates: int = 0
    torn_bytes: int = 0
    files: list[Path] = field(default_factory=list)


def recover(landing_dir: Path, log_dir: Path, recent: RecentIds, routes_log: Path | None = None) -> Recovery:
    """Land every acknowledged event still in the log (oldest segment first), once; segments then go
    to `routes_log` when routes read them."""
    seed_recent(landing_dir, recent)
    report = Recovery()
    for segment in list_segments(log_dir):
        for stray in Path(landing_dir).glob(f"received_date=*/.{PREFIX}-{segment}-*.tmp"):
            stray.unlink(missing_ok=True)  # a Parquet write this segment's crash interrupted
        records, torn = read_records(log_dir / f"{segment}{SUFFIX}")
        table = payloads_to_table(records)
        done = landed_dates(landing_dir, segment)
        keep = []
        for message_id, date in zip(table.column("message_id").to_pylist(), _dates(table).to_pylist()):
            fresh = recent.add(message_id)
            if date in done:
                keep.append(False)  # landed before the crash, with its segment's name
            else:
                keep.append(fresh)
                report.duplicates += not fresh
        table = table.filter(pa.array(keep, type=pa.bool_())) if table.num_rows else table
        report.files += land_segment(landing_dir, log_dir, segment, table, routes_log)
        report.segments += 1
        report.events += table.num_rows
        report.torn_bytes += torn
    return report


def seed_recent(landing_dir: Path, recent: RecentIds) -> int:
    """Fill the duplicate filter from the newest collector Parquet files; returns ids read."""
    if recent.capacity <= 0:
        return 0
    files = sorted(Path(landing_dir).glob(f"received_date=*/{PREFIX}-*.parquet"), key=lambda p: p.name, reverse=True)
    newest_first: list[str] = []
    for path in files:
        try:
            ids = pq.read_table(path, columns=["message_id"]).column(0).to_pylist()
        except (OSError, pa.ArrowException):
            continue  # unreadable files are `revetl build`'s to report, not a reason not to start
        newest_first.extend(reversed(ids))
        if len(newest_first) >= recent.capacity:
            break
    recent.update(reversed(newest_first[: recent.capacity]))
    return min(len(newest_first), recent.capacity)


def _dates(table: pa.Table) -> pa.Array:
    """Each row's `received_date` partition value, as `revetl.landing.parquet` computes it."""
    return pc.strftime(table["received_at"], format="%Y-%m-%d").combine_chunks()
