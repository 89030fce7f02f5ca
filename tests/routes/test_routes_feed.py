"""The routes' feed and cursor on disk: a record being written is read only once whole, a finished segment
is left for the next, a torn cursor write leaves the previous cursor."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from revetl.collect.log import encode_rows, tag_source
from revetl.records import frame
from revetl.routes.feed import LogFeed, Position
from revetl.routes.store import SLOT, RouteStore


NOW = dt.datetime.now(dt.timezone.utc).isoformat()


def record(*ids: str) -> bytes:
    rows = [{"message_id": i, "type": "track", "event": "E", "user_id": "u", "received_at": NOW} for i in ids]
    return frame(tag_source(encode_rows(rows), "web"))


def drain(feed: LogFeed) -> list[str]:
    found = []
    while (item := feed.next()) is not None:
        found.append(item[0]["message_id"])
    return found


def test_the_feed_reads_whole_records_and_moves_on_only_when_a_newer_segment_exists(tmp_path: Path) -> None:
    log, kept = tmp_path / "log", tmp_path / "log" / "routes" / "log"
    log.mkdir()
    first = log / "00000000000000000001-aaaa.log"
    whole, torn = record("a", "b"), record("c")
    first.write_bytes(whole + torn[:7])  # the collector is writing `c`
    feed = LogFeed(log, kept, None)
    event, after = feed.next()
    assert (event["message_id"], event["source"], after) == ("a", "web", Position("00000000000000000001-aaaa", 0, 1))
    assert drain(feed) == ["b"]
    assert feed.position == Position("00000000000000000001-aaaa", len(whole), 0)
    first.write_bytes(whole + torn)
    assert drain(feed) == ["c"] and feed.next() is None
    first.write_bytes(whole + torn + record("d")[:5])  # then the collector died mid-write: a torn tail
    kept.mkdir(parents=True)
    (kept / "00000000000000000002-bbbb.log").write_bytes(record("e"))  # the next run's segment, landed since
    assert drain(feed) == ["e"]
    resumed = LogFeed(log, kept, Position("00000000000000000001-aaaa", 0, 1))  # a cursor inside a record
    assert drain(resumed) == ["b", "c", "e"]


def test_a_torn_cursor_write_leaves_the_previous_cursor(tmp_path: Path) -> None:
    store = RouteStore(tmp_path, "r")
    store.save_cursor(Position("s1", 10, 0))
    store.save_cursor(Position("s1", 20, 3))
    store.close()
    assert RouteStore(tmp_path, "r").cursor() == Position("s1", 20, 3)
    path = tmp_path / "r" / "cursor"
    data = bytearray(path.read_bytes())
    assert len(data) == 2 * SLOT
    data[40] ^= 0xFF  # the slot written last (sequence 2 goes to slot 0) is torn
    path.write_bytes(bytes(data))
    assert RouteStore(tmp_path, "r").cursor() == Position("s1", 10, 0)


def test_the_log_is_cleaned_up_behind_every_routes_cursor_including_routes_not_running(tmp_path: Path) -> None:
    from revetl.collect.lines import LogLines
    from revetl.routes.config import RouteConfig
    from revetl.routes.mapping import Route
    from revetl.routes.router import Router

    log = tmp_path / "log"
    kept = log / "routes" / "log"
    kept.mkdir(parents=True)
    names = [f"0000000000000000000{n}-aaaa" for n in range(1, 5)]
    for name in names:
        (kept / f"{name}.log").write_bytes(record(name))
    running = RouteStore(log / "routes", "running")
    running.save_cursor(Position(names[3], 0, 0))  # far ahead
    idle = RouteStore(log / "routes", "idle")
    idle.save_cursor(Position(names[1], 0, 0))  # a route of the project this router does not run
    running.close()
    idle.close()
    hook = {"type": "webhook", "base_url": "http://127.0.0.1:9/hook", "secret": "s" * 20}
    route = Route.of(RouteConfig(name="running", path=tmp_path / "running.yml", destination=hook))
    router = Router(log, [route], LogLines(), idle=["idle"])
    assert router.collect_garbage() == [names[0]]
    assert sorted(p.stem for p in kept.glob("*.log")) == names[1:]
    alone = Router(log, [route], LogLines())  # without the idle route, only the running cursor counts
    assert alone.collect_garbage() == names[1:3]


def test_dead_letters_that_cannot_be_written_keep_the_batch_until_they_can(tmp_path: Path) -> None:
    import asyncio

    import httpx

    from revetl.collect.lines import LogLines
    from revetl.routes.config import RouteConfig
    from revetl.routes.deliver import RouteWorker
    from revetl.routes.destinations import load_stream_destination
    from revetl.routes.mapping import Route
    from revetl.runtime import Clock

    log = tmp_path / "log"
    log.mkdir()
    (log / "00000000000000000001-aaaa.log").write_bytes(record("good-1", "bad-1"))
    destination = {"type": "webhook", "base_url": "http://hook.test/in", "secret": "s" * 20, "attempts": 1}
    route = Route.of(RouteConfig(name="r", path=tmp_path / "r.yml", destination=destination))
    sent: list[list[str]] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        ids = [event["messageId"] for event in httpx.Response(200, content=request.content).json()["events"]]
        sent.append(ids)
        return httpx.Response(200, json={"rejected": [{"messageId": "bad-1", "reason": "no"}]})

    class FullDisk(RouteStore):
        failures = 1

        def dead_letter(self, rows, reasons):  # type: ignore[no-untyped-def]
            if self.failures:
                self.failures -= 1
                raise OSError(28, "No space left on device")
            super().dead_letter(rows, reasons)

    async def no_wait(seconds: float) -> None:
        await asyncio.sleep(0)

    store = FullDisk(log / "routes", "r")
    worker = RouteWorker(route, load_stream_destination("r", route.config.path, destination),
                         LogFeed(log, log / "routes" / "log", None), store, LogLines(),
                         clock=Clock(sleep=no_wait), transport=httpx.MockTransport(receiver))

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.get_running_loop().create_task(worker.run(stop))
        while worker.counters.dead_lettered < 1:
            await asyncio.sleep(0.01)
        stop.set()
        await task

    asyncio.run(main())
    assert sent == [["good-1", "bad-1"], ["good-1", "bad-1"]]  # the letter failed: the batch was sent again
    assert [letter["row"]["message_id"] for letter in store.dead_letters()] == ["bad-1"]
    assert (worker.counters.delivered, worker.counters.dead_lettered) == (1, 1)
    assert RouteStore(log / "routes", "r").cursor() == Position("00000000000000000001-aaaa", len(record("good-1", "bad-1")), 0)
