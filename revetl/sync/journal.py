"""A sync run's journal: what the destination answered, batch by batch, in a file beside the warehouse.

A run writes `<work_dir>/syncs/<sync>/<started>-<run_id>.journal` while it sends. Each answered
batch is appended (its acknowledged and its rejected rows) and made durable before the worker that
sent it takes the next batch, so a kill at any moment loses at most the batches that were in flight:
at most `concurrency` batches are sent again by the next run, never an acknowledged one. The
warehouse is not held while sending: the journal is folded into the state tables in one short
transaction when the run ends, or by the next run if this one died (`state.apply_journal`).

Why a file and not the warehouse: an embedded DuckDB file admits one writing process at a time, so a
sync that wrote its acknowledgements there would lock out every other sync, plan, preview and build
for its whole run.

Format: records (`revetl/records.py`) `length (u32 LE) | CRC-32 (u32 LE) | JSON`; the first is the header
`{"run_id", "sync"}`, then one `{"acks": [ops, keys, row_hashes, payloads, dest_refs],
"rejects": [[op, key, reason, payload], ...]}` per batch (acknowledgements by column: they are
read back into Arrow columns, in chunks, so folding a million of them needs neither a million
Python tuples nor their memory), and last, when the run could end properly,
`{"end": status, "message": ...}`. A torn or corrupt record ends the file (a crash mid-write):
what precedes it is intact, and that batch was never counted as acknowledged.

Concurrent workers share one fdatasync (group commit in a writer thread), as the collector's log does.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from revetl.errors import StateError
from revetl.records import frame, read_frames
from revetl.runtime import SYSTEM, Clock

if TYPE_CHECKING:
    import concurrent.futures
    import pyarrow as pa

__all__ = [
    "ACK_COLUMNS",
    "JournalContents",
    "JournalWriter",
    "ack_chunks",
    "journal_dir",
    "journal_run",
    "new_journal_path",
    "pending_journals",
    "read_journal",
    "scan",
]

SUFFIX = ".journal"
CHUNK_ROWS = 100_000
# One acknowledged row, as Arrow columns of text but `seq`, which orders the rows of several journals (the
# later acknowledgement of a key wins).
ACK_COLUMNS = ("op", "key", "row_hash", "payload", "dest_ref", "seq")


@functools.cache
def ack_schema() -> pa.Schema:
    """The Arrow schema of acknowledged rows."""
    import pyarrow as pa  # loaded when journals are read or written: a run with nothing to send needs none

    return pa.schema([(name, pa.int64() if name == "seq" else pa.string()) for name in ACK_COLUMNS])

Ack = Sequence[Any]  # (op, key, row_hash, payload, dest_ref)
Reject = Sequence[Any]  # (op, key, reason, payload)


def journal_dir(work_dir: Path, sync: str) -> Path:
    """Where a sync's journals (and the plan file of its run in progress) live."""
    return work_dir / "syncs" / sync


def pending_journals(work_dir: Path, sync: str) -> list[Path]:
    """Journals of the sync not folded into the warehouse yet, oldest run first."""
    directory = journal_dir(work_dir, sync)
    return sorted(directory.glob(f"*{SUFFIX}")) if directory.is_dir() else []


@dataclass
class JournalContents:
    """What a journal says about its run: the run, how many rows of each operation the destination
    acknowledged, the rows it rejected, and how the run ended. The acknowledged rows themselves are
    read in Arrow chunks by `ack_chunks`."""

    path: Path
    run_id: str | None = None
    counts: tuple[int, int, int] = (0, 0, 0)  # acknowledged (adds, changes, removes)
    rejects: list[tuple] = field(default_factory=list)
    status: str | None = None  # written by a run that could end properly; None after a crash
    message: str | None = None

    @property
    def acknowledged(self) -> int:
        return sum(self.counts)


def _records(path: Path) -> Iterator[dict[str, Any]]:
    """The intact records of a journal, in order, read one at a time (never a whole journal in memory)."""
    return map(orjson.loads, read_frames(path))


def read_journal(path: Path) -> JournalContents:
    """Read what a journal says about its run, up to its first torn record."""
    contents = JournalContents(path)
    for _ in scan(path, contents, chunks=False):
        pass
    return contents


def journal_run(path: Path) -> str | None:
    """The run a journal belongs to, from its first record alone."""
    return next((record.get("run_id") for record in _records(path)), None)


def scan(path: Path, contents: JournalContents, rows: int = CHUNK_ROWS, chunks: bool = True) -> Iterator[pa.Table]:
    """One pass over a journal: yields its acknowledged rows as Arrow tables of `ack_schema()` of about
    `rows` (unless `chunks` is false), and fills `contents` as it goes: complete once exhausted."""
    columns: list[list[Any]] = [[] for _ in range(5)]
    counts = {"add": 0, "change": 0, "remove": 0}
    seq = 0
    for record in _records(path):
        if "run_id" in record:
            contents.run_id = record["run_id"]
        elif "end" in record:
            contents.status, contents.message = record["end"], record.get("message")
        else:
            acks = record.get("acks")
            if acks and acks[0]:
                for op in acks[0]:
                    counts[op] += 1
                if chunks:
                    for column, values in zip(columns, acks):
                        column += values
            contents.rejects += map(tuple, record.get("rejects", ()))
            if len(columns[0]) >= rows:
                yield _table(columns, seq)
                seq += len(columns[0])
                columns = [[] for _ in range(5)]
        contents.counts = (counts["add"], counts["change"], counts["remove"])
    if columns[0]:
        yield _table(columns, seq)


def ack_chunks(paths: Sequence[Path], rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
    """The acknowledged rows of `paths` (oldest run first), as Arrow tables of `ack_schema()` of about `rows`;
    `seq` goes on across the files, so a later acknowledgement of a key sorts after an earlier one."""
    import pyarrow as pa

    seq = 0
    for path in paths:
        for chunk in scan(path, JournalContents(path), rows):
            yield chunk.set_column(5, "seq", pa.array(range(seq, seq + chunk.num_rows), pa.int64()))
            seq += chunk.num_rows


def _table(columns: list[list[Any]], first_seq: int) -> pa.Table:
    import pyarrow as pa

    arrays = [pa.array(values, pa.string()) for values in columns]
    return pa.Table.from_arrays([*arrays, pa.array(range(first_seq, first_seq + len(columns[0])), pa.int64())],
                                schema=ack_schema())


class JournalWriter:
    """Appends to one run's journal from a writer thread; `await write(...)` returns once it is durable.

    A failed write (a full disk) fails that call and every later one with StateError: the engine
    stops, and what was written before stays valid."""

    def __init__(self, path: Path, sync: str, run_id: str, durable: bool = True) -> None:
        self.path = path
        self._durable = durable
        self._queue: queue.SimpleQueue[tuple[bytes, concurrent.futures.Future] | None] = queue.SimpleQueue()
        self.failure: StateError | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise self._error(exc) from None
        self._thread = threading.Thread(target=self._run, name=f"revetl-journal-{sync}", daemon=True)
        self._thread.start()
        self._submit(orjson.dumps({"run_id": run_id, "sync": sync})).result()

    def _error(self, exc: OSError) -> StateError:
        return StateError(f"could not write the sync journal {self.path}: {exc.strerror or exc}")

    def _submit(self, payload: bytes) -> concurrent.futures.Future:
        from concurrent.futures import Future  # loaded by a run that sends (a cron line's no-op run writes no journal)

        future: concurrent.futures.Future = Future()
        if self.failure is not None:
            future.set_exception(self.failure)
        else:
            self._queue.put((frame(payload), future))
        return future

    async def write(self, acks: Sequence[Ack], rejects: Sequence[Reject] = ()) -> None:
        """Append one answered batch (acknowledged rows `(op, key, row_hash, payload, dest_ref)`, rejected
        rows `(op, key, reason, payload)`); returns once it is on disk."""
        columns = list(zip(*acks)) if acks else []
        await self._written(orjson.dumps({"acks": columns, "rejects": rejects}))

    async def write_acknowledged(self, rows: Sequence[Any]) -> None:
        """Append a batch acknowledged whole, given as the plan's rows (named tuples with the fields `op,
        key, payload, row_hash, dest_ref`, as `destinations.Row`): the usual batch, one transposition and
        no copy."""
        columns = dict(zip(rows[0]._fields, zip(*rows)))
        acks = [columns[name] for name in ("op", "key", "row_hash", "payload", "dest_ref")]
        await self._written(orjson.dumps({"acks": acks, "rejects": ()}))

    async def _written(self, payload: bytes) -> None:
        import asyncio  # loaded already by the event loop this runs in (not by every importer of the journal)

        await asyncio.wrap_future(self._submit(payload))

    def end(self, status: str, message: str | None) -> None:
        """Append how the run ended (read by the fold, and by the next run if the fold cannot happen now)."""
        future = self._submit(orjson.dumps({"end": status, "message": message}))
        try:
            future.result()
        except StateError:
            pass  # the run's outcome is still recorded in the warehouse if it can be; the acks are what matter

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            batch = [item]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            pending = [entry for entry in batch if entry is not None]
            if pending:
                try:
                    self._write(pending)
                except BaseException as exc:  # noqa: BLE001 - never leave a waiter hanging on a dead thread
                    self.failure = self.failure or StateError(f"the sync journal {self.path} failed: {exc!r}")
                    for _, future in pending:
                        if not future.done():
                            future.set_exception(self.failure)
            if stop:
                return

    def _write(self, pending: list[tuple[bytes, concurrent.futures.Future]]) -> None:
        # A batch whose worker was cancelled meanwhile is written all the same (its destination has
        # applied it): only nobody waits for the answer. After this, its future can no longer be cancelled.
        waiting = [future for _, future in pending if future.set_running_or_notify_cancel()]
        if self.failure is None:
            try:
                data = memoryview(b"".join(frame for frame, _ in pending))
                while data:
                    data = data[os.write(self._fd, data):]
                if self._durable:
                    (getattr(os, "fdatasync", None) or os.fsync)(self._fd)
            except OSError as exc:
                # What was written before stays readable (records are framed); nothing after this counts.
                self.failure = self._error(exc)
        for future in waiting:
            if self.failure is not None:
                future.set_exception(self.failure)
            else:
                future.set_result(None)


def new_journal_path(directory: Path, run_id: str, clock: Clock = SYSTEM) -> Path:
    """A fresh journal name in a sync's `journal_dir`: names sort in the order runs started."""
    return directory / f"{int(clock.time() * 1e9):020d}-{run_id}{SUFFIX}"
