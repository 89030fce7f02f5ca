"""Tracking plans: schema governance for every event, at the door (DESIGN 10; README "Tracking plans").

    schema.py      the JSON Schema a plan writes: checked when read, compiled once into a fast check
    plans.py       tracking_plans/NAME.yml -> TrackingPlan, every problem with its file and line
    gate.py        the validator: a landing row -> landed (maybe flagged, maybe with properties omitted)
                   or blocked; the same in ingest, collect and replay
    quarantine.py  blocked events as Parquet beside the landing directory; replay once the plan is fixed
    report.py      `revetl violations`: counts by event, property and kind, with examples
    infer.py       `revetl tracking-plan infer`: a starting plan from the events already in the warehouse
"""

from __future__ import annotations

from revetl.config import Project
from revetl.governance.gate import Gate
from revetl.governance.plans import load_plans, plans_dir

__all__ = ["Gate", "project_gate"]


def project_gate(project: Project) -> Gate:
    """The project's plans compiled (none when it has no tracking_plans/ directory)."""
    return Gate(load_plans(project) if plans_dir(project).is_dir() else [])
