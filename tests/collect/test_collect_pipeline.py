"""The collector app in-process (ASGI, no socket): back-pressure, a stuck landing directory, and
the settings it starts from."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from disk import fill, small_disk

from revetl.collect.app import CollectorApp
from revetl.collect.dedupe import RecentIds
from revetl.collect.lines import LogLines
from revetl.collect.pipeline import Pipeline
from revetl.collect.settings import CollectorConfig
from revetl.collect.workers import Parser
from revetl.config import load_project
from revetl.errors import CollectError, ConfigError


class Lines(LogLines):
    def __init__(self) -> None:
        super().__init__(access=False)
        self.records: list[dict[str, Any]] = []

    def emit(self, level: str, msg: str, **fields: Any) -> None:
        self.records.append({"level": level, "msg": msg, **fields})


def config(tmp_path: Path, **overrides: Any) -> CollectorConfig:
    values: dict[str, Any] = dict(
        host="127.0.0.1", port=0, landing_dir=tmp_path / "events", log_dir=tmp_path / "log", flush_seconds=3600,
        flush_events=1_000_000, dedupe_window=1000, workers=0, sources_by_key={"k": "web"},
    )
    values.update(overrides)
    return CollectorConfig(**values)


async def with_app(cfg: CollectorConfig, body: Any, max_buffered: int | None = None) -> Any:
    lines = Lines()
    pipeline = Pipeline(
        cfg.landing_dir, cfg.log_dir, cfg.flush_seconds, cfg.flush_events,
        max_buffered or cfg.max_buffered_events, lines,
    )
    pipeline.start()
    app = CollectorApp(cfg, Parser(0), pipeline, RecentIds(cfg.dedupe_window), lines)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://collector") as client:
            return await body(client, pipeline, lines)
    finally:
        await pipeline.close()


def batch(*ids: str) -> dict[str, Any]:
    return {"writeKey": "k", "batch": [{"type": "track", "event": "e", "userId": "u", "messageId": i} for i in ids]}


def test_requests_get_503_with_retry_after_while_too_many_events_wait(tmp_path: Path) -> None:
    async def body(client: httpx.AsyncClient, pipeline: Pipeline, lines: Lines) -> None:
        assert (await client.post("/v1/batch", json=batch("a", "b", "c"))).status_code == 200
        refused = await client.post("/v1/batch", json=batch("d"))
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["code"] == "overloaded"
        # "d" was not landed, so its retry must not be taken for a duplicate later.
        pipeline.max_buffered = 100
        assert (await client.post("/v1/batch", json=batch("d"))).json() == {"success": True}

    asyncio.run(with_app(config(tmp_path), body, max_buffered=3))
    landed = sorted(p.name for p in (tmp_path / "events").glob("*/*.parquet"))
    assert len(landed) == 1  # everything rolled at close


def test_a_stuck_landing_directory_keeps_events_in_the_log_and_retries(tmp_path: Path) -> None:
    blocked = tmp_path / "events"
    blocked.write_text("a file where the landing directory should be")

    async def body(client: httpx.AsyncClient, pipeline: Pipeline, lines: Lines) -> None:
        assert (await client.post("/v1/batch", json=batch("s1", "s2"))).status_code == 200
        pipeline.flush_seconds = 0.05
        pipeline._wake.set()  # noqa: SLF001 - roll now rather than in an hour
        for _ in range(100):
            await asyncio.sleep(0.05)
            if any(r["level"] == "error" for r in lines.records):
                break
        health = await client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "degraded"
        assert list((tmp_path / "log").glob("*.log"))  # still safe in the log
        blocked.unlink()  # the operator fixes the disk; the retry (after 1 s) lands them
        for _ in range(100):
            await asyncio.sleep(0.05)
            if pipeline.landed == 2:
                break
        assert (await client.get("/health")).json()["status"] == "ok"

    asyncio.run(with_app(config(tmp_path), body))
    assert len(list(blocked.glob("*/*.parquet"))) == 1
    assert not list((tmp_path / "log").glob("*.log"))


def project_with(tmp_path: Path, collect: str) -> Any:
    (tmp_path / "dbt_project.yml").write_text("name: t\nprofile: t\n")
    (tmp_path / "revetl.yml").write_text(collect)
    return load_project(tmp_path)


def test_write_keys_are_expanded_from_the_environment_and_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEB_KEY", "s3cret-web")
    monkeypatch.delenv("REVETL_COLLECTOR_DIR", raising=False)
    project = project_with(tmp_path, "collect:\n  write_keys:\n    web: ${WEB_KEY}\n    ios: ${IOS_KEY:-ios-dev}\n")
    cfg = CollectorConfig.from_project(project, port=0, workers=0)
    assert cfg.sources_by_key == {"s3cret-web": "web", "ios-dev": "ios"}
    assert "s3cret" not in repr(cfg) and "s3cret" not in repr(project.settings)
    assert cfg.log_dir == tmp_path / "data" / "collector"
    monkeypatch.setenv("REVETL_COLLECTOR_DIR", str(tmp_path / "elsewhere"))
    assert CollectorConfig.from_project(project).log_dir == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    "collect, message",
    [
        ("collect:\n  port: 8088\n", "`collect.write_keys` is empty"),
        ("collect:\n  write_keys:\n    web: ${NOT_SET_ANYWHERE_42}\n", "NOT_SET_ANYWHERE_42 is not set"),
        ("collect:\n  write_keys:\n    a: same\n    b: same\n", "share one write key"),
        ("collect:\n  write_keys:\n    a: '  '\n", "empty once expanded"),
    ],
)
def test_bad_write_key_settings_fail_with_the_key_named(tmp_path: Path, collect: str, message: str) -> None:
    project = project_with(tmp_path, collect)
    with pytest.raises(ConfigError, match=message):
        CollectorConfig.from_project(project)


def test_unknown_collect_setting_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="collect.flush_secs"):
        project_with(tmp_path, "collect:\n  flush_secs: 3\n")


def test_log_lines_are_one_json_object_each(capsys: pytest.CaptureFixture[str]) -> None:
    LogLines().info("hello", path=Path("/x"), n=1)
    LogLines(access=False).access(status=200)
    (line,) = capsys.readouterr().err.splitlines()
    record = json.loads(line)
    assert (record["level"], record["msg"], record["path"], record["n"]) == ("info", "hello", "/x", 1)


def test_a_log_line_with_a_lone_surrogate_is_still_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    LogLines().error("request failed", error="bad \ud800 text")
    (line,) = capsys.readouterr().err.splitlines()
    assert json.loads(line)["error"] == "bad \ud800 text"


def test_a_log_line_that_cannot_be_written_is_counted_not_raised(tmp_path: Path) -> None:
    # stderr redirected to a file on the disk that just filled up must not stop rolls or requests.
    with small_disk(tmp_path / "disk", size_kib=64) as disk:
        fill(disk)
        stream = open(disk / "stderr.log", "w", buffering=1)
        lines = LogLines(stream=stream)
        lines.error("could not roll events into Parquet", error="No space left on device")
        lines.info("rolled", events=3)
        assert lines.dropped == 2
        with contextlib.suppress(OSError):
            stream.close()  # its buffer still holds what could not be written


class SlowPipeline:
    """Stands in for Pipeline: each land() waits until the test releases it, then succeeds or fails."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.fail = False
        self.landed: list[int] = []

    async def land(self, payload: bytes, count: int) -> None:
        await self.release.wait()
        if self.fail:
            raise CollectError("disk full", 503, "log_failed")
        self.landed.append(count)


@pytest.mark.parametrize("first_write_fails", [False, True])
def test_a_retry_racing_its_first_copy_is_answered_only_once_that_copy_is_durable(
    tmp_path: Path, first_write_fails: bool
) -> None:
    async def main() -> None:
        pipeline = SlowPipeline()
        app = CollectorApp(config(tmp_path), Parser(0), pipeline, RecentIds(100), Lines())  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
            first = asyncio.create_task(client.post("/v1/batch", json=batch("r1", "r2")))
            await asyncio.sleep(0.05)
            retry = asyncio.create_task(client.post("/v1/batch", json=batch("r1", "r2")))
            await asyncio.sleep(0.1)
            assert not retry.done()  # no 200 for r1/r2 while their first write is not durable
            pipeline.fail = first_write_fails
            pipeline.release.set()
            statuses = [(await first).status_code, (await retry).status_code]
        assert statuses == ([503, 503] if first_write_fails else [200, 200])
        assert pipeline.landed == ([] if first_write_fails else [2])
        if first_write_fails:  # forgotten: the client's next retry lands them
            pipeline.fail = False
            async with httpx.AsyncClient(transport=transport, base_url="http://collector") as client:
                assert (await client.post("/v1/batch", json=batch("r1", "r2"))).status_code == 200
            assert pipeline.landed == [2]

    asyncio.run(main())
