"""Tracking plans at the collector: a real `revetl collect` with a plan governing the `web` source, the
official Segment SDK and plain HTTP; blocked events answered 200, quarantined, never landed; flagged
ones landed with their violations, which `revetl build` models; the `server` source is not governed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow.parquet as pq
from conftest import REPO, collector_env, revetl_command, start_collector
from segment.analytics import Client as SegmentClient

PLAN = (Path(__file__).resolve().parents[1] / "specs" / "tracking_plan_web.yml").read_text()


def governed_project(directory: Path) -> Path:
    directory.mkdir(parents=True)
    for name in ("dbt_project.yml", "profiles.yml", "revetl.yml", "traits.yml"):
        shutil.copy(REPO / name, directory / name)
    shutil.copytree(REPO / "models", directory / "models")
    shutil.copytree(REPO / "macros", directory / "macros")
    (directory / "tracking_plans").mkdir()
    (directory / "tracking_plans" / "web.yml").write_text(PLAN)
    return directory


def rows_in(directory: Path) -> dict[str, dict[str, Any]]:
    files = sorted(directory.glob("received_date=*/*.parquet"))
    return {row["message_id"]: row for path in files for row in pq.read_table(path).to_pylist()}


def test_the_collector_judges_governed_sources_and_quarantines_blocked_events(tmp_path: Path, keys: dict[str, str]) -> None:
    import subprocess

    project = governed_project(tmp_path / "project")
    collector = start_collector(tmp_path, "--workers", "1", "--flush-seconds", "0.3", project_dir=project)
    try:
        errors: list[Any] = []
        segment = SegmentClient(keys["web"], host=collector.url, sync_mode=True, on_error=lambda e, b: errors.append(e))
        segment.track("u1", "Report Generated", {"report_type": "funnel", "rows": 3}, message_id="clean")
        segment.track("u1", "Report Generated", {"report_type": "weekly", "debug": True}, message_id="flagged")
        segment.track("u1", "Report Generated", {"report_type": "cohort", "rows": "3"}, message_id="wrong-type")
        segment.track("u1", "Report Exported", {"format": "csv"}, message_id="unplanned")
        assert errors == []
        # The answer to a blocked event stays 200, as Segment's; Basic auth names the source here.
        answer = httpx.post(f"{collector.url}/v1/track", auth=(keys["web"], ""), json={
            "userId": "u2", "event": "Report Deleted", "messageId": "unplanned-basic"})
        assert (answer.status_code, answer.json()) == (200, {"success": True})
        # Another source is not governed: its events land as sent.
        answer = httpx.post(f"{collector.url}/v1/track", auth=(keys["server"], ""), json={
            "userId": "u3", "event": "Report Deleted", "messageId": "server"})
        assert answer.status_code == 200
    finally:
        assert collector.stop() == 0

    landed = rows_in(collector.landing_dir)
    assert sorted(landed) == ["clean", "flagged", "server"]
    assert landed["clean"]["context"] is None or "violationErrors" not in landed["clean"]["context"]
    flagged = json.loads(landed["flagged"]["context"])
    assert [(e["type"], e["property"]) for e in flagged["violationErrors"]] == [
        ("value_not_allowed", "properties.report_type"), ("unplanned_property", "properties.debug")]
    assert flagged["trackingPlan"] == {"name": "web", "source": "web"}
    assert json.loads(landed["flagged"]["properties"]) == {"report_type": "weekly"}  # `debug` omitted
    quarantined = rows_in(tmp_path / "quarantine")
    assert sorted(quarantined) == ["unplanned", "unplanned-basic", "wrong-type"]
    assert {e["type"] for e in json.loads(quarantined["wrong-type"]["context"])["violationErrors"]} == {"wrong_type"}

    env = collector_env(tmp_path)
    report = subprocess.run(revetl_command("violations", project_dir=project), env={**env, "COLUMNS": "200"},
                            capture_output=True, text=True, timeout=120)
    assert "5 violations in 4 events: 1 landed flagged, 3 blocked in the quarantine" in report.stdout, report.stdout
    build = subprocess.run(revetl_command("build", "--select", "events quarantined_events violations", project_dir=project), env=env,
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as warehouse:
        assert warehouse.sql("select message_id from events where violations is null order by 1").fetchall() == [
            ("clean",), ("server",)]
        assert warehouse.sql("select message_id, source, kind, property, omitted, blocked from violations "
                             "order by blocked, message_id, kind").fetchall() == [
            ("flagged", "web", "unplanned_property", "properties.debug", True, False),
            ("flagged", "web", "value_not_allowed", "properties.report_type", False, False),
            ("unplanned", "web", "unplanned_event", "", False, True),
            ("unplanned-basic", "web", "unplanned_event", "", False, True),
            ("wrong-type", "web", "wrong_type", "properties.rows", False, True)]
        # The quarantine is a table in the warehouse too, typed as `events`.
        assert warehouse.sql("select message_id, event from quarantined_events order by 1").fetchall() == [
            ("unplanned", "Report Exported"), ("unplanned-basic", "Report Deleted"), ("wrong-type", "Report Generated")]
    # `revetl report` plots them over time, from the model.
    page = tmp_path / "report.html"
    report = subprocess.run(revetl_command("report", "--out", str(page), project_dir=project), env=env,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stdout + report.stderr
    html = page.read_text()
    assert "tracking plans: violations per day" in html
    assert "5 violations, 3 of them on blocked (quarantined) events" in html


def test_a_roll_replayed_after_a_crash_quarantines_its_blocked_rows_once(tmp_path: Path) -> None:
    import datetime as dt

    from revetl.collect.log import encode_rows
    from revetl.collect.roller import land_segment, payloads_to_table
    from revetl.governance.door import BLOCKED_KEY
    from revetl.landing.events import normalize

    now = dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc)
    kept = normalize({"type": "track", "event": "A", "userId": "u", "messageId": "kept"}, now)
    held = {**normalize({"type": "track", "event": "B", "userId": "u", "messageId": "held"}, now), BLOCKED_KEY: True}
    table = payloads_to_table([encode_rows([kept, held])])
    landing, log_dir = tmp_path / "events", tmp_path / "collector"
    log_dir.mkdir()
    segment = "0000000001-abc"
    for _ in range(2):  # the second time: start-up recovery replaying a segment whose roll crashed before its delete
        land_segment(landing, log_dir, segment, table)
    assert list(rows_in(landing)) == ["kept"]
    assert list(rows_in(tmp_path / "quarantine")) == ["held"]
    assert len(list((tmp_path / "quarantine").glob("*/*.parquet"))) == 1


def test_the_collector_alerts_on_a_new_kind_of_violation_at_once_and_on_a_rate_per_window(
    tmp_path: Path, keys: dict[str, str], monkeypatch: Any
) -> None:
    import time

    import yaml
    from alerts_receivers import WEBHOOK_SECRET, receiver

    project = governed_project(tmp_path / "project")
    settings = yaml.safe_load((project / "revetl.yml").read_text())
    hook = {"type": "webhook", "url": "${TEST_HOOK_URL}", "secret": "${TEST_HOOK_SECRET}"}
    settings["alerts"] = {"channels": {"hook": hook}, "rules": [
        {"when": "violations", "name": "kinds", "for_seconds": 3, "channels": ["hook"]},
        {"when": "violations", "share": 0.4, "for_seconds": 3, "channels": ["hook"]}]}
    (project / "revetl.yml").write_text(yaml.safe_dump(settings))
    clean = {"type": "track", "event": "Report Generated", "userId": "u1", "properties": {"report_type": "funnel"}}

    sent = iter(range(10**6))

    def send(key: str, *events: dict[str, Any]) -> None:
        batch = [{**event, "messageId": f"m{next(sent)}"} for event in events]  # no id: a duplicate of the last
        answer = httpx.post(f"{collector.url}/v1/batch", auth=(key, ""), json={"batch": batch}, timeout=10)
        assert answer.status_code == 200, answer.text

    def wait_for_hooks(count: int, what: str, sending: bool = False) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 60
        while len(hooks.hooks()) < count:
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {[d.json for d in hooks.hooks()]}"
            if sending:
                send(keys["web"], clean)  # the source goes on with clean events, as a fixed app would
            time.sleep(0.2)
        return [delivery.json for delivery in hooks.hooks()]

    with receiver() as hooks:
        monkeypatch.setenv("TEST_HOOK_URL", hooks.hook_url)
        monkeypatch.setenv("TEST_HOOK_SECRET", WEBHOOK_SECRET)
        collector = start_collector(tmp_path, "--workers", "1", "--flush-seconds", "0.3", project_dir=project)
        try:
            send(keys["server"], {"type": "track", "event": "Anything", "userId": "u9"})  # not governed: no alert
            send(keys["web"], clean,
                 {**clean, "properties": {"report_type": "weekly", "debug": True}},  # flagged: two kinds
                 {**clean, "event": "Report Exported"})  # blocked
            # Each new kind fails at once (well before the 3 s window ends).
            first = wait_for_hooks(3, "the new kinds")
            assert sorted((a["rule"], a["subject"], a["state"]) for a in first) == [
                ("kinds", f"violations:web:{kind}", "failing")
                for kind in ("unplanned_event", "unplanned_property", "value_not_allowed")]
            assert "source web sends unplanned_event violations (1 in the collector's 3 s window)" in {
                a["summary"] for a in first}
            # The rate, at the end of the window: 2 of the window's events had violations, above 40%...
            got = wait_for_hooks(4, "the rate")
            rates = [a for a in got if a["rule"] == "violations>0.4"]
            assert len(rates) == 1, [(a["subject"], a["state"], a["summary"]) for a in got]
            rate = rates[0]
            assert rate["state"] == "failing" and rate["subject"] == "violations:web"
            assert rate["counts"]["with_violations"] == 2 and rate["counts"]["unplanned_event"] == 1
            assert rate["summary"].endswith("of source web's events in the collector's 3 s window broke its "
                                            "tracking plan, above 40.0%")
            # ... and a window of clean events recovers every one of them, once.
            recovered = wait_for_hooks(8, "the recoveries", sending=True)[4:]
            assert sorted((a["subject"], a["state"]) for a in recovered) == [
                ("violations:web", "recovered"), *[(f"violations:web:{kind}", "recovered")
                                                   for kind in ("unplanned_event", "unplanned_property",
                                                                "value_not_allowed")]]
            for _ in range(20):  # another clean window: nothing new
                send(keys["web"], clean)
                time.sleep(0.2)
            assert len(hooks.hooks()) == 8 and all(d.signature_valid for d in hooks.hooks())
        finally:
            assert collector.stop() == 0
    states = json.loads((collector.log_dir / "alerts.json").read_text())
    assert {(s["rule"], s["failing"]) for s in states} == {("kinds", False), ("violations>0.4", False)}
