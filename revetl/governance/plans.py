"""`tracking_plans/NAME.yml` -> validated tracking plans; every problem with its file and line.

A plan names the sources it governs (the collector's write-key sources, `revetl ingest --source`),
its planned `track` events with a JSON Schema for their properties, optional `identify` and `group`
trait schemas, and per kind of violation what to do:

    allow   land the event, its violations listed in `context.violationErrors` (flagged)
    omit    land it without the offending properties (flagged too); for property kinds only
    block   keep it out of the landing directory, in the quarantine, until `revetl violations replay`

A source is governed by at most one plan; a source no plan names is not governed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from revetl.config import Project, Strict, names_in, validation_problems
from revetl.errors import ConfigError
from revetl.governance.schema import schema_problems
from revetl.yaml_files import YamlFile, node_line, read_yaml_file

__all__ = ["Actions", "PlanFile", "PlannedEvent", "PlannedTraits", "TrackingPlan", "check_plans", "load_plans",
           "plans_dir"]

PLANS_DIR = "tracking_plans"

Decision = Literal["allow", "block"]
PropertyDecision = Literal["allow", "omit", "block"]


class Actions(Strict):
    """What a kind of violation does to its event (default: allow, i.e. land it flagged)."""

    unplanned_event: Decision = "allow"
    missing_required: Decision = "allow"
    wrong_type: PropertyDecision = "allow"
    value_not_allowed: PropertyDecision = "allow"
    unplanned_property: PropertyDecision = "allow"


class PlannedEvent(Strict):
    """One planned `track` event: its properties as a JSON Schema object."""

    description: str = ""
    properties: dict[str, Any] = {}


class PlannedTraits(Strict):
    """`identify:` or `group:`: the traits as a JSON Schema object."""

    description: str = ""
    traits: dict[str, Any] = {}


class TrackingPlan(Strict):
    """`tracking_plans/NAME.yml`."""

    name: str
    path: Path
    description: str = ""
    sources: list[str] = Field(min_length=1)
    actions: Actions = Actions()
    events: dict[str, PlannedEvent] = {}
    identify: PlannedTraits | None = None
    group: PlannedTraits | None = None


@dataclass(frozen=True)
class PlanFile:
    """A plan file checked: the plan when valid, and every problem as (line or None, sentence)."""

    path: Path
    plan: TrackingPlan | None
    problems: list[tuple[int | None, str]]


def plans_dir(project: Project) -> Path:
    return project.root / PLANS_DIR


def check_plan(path: Path) -> PlanFile:
    """Read and validate one plan file, collecting every problem with its line."""
    try:
        parsed = read_yaml_file(path)
    except ConfigError as exc:
        found = re.match(rf"{re.escape(str(path))}, line (\d+): (.*)", str(exc), re.S)
        if found:
            return PlanFile(path, None, [(int(found.group(1)), found.group(2))])
        return PlanFile(path, None, [(None, str(exc).removeprefix(f"{path}: "))])
    raw = parsed.data
    if not isinstance(raw, dict):
        return PlanFile(path, None, [(1, "a tracking plan is a mapping (sources, actions, events, identify, group)")])
    fields = {**raw, "name": path.stem, "path": path}
    problems = [(_line(parsed, loc), f"`{'.'.join(loc)}` {message}" if loc else message)
                for loc, message in validation_problems(TrackingPlan, fields)]
    problems += _schema_problems(parsed, raw)
    problems.sort(key=lambda problem: (problem[0] is None, problem[0] or 0))
    plan = None if problems else TrackingPlan.model_validate(fields)
    return PlanFile(path, plan, problems)


def _schema_problems(parsed: YamlFile, raw: dict[str, Any]) -> list[tuple[int | None, str]]:
    """The JSON Schemas inside the plan: events' properties, identify and group traits."""
    schemas: list[tuple[tuple[str, ...], Any]] = []
    events = raw.get("events")
    if isinstance(events, dict):
        for name, event in events.items():
            if isinstance(event, dict) and "properties" in event:
                schemas.append((("events", str(name), "properties"), event["properties"]))
    for call in ("identify", "group"):
        section = raw.get(call)
        if isinstance(section, dict) and "traits" in section:
            schemas.append(((call, "traits"), section["traits"]))
    problems: list[tuple[int | None, str]] = []
    for loc, schema in schemas:
        if isinstance(schema, dict):  # not a mapping: the model's own check says so
            for inner, message in schema_problems(schema, loc):
                problems.append((_line(parsed, inner), f"`{'.'.join(inner)}`: {message}"))
    return problems


def _line(parsed: YamlFile, loc: tuple[str, ...]) -> int | None:
    return node_line(parsed.root, loc)


def check_plans(project: Project) -> list[PlanFile]:
    """Every plan file of the project, checked; a source named by two plans is a problem of the second."""
    directory = plans_dir(project)
    checked = [check_plan(directory / f"{name}.yml") for name in names_in(directory, ".yml")]
    owner: dict[str, str] = {}
    for index, item in enumerate(checked):
        if item.plan is None:
            continue
        for source in item.plan.sources:
            if source in owner:
                line = node_line(read_yaml_file(item.path).root, ("sources",))
                problem = (line, f"source `{source}` is already governed by the plan `{owner[source]}`; "
                                 "a source follows one plan")
                checked[index] = PlanFile(item.path, None, [*item.problems, problem])
            else:
                owner[source] = item.plan.name
    return checked


def load_plans(project: Project) -> list[TrackingPlan]:
    """The project's tracking plans; the first problem is a ConfigError naming the file and line."""
    plans = []
    for item in check_plans(project):
        if item.problems:
            line, message = item.problems[0]
            raise ConfigError(f"{item.path}, line {line}: {message}" if line else f"{item.path}: {message}")
        assert item.plan is not None
        plans.append(item.plan)
    return plans
