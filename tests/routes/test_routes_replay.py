"""`revetl routes replay`: events from the warehouse's `events` model (built by dbt from landed Parquet) sent
through a route, with its filter and mapping; a dry run counts and sends nothing; a second replay is
harmless (idempotency keys)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from revetl.emulators import running

pytestmark = pytest.mark.slow

ROUTE = """\
    types: [track, identify]
    exclude_events: [Payment Processed]
    where: user_id != 'bot-00001'
    destination: {type: amplitude, base_url: "${AMP_URL}", api_key: "k-replay", unlimited: true}
"""


def revetl(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(root), *args], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600)


def test_replay_sends_the_routes_history_from_the_events_model(tmp_path: Path, route_project: Any) -> None:
    import os

    root = route_project(amp=ROUTE)
    lines = []
    for day, user in ((1, "user-00001"), (2, "user-00002"), (3, "bot-00001"), (9, "user-00003")):
        stamp = f"2026-03-0{day}T10:00:00Z"
        lines += [{"type": "track", "userId": user, "event": "Button Clicked", "messageId": f"click-{day}",
                   "timestamp": stamp, "properties": {"label": "Buy"}},
                  {"type": "track", "userId": user, "event": "Payment Processed", "messageId": f"pay-{day}",
                   "timestamp": stamp, "properties": {"revenue": 5}},
                  {"type": "identify", "userId": user, "messageId": f"identify-{day}", "timestamp": stamp,
                   "traits": {"plan": "pro"}}]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    with running("amplitude", {"api_key": "k-replay"}) as amp:
        env = {**os.environ, "REVETL_LANDING_DIR": str(tmp_path / "events"), "REVETL_WAREHOUSE": str(tmp_path / "w.duckdb"),
               "REVETL_TARGET_DIR": str(tmp_path / "target"), "REVETL_COLLECTOR_DIR": str(tmp_path / "collector"),
               "AMP_URL": amp}
        for args in (("ingest", str(tmp_path / "events.jsonl")), ("build", "--select", "events")):
            done = revetl(root, env, *args)
            assert done.returncode == 0, done.stdout + done.stderr
        window = ("--since", "2026-03-01T00:00:00", "--until", "2026-03-05T00:00:00")
        dry = revetl(root, env, "routes", "replay", "amp", *window, "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "amp: read 9, would send 4, filtered out 5, unsupported 0" in dry.stdout
        assert httpx.get(f"{amp}/_emulator/events").json()["count"] == 0
        for _ in range(2):  # the second time, Amplitude drops the repeats by insert_id
            sent = revetl(root, env, "routes", "replay", "amp", *window)
            assert sent.returncode == 0, sent.stdout + sent.stderr
            assert "delivered 4, dead-lettered 0" in sent.stdout
        got = httpx.get(f"{amp}/_emulator/events").json()["events"]
        received = httpx.get(f"{amp}/_emulator/received").json()
    assert sorted(e["insert_id"] for e in got) == ["click-1", "click-2", "identify-1", "identify-2"]
    assert all(count == 2 for count in received.values())
    click = next(e for e in got if e["insert_id"] == "click-1")
    assert (click["event_type"], click["user_id"], click["event_properties"]) == ("Button Clicked", "user-00001",
                                                                                  {"label": "Buy"})
    assert click["time"] == 1772359200000  # 2026-03-01T10:00:00Z
