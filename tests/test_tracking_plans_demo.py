"""Issue 19's promise: with the shipped example plan in force, the demo's generator (which emits a small
share of realistic violations) gives a violation report whose counts are checked exactly."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from revetl.config import Project
from revetl.governance.quarantine import quarantine_dir
from revetl.governance.report import violation_report
from revetl.landing.generate import GenerateOptions, generate_events
from revetl.landing.ingest import ingest_files

pytestmark = pytest.mark.slow

EXPECTED = {
    ("Report Generated", "properties.report_type", "missing_required"): 40,
    ("Report Generated", "properties.report_typo", "unplanned_property"): 40,
    ("dashboard_viewed", "", "unplanned_event"): 40,
    ("Payment Processed", "properties.revenue", "wrong_type"): 10,
    ("Invite Sent", "properties.invitee_role", "value_not_allowed"): 2,
    ("Logged In", "properties.method", "value_not_allowed"): 1,
}


def flaws_in(jsonl: Path) -> Counter[str]:
    """What the generator sent against the plan, read from its JSON lines (each message once)."""
    found: Counter[str] = Counter()
    seen: set[str] = set()
    for line in jsonl.read_text().splitlines():
        payload = json.loads(line)
        if payload["messageId"] in seen or payload["type"] != "track":
            continue
        seen.add(payload["messageId"])
        properties = payload.get("properties") or {}
        if "report_typo" in properties:
            found["typo"] += 1
        if payload["event"] == "dashboard_viewed":
            found["misnamed"] += 1
        if isinstance(properties.get("revenue"), str):
            found["revenue_as_text"] += 1
        if properties.get("invitee_role") == "owner":
            found["unknown_role"] += 1
        if properties.get("method") == "magic_link":
            found["unknown_method"] += 1
    return found


def test_the_demo_generator_against_the_shipped_plan_gives_exact_violation_counts(project: Project, tmp_path: Path) -> None:
    jsonl = tmp_path / "events.jsonl"
    options = GenerateOptions(users=800, days=60, seed=7, end=dt.datetime(2026, 6, 1), jsonl=jsonl)
    generated = generate_events(project, options).events
    flaws = flaws_in(jsonl)
    assert flaws == {"typo": 40, "misnamed": 40, "revenue_as_text": 10, "unknown_role": 2, "unknown_method": 1}

    ingested = ingest_files(project, [jsonl], source="app")  # the plan governs source `app`
    assert (ingested.rejected, ingested.flagged, ingested.quarantined) == (0, 43, 50)
    assert ingested.accepted + ingested.quarantined == generated

    report = violation_report(project.landing_dir)
    assert dict(report.by_property) == EXPECTED
    assert dict(report.by_kind) == {"missing_required": 40, "unplanned_property": 40, "unplanned_event": 40,
                                    "wrong_type": 10, "value_not_allowed": 3}
    # flagged: the typo'd reports (their `report_typo` omitted), the unknown role and login method;
    # blocked: the misnamed events and the payments whose revenue is text.
    assert (report.flagged_events, report.blocked_events) == (
        flaws["typo"] + flaws["unknown_role"] + flaws["unknown_method"], flaws["misnamed"] + flaws["revenue_as_text"])
    held = [row for path in quarantine_dir(project.landing_dir).glob("*/*.parquet") for row in pq.read_table(path).to_pylist()]
    assert Counter(row["event"] for row in held) == {"dashboard_viewed": 40, "Payment Processed": 10}
    landed = [row for path in project.landing_dir.glob("*/*.parquet") for row in pq.read_table(path).to_pylist()]
    typos = [row for row in landed if row["event"] == "Report Generated" and "violationErrors" in (row["context"] or "")]
    assert typos and all("report_typo" not in row["properties"] for row in typos)  # omitted, as the plan says
