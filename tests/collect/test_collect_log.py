"""The write-ahead log, the duplicate filter, and recovery at every point a crash can hit (no server)."""

from __future__ import annotations

import datetime as dt
import errno
import os
import struct
import threading
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from revetl.collect import log as log_module
from revetl.collect.dedupe import RecentIds
from revetl.collect.log import EventLog, encode_rows, list_segments, read_records
from revetl.collect.roller import PREFIX, land_segment, payloads_to_table, recover
from revetl.errors import CollectError
from revetl.landing.parquet import write_table

DAY1 = dt.datetime(2026, 5, 1, 23, 59, tzinfo=dt.timezone.utc)
DAY2 = dt.datetime(2026, 5, 2, 0, 1, tzinfo=dt.timezone.utc)


def pq_ids(landing: Path) -> list[str]:
    """Message ids of every landed Parquet file."""
    files = sorted(landing.glob("*/*.parquet"))
    return [mid for path in files for mid in pq.read_table(path)["message_id"].to_pylist()]


def row(message_id: str, received_at: dt.datetime = DAY1) -> dict[str, Any]:
    return {
        "message_id": message_id, "type": "track", "event": "Clicked", "anonymous_id": None, "user_id": "u",
        "group_id": None, "previous_id": None, "timestamp": received_at, "received_at": received_at,
        "properties": '{"a":1}', "traits": None, "context": None,
    }


class Recorder:
    """An on_commit callback that keeps what the writer thread reported."""

    def __init__(self) -> None:
        self.done: list[tuple[Any, str | None, BaseException | None]] = []
        self.calls = 0
        self.event = threading.Event()

    def __call__(self, done: list[Any]) -> None:
        self.done += done
        self.calls += 1
        self.event.set()

    def wait_for(self, count: int) -> None:
        while len(self.done) < count:
            assert self.event.wait(10)
            self.event.clear()


def write_segment(log_dir: Path, *records: list[dict[str, Any]]) -> str:
    """A closed segment holding these records, as a collector would leave it at a crash."""
    recorder = Recorder()
    event_log = EventLog(log_dir, recorder)
    event_log.start()
    for number, rows in enumerate(records):
        event_log.append(encode_rows(rows), number)
    recorder.wait_for(len(records))
    segment = event_log.segment
    event_log.close()
    return segment


def test_each_append_is_reported_durable_with_its_segment_and_rotation_starts_a_new_one(tmp_path: Path) -> None:
    recorder = Recorder()
    event_log = EventLog(tmp_path, recorder)
    event_log.start()
    first = event_log.segment
    threads = [threading.Thread(target=event_log.append, args=(encode_rows([row(f"m{i}")]), i)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    event_log.rotate("rotation")
    event_log.append(encode_rows([row("after")]), "after")
    recorder.wait_for(22)
    event_log.close()

    by_token = {token: (segment, error) for token, segment, error in recorder.done}
    assert all(by_token[i] == (first, None) for i in range(20))
    assert by_token["rotation"] == ((first,), None)  # the names of the segments it closed
    second = by_token["after"][0]
    assert second > first  # names sort in creation order
    assert recorder.calls <= 22  # concurrent appends shared fsyncs
    assert list_segments(tmp_path) == [first, second]
    records, torn = read_records(tmp_path / f"{first}.log")
    assert len(records) == 20 and torn == 0


def test_closing_an_empty_segment_deletes_it(tmp_path: Path) -> None:
    event_log = EventLog(tmp_path, Recorder())
    event_log.start()
    event_log.close()
    assert list_segments(tmp_path) == []


def test_a_failed_fsync_fails_that_append_and_the_next_write_goes_to_a_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    event_log = EventLog(tmp_path, recorder)
    event_log.start()
    event_log.append(encode_rows([row("before")]), "before")
    recorder.wait_for(1)
    first = event_log.segment

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(log_module, "_datasync", broken)
    event_log.append(encode_rows([row("a")]), "a")
    recorder.wait_for(2)
    assert event_log.failure is not None and event_log.segment == "" and event_log.sealed == [first]
    monkeypatch.undo()
    event_log.append(encode_rows([row("b")]), "b")  # the disk works again: no restart needed
    recorder.wait_for(3)
    assert event_log.failure is None
    event_log.rotate("rotation")
    recorder.wait_for(4)
    event_log.close()

    outcome = {token: (segment, error) for token, segment, error in recorder.done}
    segment_a, error_a = outcome["a"]
    assert segment_a is None and isinstance(error_a, CollectError) and error_a.status == 503
    assert "Input/output error" in str(error_a)
    second, error_b = outcome["b"]
    assert error_b is None and second > first
    assert outcome["rotation"] == ((first, second), None)  # the sealed segment is handed over to land
    # What was acknowledged before the failure is intact; the failed record was never acknowledged
    # (its bytes may be there: a client's retry makes a duplicate, which is dropped downstream).
    records, _ = read_records(tmp_path / f"{first}.log")
    assert payloads_to_table(records[:1])["message_id"].to_pylist() == ["before"]
    (record_b,), torn = read_records(tmp_path / f"{second}.log")
    assert payloads_to_table([record_b])["message_id"].to_pylist() == ["b"] and torn == 0


def test_a_write_that_fails_in_a_fresh_segment_deletes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(log_module, "_datasync", full)
    recorder = Recorder()
    event_log = EventLog(tmp_path, recorder)
    event_log.start()
    for attempt in range(5):  # a client retrying while the disk is full
        event_log.append(encode_rows([row("x")]), attempt)
    recorder.wait_for(5)
    event_log.close()
    assert all(error is not None for _, _, error in recorder.done)
    assert list_segments(tmp_path) == [] and event_log.sealed == []  # nothing acknowledged: no file kept


def test_a_torn_last_record_is_ignored_and_the_records_before_it_recovered(tmp_path: Path) -> None:
    log_dir, landing = tmp_path / "log", tmp_path / "events"
    segment = write_segment(log_dir, [row("a1"), row("a2")], [row("b1")])
    torn = struct.pack("<II", 500, 0) + encode_rows([row("c1")])[:40]  # the crash hit mid-record
    with open(log_dir / f"{segment}.log", "ab") as handle:
        handle.write(torn)
    report = recover(landing, log_dir, RecentIds(100))
    assert report.torn_bytes == len(torn)
    assert sorted(pq_ids(landing)) == ["a1", "a2", "b1"]
    assert list_segments(log_dir) == []


def test_recovery_lands_a_segment_once_even_after_a_crash_between_rename_and_delete(tmp_path: Path) -> None:
    log_dir, landing = tmp_path / "log", tmp_path / "events"
    segment = write_segment(log_dir, [row("x1"), row("x2")])
    # The roll wrote the Parquet file under the segment's name, then the process died.
    write_table(landing, payloads_to_table([encode_rows([row("x1"), row("x2")])]), prefix=f"{PREFIX}-{segment}")
    report = recover(landing, log_dir, RecentIds(0))  # even with no duplicate filter at all
    assert report.events == 0
    assert sorted(pq_ids(landing)) == ["x1", "x2"]
    assert list_segments(log_dir) == []


def test_recovery_of_a_segment_spanning_midnight_lands_only_the_missing_day(tmp_path: Path) -> None:
    log_dir, landing = tmp_path / "log", tmp_path / "events"
    segment = write_segment(log_dir, [row("d1", DAY1), row("d2", DAY2)])
    # The roll landed the first day's file and died before the second.
    write_table(landing, payloads_to_table([encode_rows([row("d1", DAY1)])]), prefix=f"{PREFIX}-{segment}")
    report = recover(landing, log_dir, RecentIds(0))
    assert report.events == 1
    assert sorted(pq_ids(landing)) == ["d1", "d2"]
    partitions = sorted(p.parent.name for p in landing.glob("*/*.parquet"))
    assert partitions == ["received_date=2026-05-01", "received_date=2026-05-02"]


def test_recovery_replays_segments_in_order_and_drops_ids_already_landed(tmp_path: Path) -> None:
    log_dir, landing = tmp_path / "log", tmp_path / "events"
    older = write_segment(log_dir, [row("old")])
    land_segment(landing, log_dir, older, payloads_to_table([encode_rows([row("old")])]))
    write_segment(log_dir, [row("p1"), row("old")])  # "old" was resent and logged again
    write_segment(log_dir, [row("p2"), row("p1")])
    stray = landing / "received_date=2026-05-01" / f".{PREFIX}-{list_segments(log_dir)[0]}-x.parquet.tmp"
    stray.write_bytes(b"half a file")
    recent = RecentIds(100)
    report = recover(landing, log_dir, recent)
    assert (report.segments, report.events, report.duplicates) == (2, 2, 2)
    assert sorted(pq_ids(landing)) == ["old", "p1", "p2"]
    assert not stray.exists()
    assert all(message_id in recent for message_id in ("old", "p1", "p2"))


def test_recent_ids_forget_the_oldest_beyond_capacity() -> None:
    recent = RecentIds(3)
    assert recent.add_new(["a", "b", "a", "c"]) == [0, 1, 3]
    assert recent.add("d") is True
    assert "a" not in recent and "d" in recent
    assert recent.add("b") is False
    recent.forget(["b"])
    assert recent.add("b") is True
    assert RecentIds(0).add_new(["x", "x"]) == [0, 1]  # a window of 0 turns the filter off


def test_segments_are_private_to_the_collector(tmp_path: Path) -> None:
    segment = write_segment(tmp_path, [row("s")])
    assert oct(os.stat(tmp_path / f"{segment}.log").st_mode & 0o777) == "0o600"
