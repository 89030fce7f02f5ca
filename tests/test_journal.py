"""A sync run's journal: durable batches, a torn tail ignored, cancelled waiters, a full disk."""

from __future__ import annotations

import asyncio
import os

import pytest

from revetl.errors import StateError
from revetl.sync.journal import JournalWriter, ack_chunks, read_journal


def acks(path) -> list[tuple]:
    return [tuple(row.values())[:5] for chunk in ack_chunks([path]) for row in chunk.to_pylist()]


def test_batches_and_the_end_read_back_and_a_torn_tail_is_ignored(tmp_path):
    path = tmp_path / "run.journal"
    writer = JournalWriter(path, "people", "run-1")
    asyncio.run(writer.write([("add", "u1", "h1", '{"a":1}', None)]))
    asyncio.run(writer.write([("change", "u2", "h2", '{"a":2}', "ref-2")], [("add", "u3", "bad email", '{"a":3}')]))
    writer.end("failed", "braze answered 401")
    writer.close()
    with open(path, "ab") as handle:  # a crash in the middle of the next record
        handle.write(b"\x40\x00\x00\x00\x01\x02")
    contents = read_journal(path)
    assert contents.run_id == "run-1"
    assert acks(path) == [("add", "u1", "h1", '{"a":1}', None), ("change", "u2", "h2", '{"a":2}', "ref-2")]
    assert contents.rejects == [("add", "u3", "bad email", '{"a":3}')]
    assert (contents.status, contents.message) == ("failed", "braze answered 401")
    assert contents.counts == (1, 1, 0)


def test_a_batch_whose_worker_was_cancelled_is_still_written_and_the_journal_goes_on(tmp_path):
    path = tmp_path / "run.journal"
    writer = JournalWriter(path, "people", "run-1")

    async def cancel_while_waiting() -> None:
        task = asyncio.ensure_future(writer.write([("add", "u1", "h1", "{}", None)]))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await writer.write([("add", "u2", "h2", "{}", None)])  # the writer thread is alive

    asyncio.run(cancel_while_waiting())
    writer.end("cancelled", "stopped by Ctrl-C")
    writer.close()
    assert [ack[1] for ack in acks(path)] == ["u1", "u2"]


def test_a_full_disk_fails_that_write_and_every_later_one_in_one_sentence(tmp_path):
    path = tmp_path / "run.journal"
    writer = JournalWriter(path, "people", "run-1")
    asyncio.run(writer.write([("add", "u1", "h1", "{}", None)]))
    full = os.open("/dev/full", os.O_WRONLY)  # every write there fails with ENOSPC
    os.dup2(full, writer._fd)
    os.close(full)
    for key in ("u2", "u3"):
        with pytest.raises(StateError, match=r"could not write the sync journal .*: No space left on device$"):
            asyncio.run(writer.write([("add", key, "h", "{}", None)]))
    writer.end("failed", "no space")  # does not raise: the acknowledged rows are what matter
    writer.close()
    assert [ack[1] for ack in acks(path)] == ["u1"]


def test_acknowledgements_of_several_journals_stream_in_chunks_in_order(tmp_path):
    paths = []
    for run in range(3):
        path = tmp_path / f"{run}.journal"
        writer = JournalWriter(path, "people", f"run-{run}", durable=False)
        for start in range(0, 250, 50):
            asyncio.run(writer.write([("add", f"u{run}-{i}", "h", "{}", None) for i in range(start, start + 50)]))
        writer.close()
        paths.append(path)
    chunks = list(ack_chunks(paths, rows=200))
    assert [chunk.num_rows for chunk in chunks] == [200, 50] * 3  # at most `rows`, per journal
    table = [row for chunk in chunks for row in chunk.to_pylist()]
    assert [row["seq"] for row in table] == list(range(750))
    assert table[0]["key"] == "u0-0" and table[-1]["key"] == "u2-249"
