"""Durability of a real `revetl collect` process: a 200 means the events reach Parquet exactly once,
through SIGTERM, SIGKILL and restarts."""

from __future__ import annotations

import collections
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow


def batch_of(tag: str, n: int) -> list[dict[str, Any]]:
    return [{"type": "track", "event": "Clicked", "userId": f"u-{i % 7}", "messageId": f"{tag}-{i}",
             "properties": {"i": i}} for i in range(n)]


def send(url: str, key: str, events: list[dict[str, Any]]) -> int:
    response = httpx.post(url + "/v1/batch", json={"batch": events, "writeKey": key}, timeout=30)
    return response.status_code


class Senders:
    """Client threads sending batches back to back; they remember which batches got a 200."""

    def __init__(self, url: str, key: str, threads: int, batch: int, cycle: str) -> None:
        self.url, self.key, self.batch, self.cycle = url, key, batch, cycle
        self.acked: list[list[dict[str, Any]]] = []
        self.unacked: list[list[dict[str, Any]]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in range(threads)]

    def _run(self, thread: int) -> None:
        with httpx.Client(timeout=30) as client:
            sequence = 0
            while not self._stop.is_set():
                sequence += 1
                events = batch_of(f"{self.cycle}-t{thread}-r{sequence}", self.batch)
                try:
                    response = client.post(self.url + "/v1/batch", json={"batch": events, "writeKey": self.key})
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                with self._lock:
                    (self.acked if ok else self.unacked).append(events)
                if not ok:
                    return  # the collector is gone; the batch is retried after the restart

    def __enter__(self) -> Senders:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def acked_count(self) -> int:
        with self._lock:
            return sum(len(b) for b in self.acked)


def wait_for(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_sigkill_while_clients_send_loses_no_acknowledged_event_and_lands_none_twice(
    collector_factory: Any, keys: dict[str, str], tmp_path: Path
) -> None:
    options = ("--flush-seconds", "0.3", "--flush-events", "300", "--workers", "1")
    collector = collector_factory(*options)
    acked: list[list[dict[str, Any]]] = []
    retries: list[list[dict[str, Any]]] = []
    recovered = 0
    for cycle in ("first", "second"):
        with Senders(collector.url, keys["web"], threads=4, batch=40, cycle=cycle) as senders:
            # Kill while requests are in flight, after some rolls into Parquet have happened.
            wait_for(lambda s=senders, c=collector: s.acked_count() >= 2000 and c.landed())
            workers = collector.children()
            assert workers, "expected a parser worker process"
            collector.stop(signal.SIGKILL)
        acked += senders.acked
        retries += senders.unacked
        wait_for(lambda w=workers: not any(Path(f"/proc/{pid}").exists() for pid in w), timeout=10)

        collector = collector_factory(*options, base=tmp_path)  # restart on the same log and landing
        recovered += sum(line["events"] for line in collector.lines() if line["msg"].startswith("recovered"))
        for events in retries:  # what an SDK does with a batch it saw no 200 for
            assert send(collector.url, keys["web"], events) == 200
        acked += retries
        retries = []
    assert collector.stop() == 0

    copies = collections.Counter(row["message_id"] for row in collector.landed())
    acknowledged = {event["messageId"] for events in acked for event in events}
    assert len(acknowledged) > 4000
    missing = acknowledged - set(copies)
    assert not missing, f"{len(missing)} acknowledged events were lost"
    twice = {mid: n for mid, n in copies.items() if n > 1}
    assert not twice, f"{len(twice)} events landed more than once"
    assert not list(collector.log_dir.glob("*.log"))
    assert recovered > 0  # the kills did leave acknowledged events that only the log held


def test_sigterm_rolls_every_acknowledged_event_and_exits_zero(collector_factory: Any, keys: dict[str, str]) -> None:
    collector = collector_factory("--flush-seconds", "3600", "--flush-events", "1000000", "--workers", "0")
    for n in range(5):
        assert send(collector.url, keys["server"], batch_of(f"term-{n}", 30)) == 200
    assert collector.landed() == []  # nothing is due to roll for an hour
    assert collector.stop(signal.SIGTERM) == 0
    assert sorted(row["message_id"] for row in collector.landed()) == sorted(
        f"term-{n}-{i}" for n in range(5) for i in range(30)
    )
    assert not list(collector.log_dir.glob("*.log"))
    assert collector.lines()[-1]["msg"].startswith("revetl collect stopped")


def test_restart_lands_acknowledged_events_a_killed_collector_left_in_its_log(
    collector_factory: Any, keys: dict[str, str], tmp_path: Path
) -> None:
    collector = collector_factory("--flush-seconds", "3600", "--workers", "0")
    assert send(collector.url, keys["web"], batch_of("kill", 25)) == 200
    collector.stop(signal.SIGKILL)
    assert collector.landed() == []
    assert list(collector.log_dir.glob("*.log"))

    restarted = collector_factory("--flush-seconds", "3600", "--workers", "0", base=tmp_path)
    (recovered,) = [line for line in restarted.lines() if line["msg"].startswith("recovered")]
    assert recovered["events"] == 25
    assert sorted(row["message_id"] for row in restarted.landed()) == sorted(f"kill-{i}" for i in range(25))
    # A client that never saw the 200 resends: acknowledged, not landed twice.
    assert send(restarted.url, keys["web"], batch_of("kill", 25)) == 200
    assert restarted.stop() == 0
    assert len(restarted.landed()) == 25


def test_a_second_collector_on_the_same_log_is_refused(collector_factory: Any, tmp_path: Path) -> None:
    collector_factory("--workers", "0")
    second = collector_factory("--workers", "0", base=tmp_path, expect_start=False)
    assert second.process.wait(timeout=60) == 1
    assert "another revetl collect is already using" in second.log_path.read_text()
