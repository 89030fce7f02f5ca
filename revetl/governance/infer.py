"""`revetl tracking-plan infer --since 30d`: a starting plan from what has already landed.

Reads the warehouse's `events` (track events by name, identify and group traits) received since a
time, and writes what it saw: each event's properties with their observed JSON types (integer and
number seen together is number; several types become a list), `required` for the properties present
on every one of its events, and an `enum` for a text property that took at most ENUM_VALUES distinct
values over at least ENUM_EVENTS events. Nested objects are planned as objects that allow any key
(`additionalProperties: true`). Every action is `allow`: a new plan flags, it blocks nothing until
someone decides so.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from revetl.config import Project
from revetl.governance.schema import json_type

__all__ = ["Observed", "infer_plan", "plan_yaml"]

ENUM_VALUES = 8
ENUM_EVENTS = 30
_TYPE_ORDER = ("string", "integer", "number", "boolean", "object", "array", "null")


@dataclass
class Observed:
    """What was seen of one event (or of identify/group traits): how often, and each key's types and values."""

    count: int = 0
    present: Counter[str] = field(default_factory=Counter)
    types: dict[str, set[str]] = field(default_factory=dict)
    values: dict[str, set[str]] = field(default_factory=dict)  # text values, until there are too many

    def add(self, data: Any) -> None:
        self.count += 1
        if not isinstance(data, dict):
            return
        for key, value in data.items():
            self.present[key] += 1
            self.types.setdefault(key, set()).add(_json_type(value))
            seen = self.values.setdefault(key, set())
            if isinstance(value, str) and len(seen) <= ENUM_VALUES:
                seen.add(value)

    def schema(self) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        for key in sorted(self.present):
            types = self.types[key]
            if {"integer", "number"} <= types:
                types = types - {"integer"}
            ordered = [t for t in _TYPE_ORDER if t in types]
            item: dict[str, Any] = {"type": ordered[0] if len(ordered) == 1 else ordered}
            values = self.values.get(key, set())
            if ordered == ["string"] and self.present[key] >= ENUM_EVENTS and 0 < len(values) <= ENUM_VALUES:
                item["enum"] = sorted(values)
            if "object" in ordered:
                item["additionalProperties"] = True
            properties[key] = item
        required = [key for key in sorted(self.present) if self.present[key] == self.count]
        return {**({"required": required} if required else {}), "properties": properties}


def _json_type(value: Any) -> str:
    kind = json_type(value)
    return "integer" if kind == "number" and value.is_integer() else kind  # 3.0 is written for 3 by some SDKs


_QUERY = """
select type, event, properties, traits, context
from events
where received_at >= ? and type in ('track', 'identify', 'group')
"""


def infer_plan(project: Project, since: dt.datetime) -> dict[str, Observed]:
    """Observed[event name], plus `identify` and `group` traits, from the warehouse's `events` since `since`."""
    from revetl.warehouse.connection import connect

    observed: dict[str, Observed] = {}
    utc = since.astimezone(dt.timezone.utc).replace(tzinfo=None)  # `events` holds UTC times without a zone
    with connect(project, read_only=True) as connection:
        reader = connection.stream(_QUERY, [utc])
        try:
            for batch in reader:
                for kind, event, properties, traits, context in zip(*(column.to_pylist() for column in batch.columns)):
                    if kind == "track":
                        observed.setdefault(f"event:{event}", Observed()).add(_parsed(properties))
                    else:
                        data = _parsed(traits)
                        if kind == "identify" and not data:  # RudderStack's SDK sends them in context.traits
                            data = _parsed(context).get("traits") or {}
                        observed.setdefault(kind, Observed()).add(data)
        finally:
            reader.close()
    return observed


def _parsed(text: str | None) -> dict[str, Any]:
    value = json.loads(text) if text else {}
    return value if isinstance(value, dict) else {}


def plan_yaml(observed: dict[str, Observed], sources: list[str], since: dt.datetime) -> str:
    """The plan as YAML text, with a header saying where it came from."""
    import yaml

    events = {name.removeprefix("event:"): {"description": f"{item.count:,} events seen",
                                             "properties": item.schema()}
              for name, item in sorted(observed.items()) if name.startswith("event:")}
    plan: dict[str, Any] = {
        "description": f"inferred from the events received since {since:%Y-%m-%d %H:%M} UTC",
        "sources": list(sources),
        "actions": {kind: "allow" for kind in (
            "unplanned_event", "missing_required", "wrong_type", "value_not_allowed", "unplanned_property")},
        "events": events,
    }
    for call in ("identify", "group"):
        if call in observed:
            plan[call] = {"description": f"{observed[call].count:,} calls seen", "traits": observed[call].schema()}
    header = ("# A starting tracking plan, written by `revetl tracking-plan infer` from what landed.\n"
              "# Check the types, required keys and enums, then choose the actions (allow, omit, block).\n")
    return header + yaml.safe_dump(plan, sort_keys=False, allow_unicode=True, width=100)
