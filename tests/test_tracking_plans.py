"""Tracking plans: the files (every problem with its line), the validator's verdicts, and enforcement in
`revetl ingest` with the quarantine, the violations report and replay, through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from wh import REPO, redirect

from revetl.config import Project
from revetl.errors import ConfigError
from revetl.governance import Gate, project_gate
from revetl.governance.gate import BLOCKED, LANDED, violations_of
from revetl.governance.plans import check_plans, load_plans
from revetl.governance.quarantine import quarantine_dir, replay
from revetl.governance.report import violation_report
from revetl.landing.ingest import ingest_files

PLAN = """\
sources: [web]
actions:
  unplanned_event: block
  wrong_type: omit
  unplanned_property: omit
identify:
  traits:
    properties:
      email: {type: string, format: email}
      plan: {type: string}
events:  # last: tests add events at the end
  Report Generated:
    properties:
      required: [report_type]
      properties:
        report_type: {type: string, enum: [funnel, cohort]}
        rows: {type: integer, minimum: 0}
        filters:
          type: object
          properties:
            country: {type: string, pattern: "^[A-Z]{2}$"}
        tags: {type: array, items: {type: string}, maxItems: 2}
"""


@pytest.fixture
def proj(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project of its own: the repository's settings and one plan `web_app` governing source `web`."""
    root = tmp_path / "project"
    root.mkdir()
    for name in ("dbt_project.yml", "profiles.yml", "revetl.yml", "traits.yml"):
        shutil.copy(REPO / name, root / name)
    write_plan(root, "web_app", PLAN)
    return redirect(tmp_path, monkeypatch, root)


def write_plan(root: Path, name: str, text: str) -> Path:
    path = root / "tracking_plans" / f"{name}.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def revetl(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(project.root), *args],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)


def track(message_id: str, properties: dict[str, Any], event: str = "Report Generated") -> dict[str, Any]:
    return {"type": "track", "event": event, "userId": "u1", "messageId": message_id, "properties": properties}


def row_for(payload: dict[str, Any]) -> dict[str, Any]:
    from revetl.landing.events import normalize
    import datetime as dt

    return normalize(payload, dt.datetime(2026, 5, 1, tzinfo=dt.timezone.utc))


def judged(gate: Gate, payload: dict[str, Any], source: str = "web") -> tuple[str, dict[str, Any]]:
    row = row_for(payload)
    return gate.judge(row, source, payload), row


# -- the files ------------------------------------------------------------------------------------


def test_check_reports_every_problem_of_a_plan_with_its_line(proj: Project) -> None:
    write_plan(proj.root, "broken", """\
sources: [server]
actions:
  unplanned_event: omit
events:
  Signed Up:
    descripton: typo
    properties:
      properties:
        plan: {type: text}
        code: {type: string, pattern: "[a-"}
        seats: {oneOf: [{type: integer}]}
""")
    run = revetl(proj, "tracking-plan", "check")
    assert run.returncode == 1, run.stdout
    lines = run.stdout.splitlines()
    broken = str(proj.root / "tracking_plans" / "broken.yml")
    assert f"{broken}, line 3: `actions.unplanned_event` input should be 'allow' or 'block'" in lines
    assert f"{broken}, line 6: `events.Signed Up.descripton` unknown key; did you mean `description`?" in lines
    assert any(line.startswith(f"{broken}, line 9: `events.Signed Up.properties.properties.plan.type`: `type` must be one of")
               for line in lines)
    assert any(line.startswith(f"{broken}, line 10: `events.Signed Up.properties.properties.code.pattern`: `pattern` is not a valid")
               for line in lines)
    assert any(line.startswith(f"{broken}, line 11: `events.Signed Up.properties.properties.seats.oneOf`: `oneOf` is not a keyword")
               for line in lines)
    assert "5 problem(s) in 2 tracking plan(s)" in run.stdout
    with pytest.raises(ConfigError, match=r"broken.yml, line 3: `actions.unplanned_event`"):
        load_plans(proj)


def test_a_source_follows_one_plan(proj: Project) -> None:
    write_plan(proj.root, "zz_second", "sources: [mobile, web]\n")
    [first, second] = check_plans(proj)
    assert first.plan is not None and not first.problems
    assert second.plan is None
    assert second.problems == [(1, "source `web` is already governed by the plan `web_app`; a source follows one plan")]


def test_the_shipped_example_plan_is_valid() -> None:
    run = subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(REPO), "tracking-plan", "check"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 tracking plan(s): no problems stackwise (7 events, sources app)" in run.stdout


# -- the validator --------------------------------------------------------------------------------


def test_each_kind_of_violation_is_classified_as_segment_does(proj: Project) -> None:
    gate = project_gate(proj)
    verdict, row = judged(gate, track("m1", {
        "report_typo": "funnel", "rows": -3, "filters": {"country": "France"}, "tags": ["a", 7, "c"]}))
    assert verdict == LANDED  # wrong_type is omitted, the rest allowed: nothing here blocks
    found = {(error["type"], error["property"]) for error in violations_of(row["context"])}
    assert found == {
        ("missing_required", "properties.report_type"),
        ("unplanned_property", "properties.report_typo"),
        ("value_not_allowed", "properties.rows"),
        ("value_not_allowed", "properties.filters.country"),
        ("wrong_type", "properties.tags[]"),
        ("value_not_allowed", "properties.tags"),
    }
    context = json.loads(row["context"])
    assert context["trackingPlan"] == {"name": "web_app", "source": "web"}
    # omit: the unplanned property and the array holding a wrong type are dropped, the rest stays
    assert json.loads(row["properties"]) == {"rows": -3, "filters": {"country": "France"}}
    omitted = {error["property"] for error in context["violationErrors"] if error.get("omitted")}
    assert omitted == {"properties.report_typo", "properties.tags[]"}


def test_a_clean_event_is_left_exactly_as_it_was(proj: Project) -> None:
    payload = track("m1", {"report_type": "cohort", "rows": 10, "filters": {"country": "FR"}, "tags": ["x"]})
    before = row_for(dict(payload))
    verdict, row = judged(project_gate(proj), payload)
    assert verdict == LANDED and row == before


def test_unplanned_events_are_blocked_and_other_sources_are_not_governed(proj: Project) -> None:
    gate = project_gate(proj)
    verdict, row = judged(gate, track("m1", {}, event="report_generated"))
    assert verdict == BLOCKED
    assert violations_of(row["context"]) == [
        {"type": "unplanned_event", "property": "", "message": "`report_generated` is not a planned event"}]
    assert json.loads(row["context"])["trackingPlan"]["blocked"] is True
    assert judged(gate, track("m2", {}, event="report_generated"), source="server")[0] == LANDED
    assert judged(gate, track("m3", {}, event="report_generated"), source=None)[0] == LANDED


def test_identify_traits_are_judged_also_when_sent_in_context_traits(proj: Project) -> None:
    gate = project_gate(proj)
    payload = {"type": "identify", "userId": "u1", "messageId": "i1", "context": {"traits": {"email": "not-an-email"}}}
    verdict, row = judged(gate, payload)
    assert verdict == LANDED
    assert [e["type"] for e in violations_of(row["context"])] == ["value_not_allowed"]
    assert judged(gate, {"type": "page", "userId": "u1", "name": "Anything", "properties": {"x": 1}})[1]["context"] is None


def test_a_gate_travels_to_a_parser_process_whole(proj: Project) -> None:
    import pickle

    gate = pickle.loads(pickle.dumps(project_gate(proj)))
    assert judged(gate, track("m1", {}, event="Nope"))[0] == BLOCKED


# -- ingest, quarantine, report, replay ------------------------------------------------------------


def write_lines(path: Path, payloads: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(payload) + "\n" for payload in payloads))
    return path


def landed_rows(directory: Path) -> list[dict[str, Any]]:
    files = sorted(directory.glob("received_date=*/*.parquet"))
    return [row for path in files for row in pq.read_table(path).to_pylist()]


def test_ingest_lands_flagged_events_and_quarantines_blocked_ones_then_replay_lands_them(
    proj: Project, tmp_path: Path
) -> None:
    source = write_lines(tmp_path / "events.jsonl", [
        track("ok", {"report_type": "funnel"}),
        track("flagged", {"report_type": "weekly"}),
        track("omitted", {"report_type": "cohort", "secret_note": "x"}),
        track("blocked", {"report_type": "cohort"}, event="Report Exported"),
        {"type": "page", "userId": "u1", "messageId": "page", "name": "Home"},
    ])
    run = revetl(proj, "ingest", "--source", "web", str(source))
    assert run.returncode == 0, run.stderr
    assert "4 events landed in 1 file; 0 rejected; tracking plan: 2 landed with violations, 1 blocked into the quarantine" \
        in " ".join(run.stdout.split())
    landed = {row["message_id"]: row for row in landed_rows(proj.landing_dir)}
    assert sorted(landed) == ["flagged", "ok", "omitted", "page"]
    assert json.loads(landed["omitted"]["properties"]) == {"report_type": "cohort"}
    [held] = landed_rows(quarantine_dir(proj.landing_dir))
    assert held["message_id"] == "blocked" and held["event"] == "Report Exported"
    assert quarantine_dir(proj.landing_dir) == proj.landing_dir.parent / "quarantine"

    report = violation_report(proj.landing_dir)
    assert dict(report.by_property) == {
        ("Report Generated", "properties.report_type", "value_not_allowed"): 1,
        ("Report Generated", "properties.secret_note", "unplanned_property"): 1,
        ("Report Exported", "", "unplanned_event"): 1,
    }
    assert (report.flagged_events, report.blocked_events) == (2, 1)
    shown = revetl(proj, "violations")
    assert shown.returncode == 0
    assert "3 violations in 3 events: 2 landed flagged, 1 blocked in the quarantine" in shown.stdout
    assert "Report Exported" in shown.stdout and "blocked: `Report Exported` is not a planned event" in shown.stdout

    # Replay with the plan unchanged: still blocked, nothing moves.
    assert revetl(proj, "violations", "replay").stdout.split()[:6] == ["0", "quarantined", "events", "landed,", "1", "still"]
    # The plan learns the event: replay lands it, and the quarantine is empty.
    plan = proj.root / "tracking_plans" / "web_app.yml"
    plan.write_text(plan.read_text() + "  Report Exported:\n    properties:\n      additionalProperties: true\n")
    replayed = revetl(proj, "violations", "replay")
    assert "1 quarantined events landed, 0 still blocked" in replayed.stdout, replayed.stdout + replayed.stderr
    assert landed_rows(quarantine_dir(proj.landing_dir)) == []
    exported = [row for row in landed_rows(proj.landing_dir) if row["message_id"] == "blocked"]
    assert len(exported) == 1 and exported[0]["context"] is None  # judged anew: clean, as if it had just arrived


def test_ingest_without_a_governed_source_lands_everything_unjudged(proj: Project, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "events.jsonl", [track("x", {"anything": 1}, event="Whatever")])
    report = ingest_files(proj, [source])
    assert (report.accepted, report.flagged, report.quarantined) == (1, 0, 0)


def test_replay_keeps_what_is_still_blocked_and_lands_the_rest(proj: Project, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "events.jsonl", [
        track("a", {"report_type": "funnel"}, event="Report Exported"),
        track("b", {"report_type": "funnel"}, event="Report Deleted"),
    ])
    assert ingest_files(proj, [source], source="web").quarantined == 2
    plan = proj.root / "tracking_plans" / "web_app.yml"
    plan.write_text(plan.read_text() + "  Report Exported: {}\n")
    result = replay(proj.landing_dir, project_gate(proj))
    assert (result.landed, result.still_blocked, result.files) == (1, 1, 1)
    [kept] = landed_rows(quarantine_dir(proj.landing_dir))
    assert kept["message_id"] == "b" and json.loads(kept["context"])["trackingPlan"]["blocked"] is True
    [landed] = landed_rows(proj.landing_dir)
    # Landed, but flagged: `report_type` is not planned for Report Exported (its allowed properties are none).
    assert landed["message_id"] == "a"
    assert [e["type"] for e in violations_of(landed["context"])] == ["unplanned_property"]
    assert json.loads(landed["properties"]) == {}


# -- infer ----------------------------------------------------------------------------------------


def test_infer_writes_a_plan_from_the_warehouse_that_the_same_events_pass(proj: Project, tmp_path: Path) -> None:
    for name in ("models", "macros"):
        shutil.copytree(REPO / name, proj.root / name)
    payloads = [track(f"r{i}", {"report_type": ["funnel", "cohort"][i % 2], "rows": i, **({"note": "x"} if i % 3 else {})})
                for i in range(40)]
    payloads += [{"type": "identify", "userId": "u1", "messageId": "i1", "traits": {"plan": "pro", "seats": 2.5}},
                 {"type": "identify", "userId": "u2", "messageId": "i2", "traits": {"plan": "free", "seats": 3}}]
    source = write_lines(tmp_path / "events.jsonl", payloads)
    assert ingest_files(proj, [source]).accepted == 42  # no --source: not governed
    build = revetl(proj, "build", "--select", "events")
    assert build.returncode == 0, build.stdout + build.stderr

    out = proj.root / "tracking_plans" / "inferred.yml"
    run = revetl(proj, "tracking-plan", "infer", "--since", "3650d", "--source", "batch", "--out", str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    import yaml

    plan = yaml.safe_load(out.read_text())
    assert plan["sources"] == ["batch"] and set(plan["actions"].values()) == {"allow"}
    assert plan["events"]["Report Generated"]["properties"] == {
        "required": ["report_type", "rows"],  # `note` is on two events in three: not required
        "properties": {"note": {"type": "string"}, "report_type": {"type": "string", "enum": ["cohort", "funnel"]},
                       "rows": {"type": "integer"}}}
    assert plan["identify"]["traits"]["properties"] == {"plan": {"type": "string"}, "seats": {"type": "number"}}
    assert revetl(proj, "tracking-plan", "check").returncode == 0
    again = ingest_files(proj, [source], source="batch")
    assert (again.accepted, again.flagged, again.quarantined) == (42, 0, 0)


def test_the_report_since_a_time_counts_only_events_received_from_then(proj: Project, tmp_path: Path) -> None:
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    old = (now - dt.timedelta(days=40)).isoformat()
    source = write_lines(tmp_path / "events.jsonl", [
        {**track("old", {"report_type": "weekly"}), "receivedAt": old, "timestamp": old},
        track("new", {"report_type": "daily"}),
    ])
    assert ingest_files(proj, [source], source="web").flagged == 2
    assert sum(violation_report(proj.landing_dir).by_kind.values()) == 2
    recent = violation_report(proj.landing_dir, now - dt.timedelta(days=30))
    assert (recent.flagged_events, dict(recent.by_kind)) == (1, {"value_not_allowed": 1})
    run = revetl(proj, "violations", "--since", "30d")
    assert "1 violations" in run.stdout and "new:" in run.stdout and "old:" not in run.stdout
    bad = revetl(proj, "violations", "--since", "last week")
    assert bad.returncode == 1
    assert "--since 'last week' is neither a duration (30d, 12h, 90m) nor an ISO date or time" in bad.stderr
