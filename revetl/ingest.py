"""`revetl ingest`: JSON lines of Segment/RudderStack payloads -> landed Parquet, record by record.

Each file is streamed line by line (gzip is recognised by its magic bytes, whatever the name), so
memory is bounded by one chunk of rows, never by the file. Every line is checked on its own: a
line over `MAX_EVENT_BYTES`, invalid JSON, or a payload `events.normalize` refuses is rejected
with its file, line number and a one-sentence reason, and the good lines around it still land.
Accepted rows land through `landing.write_table` every `chunk_rows` rows; each chunk is atomic, so
a crash or `kill -9` leaves only complete files, and ingesting the file again is harmless
(duplicate message ids are dropped by the `events` model).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from revetl import landing
from revetl.config import Project
from revetl.errors import InvalidEvent
from revetl.events import MAX_EVENT_BYTES, normalize

__all__ = ["IngestReport", "Reject", "ingest_files", "print_report"]

CHUNK_ROWS = 50_000
MAX_REJECT_DETAILS = 1000  # all rejects are counted; only this many are kept for the report
SHOWN_REJECTS = 20
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Reject:
    """One record left out: where it was and why. Line 0 means the file itself could not be read."""

    file: Path
    line: int
    reason: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else str(self.file)


@dataclass(frozen=True)
class IngestReport:
    """What one `ingest_files` call did; `rejects` holds the first MAX_REJECT_DETAILS of `rejected`."""

    accepted: int
    rejected: int
    files_written: tuple[Path, ...]
    rejects: tuple[Reject, ...]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def ingest_files(
    project: Project,
    files: list[Path],
    *,
    clock: Callable[[], dt.datetime] = _utc_now,
    chunk_rows: int = CHUNK_ROWS,
) -> IngestReport:
    """Land every valid line of `files`; reject the others with file, line and reason.

    `clock` gives the receipt time used for payloads without `receivedAt`.
    """
    landing.sweep_temporary(project.landing_dir)
    accepted = rejected = 0
    rejects: list[Reject] = []
    written: list[Path] = []
    rows: list[dict[str, Any]] = []

    for path in map(Path, files):
        for line_no, row_or_reason in _records(path, clock):
            if isinstance(row_or_reason, str):
                rejected += 1
                if len(rejects) < MAX_REJECT_DETAILS:
                    rejects.append(Reject(path, line_no, row_or_reason))
                continue
            rows.append(row_or_reason)
            if len(rows) >= chunk_rows:
                written += landing.write_rows(project.landing_dir, rows, prefix="ingest")
                accepted += len(rows)
                rows = []
    written += landing.write_rows(project.landing_dir, rows, prefix="ingest")
    accepted += len(rows)
    return IngestReport(accepted, rejected, tuple(written), tuple(rejects))


def _records(path: Path, clock: Callable[[], dt.datetime]) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, landing row or reject reason) for each non-blank line of one file."""
    line_no = 0
    try:
        with _open(path) as handle:
            for line_no, body, size in _lines(handle):
                if body is not None and not body.strip():
                    continue  # blank lines carry no event; exports often end with one
                try:
                    yield line_no, _parse(body, size, clock())
                except InvalidEvent as exc:
                    yield line_no, exc.reason
    except (OSError, EOFError, zlib.error) as exc:
        # A missing file, or a gzip stream that is corrupt or cut short: what was read still lands.
        what = "cannot read the file" if line_no == 0 else "cannot read past this line"
        yield (line_no + 1 if line_no else 0), f"{what}: {getattr(exc, 'strerror', None) or exc}"


def _open(path: Path) -> IO[bytes]:
    handle = open(path, "rb")
    if handle.read(2) == _GZIP_MAGIC:
        handle.close()
        return gzip.open(path, "rb")
    handle.seek(0)
    return handle


def _lines(handle: IO[bytes]) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, line without its ending or None when too long, size in bytes).

    Reads at most MAX_EVENT_BYTES + a little per call, so one huge line cannot exhaust memory:
    the rest of an over-long line is skipped and only counted.
    """
    limit = MAX_EVENT_BYTES + 3  # room for "\r\n" after a line of exactly the limit
    line_no = 0
    while line := handle.readline(limit):
        line_no += 1
        if line.endswith(b"\n") or len(line) < limit:
            body = line.rstrip(b"\r\n")
            yield line_no, body, len(body)
            continue
        size = len(line)
        while not line.endswith(b"\n"):
            line = handle.readline(1 << 20)
            if not line:
                break
            size += len(line)
        yield line_no, None, size - (len(line) - len(line.rstrip(b"\r\n")))


def _parse(body: bytes | None, size: int, received_at: dt.datetime) -> dict[str, Any]:
    if body is None or size > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event is {size} bytes, over the {MAX_EVENT_BYTES}-byte limit")
    try:
        # Decode first: json.loads on bytes would also guess UTF-16/32, which no export writes.
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidEvent("line is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"invalid JSON: {exc.msg.lower()} at column {exc.colno}") from None
    except ValueError as exc:  # e.g. an integer longer than Python's 4300-digit limit
        raise InvalidEvent(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise InvalidEvent("invalid JSON: nested too deeply") from None
    return normalize(payload, received_at=received_at, raw_size=size)


def print_report(report: IngestReport, console: Console) -> None:
    """A table of the first rejects, then one summary line."""
    if report.rejects:
        shown = report.rejects[:SHOWN_REJECTS]
        table = Table(title=f"Rejected records (first {len(shown)} of {report.rejected:,})", title_justify="left")
        table.add_column("file:line", style="cyan", no_wrap=True)
        table.add_column("reason")
        for reject in shown:
            # Text, not str: reasons quote user data, which may contain rich [markup].
            table.add_row(Text(reject.where), Text(reject.reason))
        console.print(table)
    files = len(report.files_written)
    summary = Text(
        f"{report.accepted:,} {_plural(report.accepted, 'event')} landed in {files:,} {_plural(files, 'file')}; "
    )
    summary.append(f"{report.rejected:,} rejected", style="bold red" if report.rejected else "green")
    console.print(summary)


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"
