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
from collections.abc import Callable, Generator, Iterator
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from revetl.landing import parquet as landing
from revetl.config import Project
from revetl.errors import InvalidEvent, LandingError
from revetl.governance.gate import BLOCKED, violations_of
from revetl.landing.events import MAX_EVENT_BYTES, normalize

__all__ = ["IngestReport", "Reject", "ingest_files", "print_report"]

CHUNK_ROWS = 50_000
MAX_REJECT_DETAILS = 1000  # all rejects are counted; only this many are kept for the report
SHOWN_REJECTS = 20
_GZIP_MAGIC = b"\x1f\x8b"
_BLOCK = 1 << 20
_BLANK = frozenset(b" \t\n\r\x0b\x0c")  # what bytes.isspace() counts
_BLOCKED = "_blocked"  # marks a row a tracking plan blocked, on its way from _records to the quarantine
_FLAG = '"violationErrors"'  # in the context of a row landed with violations
Judge = Callable[[dict[str, Any], "str | None", Any], str]


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
    flagged: int = 0  # landed with tracking-plan violations listed (revetl/governance/)
    quarantined: int = 0  # blocked by a tracking plan: in the quarantine, not landed
    quarantine_files: tuple[Path, ...] = ()
    violations: dict[str, int] = field(default_factory=dict)  # by kind, in the flagged and blocked events


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def ingest_files(
    project: Project,
    files: list[Path],
    *,
    clock: Callable[[], dt.datetime] = _utc_now,
    chunk_rows: int = CHUNK_ROWS,
    source: str | None = None,
) -> IngestReport:
    """Land every valid line of `files`; reject the others with file, line and reason.

    `clock` gives the receipt time used for payloads without `receivedAt`. `source` names where the
    events come from: the tracking plan governing it judges each event (revetl/governance/).
    """
    from revetl.governance import project_gate

    landing.sweep_temporary(project.landing_dir)
    gate = project_gate(project)
    judge = gate.judge if gate.governs(source) else None
    accepted = rejected = flagged = 0
    rejects: list[Reject] = []
    written: list[Path] = []
    rows: list[dict[str, Any]] = []
    held = Held(project.landing_dir)
    kinds: Counter[str] = Counter()

    for path in map(Path, files):
        for line_no, row_or_reason in _records(path, clock, judge, source):
            if isinstance(row_or_reason, str):
                rejected += 1
                if len(rejects) < MAX_REJECT_DETAILS:
                    rejects.append(Reject(path, line_no, row_or_reason))
                continue
            if judge is not None and _FLAG in (row_or_reason["context"] or ""):
                kinds.update(error.get("type") for error in violations_of(row_or_reason["context"]))
                if row_or_reason.pop(_BLOCKED, False):
                    held.add(row_or_reason)
                    continue
                flagged += 1
            rows.append(row_or_reason)
            if len(rows) >= chunk_rows:
                written += _land(project, rows, accepted)
                accepted += len(rows)
                rows = []
    written += _land(project, rows, accepted)
    accepted += len(rows)
    held.flush()
    return IngestReport(accepted, rejected, tuple(written), tuple(rejects), flagged, held.count, tuple(held.files),
                        dict(kinds))


class Held:
    """Rows a tracking plan blocked, written to the quarantine a chunk at a time."""

    def __init__(self, landing_dir: Path) -> None:
        self.landing_dir = landing_dir
        self.rows: list[dict[str, Any]] = []
        self.count = 0
        self.files: list[Path] = []

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.count += 1
        if len(self.rows) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        from revetl.governance.quarantine import quarantine_rows

        if self.rows:
            self.files += quarantine_rows(self.landing_dir, self.rows, prefix="ingest")
            self.rows = []


def _land(project: Project, rows: list[dict[str, Any]], accepted: int) -> list[Path]:
    """Land one chunk; a LandingError also says what the earlier chunks landed and what to do."""
    try:
        return landing.write_rows(project.landing_dir, rows, prefix="ingest")
    except LandingError as exc:
        raise LandingError(
            f"{exc} and the {accepted:,} events landed before them stay; make room and run the same "
            "ingest again (the `events` model drops what lands twice)"
        ) from exc


def _records(
    path: Path, clock: Callable[[], dt.datetime], judge: Judge | None = None, source: str | None = None
) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, landing row or reject reason) for each line of one file that is not blank; a row a
    tracking plan blocked carries `_BLOCKED`."""
    line_no = 0
    try:
        with _open(path) as handle:
            for line_no, body, size in _lines(handle):
                try:
                    row, payload = _parse(body, size, clock())
                except InvalidEvent as exc:
                    yield line_no, exc.reason
                    continue
                if judge is not None and judge(row, source, payload) == BLOCKED:
                    row[_BLOCKED] = True
                yield line_no, row
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


def _lines(handle: IO[bytes], block: int = _BLOCK) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, line without its ending or None when too long, size in bytes) for each line
    that is not blank (blank lines carry no event; exports often end with one).

    The file is read `block` bytes at a time and split in place. Memory stays bounded by the block
    and the event size limit: the rest of an over-long line is skipped and only counted. A run of
    blank lines is skipped a window at a time, not line by line, so a gzip that expands to a
    gigabyte of newlines costs what reading it costs.
    """
    limit = MAX_EVENT_BYTES + 3  # room for "\r\n" after a line of exactly the limit
    buf, pos, line_no, eof = b"", 0, 0, False
    while True:
        end = buf.find(b"\n", pos)
        if end >= 0:
            line, pos = buf[pos:end], end + 1
            line_no += 1
            if line and not line.isspace():
                body = line.rstrip(b"\r")
                yield line_no, body, len(body)
            elif pos < len(buf) and buf[pos] in _BLANK:  # more blank lines may follow: skip them in bulk
                skipped, pos = _skip_blank_lines(buf, pos)
                line_no += skipped
            continue
        if len(buf) - pos > limit:  # no newline within the limit
            body = buf[pos:].rstrip(b"\r")
            if len(body) > MAX_EVENT_BYTES:  # an over-long line
                line_no += 1
                buf, pos, eof = yield from _over_long(handle, buf[pos:], block, line_no)
                continue
            buf, pos = body + b"\r", 0  # only carriage returns past the limit: they end the line, keep one
        if eof:
            if pos < len(buf) and not buf[pos:].isspace():  # a last line without a newline
                body = buf[pos:].rstrip(b"\r")
                yield line_no + 1, body, len(body)
            return
        more = handle.read(block)
        eof = not more
        buf, pos = buf[pos:] + more, 0


def _skip_blank_lines(buf: bytes, pos: int) -> tuple[int, int]:
    """(number of complete blank lines in `buf` from `pos`, the position after the last of them).

    Whitespace is found by `lstrip` over windows that double from 256 bytes, so a lone blank line
    costs a short window and a long run of them a few passes of C per megabyte.
    """
    skipped, window = 0, 256
    while pos < len(buf):
        chunk = buf[pos : pos + window]
        rest = chunk.lstrip()
        last = chunk.rfind(b"\n", 0, len(chunk) - len(rest)) + 1  # end of the last blank line in it
        if last:
            skipped += chunk.count(b"\n", 0, last)
            pos += last
        if rest or not last:  # content reached, or a blank line that ends beyond the window
            break
        window = min(window * 2, _BLOCK)
    return skipped, pos


def _over_long(
    handle: IO[bytes], start: bytes, block: int, line_no: int
) -> Generator[tuple[int, None, int], None, tuple[bytes, int, bool]]:
    """Read past an over-long line that begins with `start`; yields it (unless blank) as too long.

    Returns (the bytes after it, 0, end of file reached): where `_lines` carries on.
    """
    size, blank, rest, eof = len(start), start.isspace(), b"", False
    carriage_returns = len(start) - len(start.rstrip(b"\r"))  # at the end of what was counted
    while True:
        more = handle.read(block)
        if not more:
            eof = True
            break
        end = more.find(b"\n")
        part = more if end < 0 else more[:end]
        size += len(part)
        blank = blank and (not part or part.isspace())
        kept = len(part.rstrip(b"\r"))
        carriage_returns = carriage_returns + len(part) if kept == 0 else len(part) - kept
        if end >= 0:
            rest = more[end + 1 :]
            break
    size -= carriage_returns  # the line's ending is not part of its size
    if not blank:
        yield line_no, None, size
    return rest, 0, eof


def _parse(body: bytes | None, size: int, received_at: dt.datetime) -> tuple[dict[str, Any], Any]:
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
    return normalize(payload, received_at=received_at, raw_size=size), payload


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
    if report.flagged or report.quarantined:
        summary.append(f"; tracking plan: {report.flagged:,} landed with violations, ")
        summary.append(f"{report.quarantined:,} blocked into the quarantine", style="yellow" if report.quarantined else "")
    console.print(summary)


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"
