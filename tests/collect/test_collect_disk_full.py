"""A real `revetl collect` on a real, small disk (tmpfs) that fills up and is freed again.

The write-ahead log and the landing directory share the disk, as they do under `data/`. The
collector must answer 503 while it cannot make events durable, come back by itself once there is
room (no restart), land every acknowledged event exactly once, and say on SIGTERM what is true.
"""

from __future__ import annotations

import collections
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from disk import fill, small_disk

pytestmark = pytest.mark.slow

OPTIONS = ("--flush-seconds", "3600", "--flush-events", "1000000", "--workers", "0")


def batch_of(tag: str, n: int) -> list[dict[str, Any]]:
    return [{"type": "track", "event": "Clicked", "userId": f"u-{i % 7}", "messageId": f"{tag}-{i}",
             "properties": {"i": i, "pad": "p" * 100}} for i in range(n)]


def send(url: str, key: str, events: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(url + "/v1/batch", json={"batch": events, "writeKey": key}, timeout=30)


def health(url: str) -> httpx.Response:
    return httpx.get(url + "/health", timeout=30)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.1)


def test_after_a_full_disk_the_collector_recovers_by_itself_and_lands_every_acknowledged_event_once(
    collector_factory: Any, keys: dict[str, str], tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk", size_kib=4096) as disk:
        collector = collector_factory(*OPTIONS, data=disk)
        assert send(collector.url, keys["web"], batch_of("before", 50)).status_code == 200
        ballast = fill(disk)

        refused = send(collector.url, keys["web"], batch_of("during", 50))
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "No space left on device" in refused.json()["message"]
        degraded = health(collector.url)
        assert degraded.status_code == 503 and degraded.json()["status"] == "degraded"
        assert "No space left on device" in degraded.json()["error"]

        ballast.unlink()  # the operator frees space; nobody restarts the collector
        wait_for(lambda: health(collector.url).status_code == 200, 30, "/health to be ok again")
        assert send(collector.url, keys["web"], batch_of("during", 50)).status_code == 200  # the SDK's retry
        assert send(collector.url, keys["web"], batch_of("after", 50)).status_code == 200

        assert collector.stop(signal.SIGTERM) == 0
        copies = collections.Counter(row["message_id"] for row in collector.landed())
        expected = {f"{tag}-{i}" for tag in ("before", "during", "after") for i in range(50)}
        assert set(copies) == expected and set(copies.values()) == {1}
        assert not list(collector.log_dir.glob("*.log"))
        assert collector.lines()[-1]["msg"] == "revetl collect stopped; every acknowledged event is in Parquet"


def test_sigterm_on_a_full_disk_says_how_many_acknowledged_events_wait_in_the_log_and_the_next_start_lands_them(
    collector_factory: Any, keys: dict[str, str], tmp_path: Path
) -> None:
    with small_disk(tmp_path / "disk", size_kib=4096) as disk:
        collector = collector_factory(*OPTIONS, data=disk)
        for n in range(3):
            assert send(collector.url, keys["server"], batch_of(f"acked-{n}", 500)).status_code == 200
        ballast = fill(disk)

        assert collector.stop(signal.SIGTERM) == 1  # not everything reached Parquet: say so, and exit non-zero
        last = collector.lines()[-1]
        assert last["level"] == "error"
        assert last["msg"] == (
            f"revetl collect stopped; 1,500 acknowledged events are still only in the write-ahead log in "
            f"{collector.log_dir} (could not write Parquet: No space left on device); the next start lands them"
        )
        assert collector.landed() == []

        still_full = collector_factory(*OPTIONS, data=disk, base=tmp_path, expect_start=False)
        assert still_full.process.wait(timeout=120) == 1
        [message] = [line for line in still_full.log_path.read_text().splitlines() if line.strip()]
        assert message.startswith("error: cannot start: the events a previous run left in the write-ahead log")
        assert "No space left on device" in message and "make room and start again" in message

        ballast.unlink()
        restarted = collector_factory(*OPTIONS, data=disk, base=tmp_path)
        (recovered,) = [line for line in restarted.lines() if line["msg"].startswith("recovered")]
        assert recovered["events"] == 1500
        assert restarted.stop(signal.SIGTERM) == 0
        copies = collections.Counter(row["message_id"] for row in restarted.landed())
        assert len(copies) == 1500 and set(copies.values()) == {1}
