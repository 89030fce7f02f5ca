"""Delivery through real sockets: a failing destination holds only its own route, nothing is lost when it
recovers, events past the backlog's age go to dead letters with the reason and are replayed from there, and
Amplitude's 400/413/429 answers are handled as its API documents."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from revetl.collect.lines import LogLines
from revetl.collect.log import EventLog, encode_rows, tag_source
from revetl.config import load_project
from revetl.emulators import running
from revetl.routes.replay import replay_route
from revetl.routes.router import Router, load_routes

pytestmark = pytest.mark.slow
SECRET = "delivery-test-secret-0123456789"
HOOK = """\
    types: [track]
    backlog: {max_age_hours: %s}
    destination: {type: webhook, base_url: "${HOOK_URL}", secret: "%s", unlimited: true, attempts: 2, timeout: 2}
"""
AMP = """\
    destination: {type: amplitude, base_url: "${AMP_URL}", api_key: "k-amp-test", batch_size: %d, unlimited: true}
"""


def rows(prefix: str, count: int, user: str = "user-00001", props: dict[str, Any] | None = None,
         received: dt.datetime | None = None) -> list[dict[str, Any]]:
    import orjson

    now = received or dt.datetime.now(dt.timezone.utc)
    return [{"message_id": f"{prefix}-{i:04d}", "type": "track", "event": "Clicked", "anonymous_id": None,
             "user_id": user.replace("#", f"{i:04d}"), "group_id": None, "previous_id": None, "timestamp": now, "received_at": now,
             "properties": orjson.dumps(props or {"n": i}).decode(), "traits": None, "context": None}
            for i in range(count)]


def write_log(log_dir: Path, *records: list[dict[str, Any]]) -> None:
    done = threading.Event()
    log = EventLog(log_dir, lambda _: done.set())
    log.start()
    for record in records:
        log.append(tag_source(encode_rows(record), "web"), None)
    log.close()


def deliver_until(router: Router, condition: Callable[[], bool], timeout: float = 30) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(router.run(stop))
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(condition) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        await task

    asyncio.run(main())


def events(url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{url}/_emulator/events").json()["events"]


def test_a_failing_destination_holds_only_its_route_and_loses_nothing(
        tmp_path: Path, route_project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    project = load_project(route_project(hook=HOOK % (4, SECRET), amp=AMP % 100))
    log_dir = tmp_path / "log"
    write_log(log_dir, rows("a", 120), rows("b", 80))
    with running("webhook", {"secret": SECRET, "error_share": 1.0}) as hook, \
            running("amplitude", {"api_key": "k-amp-test", "eps_threshold": 10_000}) as amp:
        monkeypatch.setenv("HOOK_URL", f"{hook}/webhook")
        monkeypatch.setenv("AMP_URL", amp)
        router = Router(log_dir, load_routes(project), LogLines())

        def amp_done_hook_failing() -> bool:  # both: on a loaded machine amp can finish before hook's 2nd attempt
            hook_error = next(w.counters.error for w in router.workers if w.route.name == "hook")
            return len(events(amp)) >= 200 and hook_error is not None

        deliver_until(router, amp_done_hook_failing, timeout=20)
        assert len(events(amp)) == 200 and events(hook) == []  # 503s on one route, the other done
        status = {w.route.name: w.status() for w in router.workers}
        assert "webhook (route hook) still failing after 2 attempts" in status["hook"]["error"]
        assert status["hook"]["delivered"] == 0 and status["amp"]["delivered"] == 200
        httpx.post(f"{hook}/_emulator/faults", json={"error_share": 0.0})
        router = Router(log_dir, load_routes(project), LogLines())  # as after a restart: from the cursors
        deliver_until(router, lambda: len(events(hook)) >= 200, timeout=20)
        assert sorted(e["messageId"] for e in events(hook)) == sorted(r["message_id"] for r in rows("a", 120) + rows("b", 80))
        assert len(events(amp)) == 200  # nothing sent twice to the route that had finished
        assert router.collect_garbage() == [] and not list((log_dir / "routes" / "log").glob("*.log"))


def test_events_past_the_backlog_age_are_dead_lettered_then_replayed(
        tmp_path: Path, route_project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    root = route_project(hook=HOOK % (0.0002, SECRET))  # 0.72 s
    project = load_project(root)
    log_dir = tmp_path / "log"
    monkeypatch.setenv("REVETL_COLLECTOR_DIR", str(log_dir))
    project = load_project(root)
    write_log(log_dir, rows("old", 30, received=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)))
    with running("webhook", {"secret": SECRET, "error_share": 1.0}) as hook:
        monkeypatch.setenv("HOOK_URL", f"{hook}/webhook")
        router = Router(log_dir, load_routes(project), LogLines())
        deliver_until(router, lambda: router.workers[0].counters.dead_lettered >= 30, timeout=20)
        assert router.workers[0].counters.dead_lettered == 30 and events(hook) == []
        letters = list(router.workers[0].store.dead_letters())
        assert {letter["row"]["message_id"] for letter in letters} == {f"old-{i:04d}" for i in range(30)}
        assert letters[0]["reason"].startswith("not delivered within 0.0002 h of its receipt (last error: ")
        assert "still failing after 2 attempts" in letters[0]["reason"]
        assert_loaded_into_the_warehouse(root, tmp_path, log_dir)
        httpx.post(f"{hook}/_emulator/faults", json={"error_share": 0.0})
        result = replay_route(project, "hook", dead_letters=True)
        assert (result.read, result.delivered, result.dead_lettered) == (30, 30, 0)
        assert len(events(hook)) == 30
        assert list(router.workers[0].store.dead_letters()) == []  # replayed: gone


def assert_loaded_into_the_warehouse(root: Path, tmp_path: Path, log_dir: Path) -> None:
    """`revetl routes load` copies the dead letters and the counters into the warehouse, once."""
    import os
    import subprocess
    import sys

    import duckdb

    env = {**os.environ, "REVETL_COLLECTOR_DIR": str(log_dir), "REVETL_WAREHOUSE": str(tmp_path / "w.duckdb")}
    command = [sys.executable, "-m", "revetl", "--project-dir", str(root), "routes", "load"]
    for expected in ("loaded 30 dead letters and 1 counter snapshots from 2 files",
                     "loaded 0 dead letters and 0 counter snapshots from 0 files"):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and expected in done.stdout, done.stdout + done.stderr
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as warehouse:
        letters = warehouse.sql("select route, count(*), min(reason) from revetl_state.route_dead_letters "
                                "group by route").fetchall()
        stats = warehouse.sql("select route, dead_lettered, delivered, state from revetl_state.route_stats").fetchall()
    assert letters[0][:2] == ("hook", 30) and letters[0][2].startswith("not delivered within 0.0002 h")
    assert stats == [("hook", 30, 0, "stopped")]


def test_amplitude_400_413_and_429_as_its_api_documents(
        tmp_path: Path, route_project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    project = load_project(route_project(amp=AMP % 2000))
    log_dir = tmp_path / "log"
    # The batcher keeps requests under 1 MB itself; this Amplitude takes 400 events a request: 413, halves.
    big = {"blob": "x" * 500}
    # The first half holds 40 events of one user: the second half, sent within the same second, holds 20
    # more, and gets 429 (over 30 events/s for that user) until the next second.
    write_log(log_dir, rows("big", 500, user="user-#", props=big), rows("busy", 40, user="busy-user"),
              rows("short", 2, user="abc"),  # ids under 5 characters: 400, never sent again
              rows("big2", 500, user="user-#", props=big), rows("busy2", 20, user="busy-user"))
    with running("amplitude", {"api_key": "k-amp-test", "max_events": 400}) as amp:
        monkeypatch.setenv("AMP_URL", amp)
        router = Router(log_dir, load_routes(project), LogLines())
        deliver_until(router, lambda: len(events(amp)) >= 1060, timeout=30)
        got = events(amp)
        stats = httpx.get(f"{amp}/_emulator/stats").json()
    worker = router.workers[0]
    assert sorted(e["insert_id"] for e in got) == sorted(
        [f"{p}-{i:04d}" for p, n in (("big", 500), ("big2", 500), ("busy", 40), ("busy2", 20)) for i in range(n)])
    letters = list(worker.store.dead_letters())
    assert sorted(letter["row"]["message_id"] for letter in letters) == ["short-0000", "short-0001"]
    assert letters[0]["reason"] == "amplitude 400: invalid field `user_id`"
    answers = stats["requests"]["POST /2/httpapi"]
    assert answers.get("413") and answers.get("429") and answers.get("400") == 1, stats
