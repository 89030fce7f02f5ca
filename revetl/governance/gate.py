"""The validator at the door: one landing row and its source -> land it (maybe flagged) or quarantine it.

`Gate` holds every plan compiled once (`compile_schema`); `ingest`, `collect` (in each parser
process) and `violations replay` all judge rows with it, so an event gets the same verdict whichever
way it came in.

What a verdict does to the row (only to a row with violations; a clean row is left as it was):
- `context.violationErrors` lists every violation, `{"type", "property", "message"}` (RudderStack
  names it so), with `"omitted": true` on those whose property was dropped; `context.trackingPlan`
  says `{"name", "source"}`, and `"blocked": true` for a quarantined row. The `events` model reads
  the list into its `violations` column, so audiences and traits can leave flagged events out.
- `omit` drops the offending property from `properties` (or `traits`), the list keeps saying why.
- `block` (any violation whose kind is blocked) sends the whole row to the quarantine.

Which events are judged: `track` (by its event name; a name the plan does not list is an unplanned
event), `identify` and `group` (their traits, when the plan has that section; an identify without
`traits` is judged on `context.traits`, where RudderStack's SDK sends them). `page`, `screen` and
`alias` are not governed, as in Segment's Protocols.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from revetl.governance.plans import TrackingPlan
from revetl.governance.schema import Check, Found, compile_schema

__all__ = ["BLOCKED", "LANDED", "Gate", "clean_context", "violations_of"]

LANDED, BLOCKED = "landed", "blocked"
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False).encode
_PLAN_KEYS = ("violationErrors", "trackingPlan")


@dataclass(frozen=True)
class _Compiled:
    name: str
    actions: dict[str, str]
    events: dict[str, Check]
    identify: Check | None
    group: Check | None


def _compile(plan: TrackingPlan) -> _Compiled:
    def whole(schema: dict[str, Any], column: str) -> Check:
        return compile_schema({"type": "object", **schema}, column)

    return _Compiled(
        name=plan.name,
        actions=plan.actions.model_dump(),
        events={name: whole(event.properties, "properties") for name, event in plan.events.items()},
        identify=whole(plan.identify.traits, "traits") if plan.identify is not None else None,
        group=whole(plan.group.traits, "traits") if plan.group is not None else None,
    )


class Gate:
    """Compiled plans by source. Picklable: a collector's parser processes get it once, at start."""

    def __init__(self, plans: Iterable[TrackingPlan]) -> None:
        self.plans = tuple(plans)
        self._by_source = {source: _compile(plan) for plan in self.plans for source in plan.sources}

    def __getstate__(self) -> tuple[TrackingPlan, ...]:
        return self.plans

    def __setstate__(self, plans: tuple[TrackingPlan, ...]) -> None:
        self.__init__(plans)  # type: ignore[misc]

    def __bool__(self) -> bool:
        return bool(self._by_source)

    def governs(self, source: str | None) -> bool:
        return source in self._by_source

    def judge(self, row: dict[str, Any], source: str | None, payload: Mapping[str, Any] | None = None) -> str:
        """LANDED or BLOCKED for one landing row from `source`; annotates the row when it has violations.

        `payload` is the wire event the row was made from (its properties and traits as objects,
        saving a parse); without it they are read from the row's JSON text.
        """
        plan = self._by_source.get(source) if source is not None else None
        if plan is None:
            return LANDED
        kind = row["type"]
        found: Found = []
        if kind == "track":
            check = plan.events.get(row["event"])
            if check is None:
                found.append(("unplanned_event", "", f"`{row['event']}` is not a planned event"))
            elif payload is not None:  # the hot path: the wire event's properties, already parsed
                properties = payload.get("properties")
                check({} if properties is None else properties, found)
            else:
                check(_object(row, payload, "properties"), found)
        elif kind == "identify" and plan.identify is not None:
            plan.identify(_traits(row, payload), found)
        elif kind == "group" and plan.group is not None:
            plan.group(_object(row, payload, "traits"), found)
        if not found:
            return LANDED
        return _apply(row, plan, source, found, payload)


def _object(row: Mapping[str, Any], payload: Mapping[str, Any] | None, column: str) -> Any:
    if payload is not None:
        value = payload.get(column)
        return {} if value is None else value
    text = row.get(column)
    return json.loads(text) if text else {}


def _traits(row: Mapping[str, Any], payload: Mapping[str, Any] | None) -> Any:
    traits = _object(row, payload, "traits")
    if traits:
        return traits
    context = _object(row, payload, "context")
    inner = context.get("traits") if isinstance(context, dict) else None
    return inner if isinstance(inner, dict) else {}


def _apply(row: dict[str, Any], plan: _Compiled, source: str, found: Found,
           payload: Mapping[str, Any] | None) -> str:
    actions = [plan.actions[kind] for kind, _, _ in found]
    blocked = "block" in actions
    errors = []
    omitted: dict[str, set[str]] = {}  # column -> its top-level keys to drop
    for (kind, path, message), action in zip(found, actions):
        error = {"type": kind, "property": path, "message": message}
        if action == "omit" and not blocked:
            column, _, rest = path.partition(".")
            omitted.setdefault(column, set()).add(rest.split(".")[0].split("[")[0])
            error["omitted"] = True
        errors.append(error)
    for column, keys in omitted.items():
        _drop(row, payload, column, keys)
    context = _object(row, None, "context")
    context = context if isinstance(context, dict) else {}
    context["violationErrors"] = errors
    context["trackingPlan"] = {"name": plan.name, "source": source, **({"blocked": True} if blocked else {})}
    row["context"] = _ENCODE(context)
    return BLOCKED if blocked else LANDED


def _drop(row: dict[str, Any], payload: Mapping[str, Any] | None, column: str, keys: set[str]) -> None:
    """Drop top-level `keys` from the row's `column` (properties or traits; identify traits found only in
    `context.traits` stay there: the list of violations says what is wrong)."""
    value = _object(row, payload, column)
    if isinstance(value, dict) and keys & value.keys():
        row[column] = _ENCODE({key: item for key, item in value.items() if key not in keys})


def violations_of(context_text: str | None) -> list[dict[str, Any]]:
    """The `violationErrors` a verdict wrote into a row's context (none when clean)."""
    if not context_text or '"violationErrors"' not in context_text:
        return []
    errors = json.loads(context_text).get("violationErrors")
    return errors if isinstance(errors, list) else []


def clean_context(context_text: str | None) -> tuple[str | None, str | None]:
    """(the row's context without what a verdict wrote, the source it named): a quarantined row, judged anew."""
    if not context_text or '"trackingPlan"' not in context_text:
        return context_text, None
    context = json.loads(context_text)
    plan = context.get("trackingPlan")
    source = plan.get("source") if isinstance(plan, dict) else None
    for key in _PLAN_KEYS:
        context.pop(key, None)
    return (_ENCODE(context) if context else None), source
