"""`routes/NAME.yml`: which collected events go to one destination, and what of them is sent (DESIGN 9).

```yaml
description: Payments go to the CRM, and nothing else does.
sources: [web, server]              # write-key sources in revetl.yml `collect.write_keys` (default: all)
types: [track]                      # track | identify | page | screen | group | alias (default: all)
events: [Payment Processed]         # only calls with one of these names (track event, page/screen name)
exclude_events: []                  # ... or every call but these
where: properties.revenue > 0       # a condition (routes/expression.py); default: every call
flagged: send                       # events a tracking plan flagged: send (default, as Segment does) | skip
properties: {allow: [revenue, currency], drop: [card], rename: {revenue: amount}}
traits: {drop: [password], rename: {name: full_name}}
destination:                        # `type` picks a stream destination; the other keys are its own
  type: webhook
  base_url: ${CRM_HOOK_URL}
  secret: ${CRM_HOOK_SECRET}
backlog: {max_age_hours: 4, max_mb: 1024}   # past either, undeliverable events are dead-lettered
```

`check_route` reads a file and collects every problem with its line, `load_route` stops at the first.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from revetl.config import Project, Strict, named_file, names_in, validation_problems
from revetl.routes.expression import Condition, ExpressionError, compile_condition
from revetl.yaml_files import YamlFile, key_line, read_problems

__all__ = ["Backlog", "FieldMap", "RouteConfig", "RouteFile", "check_route", "load_route", "route_names",
           "routes_dir"]

CallType = Literal["track", "identify", "page", "screen", "group", "alias"]


class FieldMap(Strict):
    """What of `properties` (or `traits`) is sent: `allow` (only these keys), `drop`, then `rename`."""

    allow: list[str] | None = None
    drop: list[str] = []
    rename: dict[str, str] = {}

    @field_validator("rename")
    @classmethod
    def _distinct(cls, value: dict[str, str]) -> dict[str, str]:
        targets = list(value.values())
        twice = sorted({name for name in targets if targets.count(name) > 1})
        if twice:
            raise ValueError(f"renames two keys to `{twice[0]}`")
        return value

    @property
    def identity(self) -> bool:
        return self.allow is None and not self.drop and not self.rename

    def apply(self, values: dict[str, Any] | None) -> dict[str, Any] | None:
        """The mapping applied to one event's object (None stays None)."""
        if values is None or self.identity:
            return values
        kept = {k: v for k, v in values.items() if (self.allow is None or k in self.allow) and k not in self.drop}
        return {self.rename.get(k, k): v for k, v in kept.items()}


class Backlog(Strict):
    """How long and how much a route keeps retrying before events go to its dead letters."""

    max_age_hours: float = Field(4.0, gt=0)  # Segment retries for 4 hours
    max_mb: float = Field(1024.0, gt=0)  # of the collector's log behind the route's cursor


class RouteConfig(Strict):
    """A route file, validated. `destination` stays a mapping: its type's plugin validates the rest."""

    name: str
    path: Path
    description: str | None = None
    sources: list[str] | None = None
    types: list[CallType] | None = None
    events: list[str] | None = None
    exclude_events: list[str] = []
    where: str | None = None
    flagged: Literal["send", "skip"] = "send"
    properties: FieldMap = FieldMap()
    traits: FieldMap = FieldMap()
    destination: dict[str, Any]
    backlog: Backlog = Backlog()

    @field_validator("where")
    @classmethod
    def _condition(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_condition(value)
            except ExpressionError as exc:
                raise ValueError(f"is not a condition: {exc}") from None
        return value

    @property
    def destination_type(self) -> str:
        return str(self.destination.get("type", ""))

    def condition(self) -> Condition | None:
        return compile_condition(self.where) if self.where is not None else None


def routes_dir(project: Project) -> Path:
    return project.root / "routes"


def route_names(project: Project) -> list[str]:
    """Names of the route files in `routes/`, sorted."""
    return names_in(routes_dir(project), ".yml")


@dataclass(frozen=True)
class RouteFile:
    """A route file checked: the config when valid, and every problem as (line or None, sentence)."""

    path: Path
    yaml: YamlFile | None
    route: RouteConfig | None
    problems: list[tuple[int | None, str]]


def check_route(project: Project, name: str) -> RouteFile:
    """Read and validate `routes/NAME.yml`: the file, its sources, its destination's type and settings."""
    from revetl.routes.destinations import settings_problems, unknown_type

    path = named_file(routes_dir(project), name, ".yml", "route")
    parsed, problems = read_problems(path)
    if parsed is None:
        return RouteFile(path, None, None, problems)
    raw = parsed.data
    if not isinstance(raw, dict):
        return RouteFile(path, parsed, None, [(1, "a route file is a mapping (sources, types, destination, ...)")])
    for loc, message in validation_problems(RouteConfig, {**raw, "name": name, "path": path}):
        shown = f"`{'.'.join(loc)}` " if loc else ""
        problems.append((key_line(parsed.lines, loc), f"{shown}{message}"))
    problems += _source_problems(project, raw.get("sources"), parsed)
    destination = raw.get("destination")
    kind = destination.get("type") if isinstance(destination, dict) else None
    if isinstance(destination, dict) and not kind:
        problems.append((parsed.lines.get(("destination",)), "`destination` needs a `type` (webhook, amplitude, ...)"))
    elif isinstance(kind, str) and (unknown := unknown_type(kind)):
        problems.append((parsed.lines.get(("destination", "type")), unknown))
    elif isinstance(destination, dict):
        for loc, message in settings_problems(destination):
            problems.append((key_line(parsed.lines, ("destination", *loc)), f"`destination.{'.'.join(loc)}` {message}"))
    problems.sort(key=lambda problem: (problem[0] is None, problem[0] or 0))
    route = None if problems else RouteConfig.model_validate({**raw, "name": name, "path": path})
    return RouteFile(path, parsed, route, problems)


def _source_problems(project: Project, sources: Any, parsed: YamlFile) -> list[tuple[int | None, str]]:
    known = sorted(project.settings.collect.write_keys)
    if not isinstance(sources, list):
        return []
    problems: list[tuple[int | None, str]] = []
    for source in sources:
        if isinstance(source, str) and source not in known:
            nearest = difflib.get_close_matches(source, known, n=1, cutoff=0.6)
            hint = f"; did you mean `{nearest[0]}`?" if nearest else ""
            problems.append((parsed.lines.get(("sources",)), (
                f"`sources` names `{source}`, which is not a source in revetl.yml `collect.write_keys`{hint} "
                f"(known: {', '.join(known) or 'none'})"
            )))
    return problems


def load_route(project: Project, name: str) -> RouteConfig:
    """The route `routes/NAME.yml`; its first problem is a ConfigError naming the file and line."""
    from revetl.errors import ConfigError

    checked = check_route(project, name)
    if checked.problems:
        line, message = checked.problems[0]
        raise ConfigError(f"{checked.path}, line {line}: {message}" if line else f"{checked.path}: {message}")
    assert checked.route is not None
    return checked.route
