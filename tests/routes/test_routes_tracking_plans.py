"""Tracking plans before routes (issue 19, item 3): the collector judges each event before its write-ahead log, so
through a real collector, router and webhook emulators, under a plan governing the `web` source, a blocked event
never reaches a destination, an omitted property never does, a flagged event does (as Segment forwards them)
unless the route says `flagged: skip`; and `routes replay` from the warehouse sends no quarantined event (they
are in `quarantined_events`, not in `events`)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from segment.analytics import Client as SegmentClient

from revetl.emulators import running

pytestmark = pytest.mark.slow

SECRET = "plan-route-secret-0123456789"
PLAN = (Path(__file__).resolve().parents[1] / "specs" / "tracking_plan_web.yml").read_text()
EVERYTHING = """\
    destination: {type: webhook, base_url: "${HOOK_URL}", secret: "%s", unlimited: true}
""" % SECRET
CLEAN_ONLY = """\
    flagged: skip
    destination: {type: webhook, base_url: "${CLEAN_URL}", secret: "%s", unlimited: true}
""" % SECRET


def events(url: str) -> dict[str, dict[str, Any]]:
    return {event["messageId"]: event for event in httpx.get(f"{url}/_emulator/events").json()["events"]}


def test_blocked_and_omitted_never_reach_a_route_flagged_do_unless_skipped(
        tmp_path: Path, route_project: Any, collect_helpers: Any) -> None:
    root = route_project(everything=EVERYTHING, clean=CLEAN_ONLY)
    (root / "tracking_plans").mkdir()
    (root / "tracking_plans" / "web.yml").write_text(PLAN)
    base = tmp_path / "run"
    base.mkdir()
    with running("webhook", {"secret": SECRET}) as hook, running("webhook", {"secret": SECRET}) as clean_hook:
        env = {**collect_helpers.collector_env(base), "HOOK_URL": f"{hook}/webhook",
               "CLEAN_URL": f"{clean_hook}/webhook"}
        collector = collect_helpers.start_collector(base, "--flush-seconds", "0.3", project_dir=root)
        router = subprocess.Popen(collect_helpers.revetl_command("routes", "run", "--log-every", "1", project_dir=root),
                                  env=env, cwd=base, stdout=subprocess.DEVNULL, stderr=open(base / "router.log", "wb"))
        try:
            errors: list[Any] = []
            web = SegmentClient(collect_helpers.WEB_KEY, host=collector.url, sync_mode=True,
                                on_error=lambda e, b: errors.append(e))
            web.track("u1", "Report Generated", {"report_type": "funnel", "rows": 3}, message_id="clean")
            web.track("u1", "Report Generated", {"report_type": "weekly", "debug": True}, message_id="flagged")
            web.track("u1", "Report Generated", {"report_type": "cohort", "rows": "3"}, message_id="wrong-type")
            web.track("u1", "Report Exported", {"format": "csv"}, message_id="unplanned")
            answer = httpx.post(f"{collector.url}/v1/track", auth=(collect_helpers.SERVER_KEY, ""), json={
                "userId": "u3", "event": "Report Deleted", "messageId": "server"})  # a source no plan governs
            assert errors == [] and answer.status_code == 200
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and (len(events(hook)) < 3 or len(events(clean_hook)) < 2):
                time.sleep(0.2)
            time.sleep(1.5)  # anything more would arrive now (and the statuses are written every second)
            everything, clean = events(hook), events(clean_hook)
            status = subprocess.run(collect_helpers.revetl_command("routes", "status", "--json", project_dir=root),
                                    env=env, cwd=base, capture_output=True, text=True, timeout=120)
        finally:
            router.send_signal(signal.SIGTERM)
            assert router.wait(timeout=30) == 0
            assert collector.stop() == 0

        assert sorted(everything) == ["clean", "flagged", "server"]  # the blocked two: never
        flagged = everything["flagged"]
        assert flagged["properties"] == {"report_type": "weekly"}  # `debug` was omitted at the door
        assert [(e["type"], e["property"]) for e in flagged["context"]["violationErrors"]] == [
            ("value_not_allowed", "properties.report_type"), ("unplanned_property", "properties.debug")]
        assert "violationErrors" not in everything["clean"]["context"]
        assert everything["clean"]["timestamp"].endswith("Z")  # as a replay from the warehouse renders it
        assert sorted(clean) == ["clean", "server"]  # `flagged: skip`
        counters = json.loads(status.stdout)
        assert (counters["clean"]["filtered"], counters["clean"]["delivered"]) == (1, 2)
        assert counters["everything"]["delivered"] == 3

        # The warehouse: the blocked events are in `quarantined_events`, not in `events`; a replay reads `events`.
        def revetl(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(collect_helpers.revetl_command(*args, project_dir=root), cwd=base,
                                  env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=600)

        built = revetl("build", "--select", "events quarantined_events")
        assert built.returncode == 0, built.stdout + built.stderr
        with duckdb.connect(env["REVETL_WAREHOUSE"], read_only=True) as warehouse:
            assert warehouse.sql("select message_id from quarantined_events order by 1").fetchall() == [
                ("unplanned",), ("wrong-type",)]
        window = ("--since", "2000-01-01T00:00:00")
        dry = revetl("routes", "replay", "clean", *window, "--dry-run")
        assert "clean: read 3, would send 2, filtered out 1, unsupported 0" in dry.stdout, dry.stdout + dry.stderr
        # Sent again: the same batches carry the same bodies (a webhook refuses an Idempotency-Key reused with
        # another), and the receiver keeps each event once.
        sent = revetl("routes", "replay", "everything", *window)
        assert "everything: read 3, sent 3" in sent.stdout and "delivered 3, dead-lettered 0" in sent.stdout, \
            sent.stdout + sent.stderr
        assert sorted(events(hook)) == ["clean", "flagged", "server"]
