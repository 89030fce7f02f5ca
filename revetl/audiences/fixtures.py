"""Audience tests: `audiences/tests/NAME.yml` files, read and checked (trial.py runs them).

```yaml
as_of: "2026-03-01T00:00:00Z"        # the build's as-of time (`revetl build --as-of`)
audience: churn_risk                  # optional: the audience tested; default the file's NAME
description: why these events         # optional
events:                               # Segment JSON, as `revetl ingest` takes it; each with its timestamp
  - {type: identify, userId: ann, timestamp: "2026-01-10T09:00:00Z", traits: {plan: pro}}
members: [ann]                        # the audience's key values expected at as_of: exactly these
```

Every problem is one sentence with the file and line: YAML errors (yaml_files.py), unknown or missing
keys, and each event as `revetl ingest` would reject it, named by its line. An event needs a `timestamp`
(the build's windows are measured from it); it is received at that time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, StrictInt, StrictStr

from revetl.config import Project, Strict, validation_problems
from revetl.errors import ConfigError, InvalidEvent
from revetl.landing.events import normalize, parse_timestamp
from revetl.yaml_files import key_line, read_yaml_file

__all__ = ["Fixture", "TESTS_DIR", "fixture_paths", "read_fixture", "select_fixtures"]

TESTS_DIR = "tests"  # inside audiences/


class FixtureFile(Strict):
    """The keys of a test file."""

    as_of: dt.datetime
    audience: StrictStr | None = None
    description: StrictStr | None = None
    events: list[dict[str, Any]] = Field(min_length=1)
    members: list[StrictStr | StrictInt]


@dataclass(frozen=True)
class Fixture:
    """One test file, checked: its events as landing rows, the members expected."""

    name: str  # the file's NAME
    path: Path
    audience: str
    as_of: dt.datetime  # UTC, naive (what `revetl build --as-of` passes to dbt)
    rows: tuple[dict[str, Any], ...]
    members: frozenset[str]  # key values as text, as plans compare them (42 and '42' are one key)
    description: str | None = None


def fixture_paths(project: Project) -> list[Path]:
    """The test files of the project, by name."""
    directory = project.audiences_dir / TESTS_DIR
    return sorted(p for p in directory.glob("*.y*ml") if p.suffix in (".yml", ".yaml")) if directory.is_dir() else []


def select_fixtures(project: Project, names: list[str]) -> list[Fixture]:
    """Every test file (no names), or those named (their NAME, or the audience they test); each read."""
    fixtures = [read_fixture(path) for path in fixture_paths(project)]
    if not names:
        return fixtures
    unknown = [name for name in names if not any(name in (f.name, f.audience) for f in fixtures)]
    if unknown:
        known = ", ".join(sorted({f.name for f in fixtures})) or "none yet"
        raise ConfigError(f"no audience test named {', '.join(unknown)} in {project.audiences_dir / TESTS_DIR} "
                          f"(tests there: {known})")
    return [f for f in fixtures if f.name in names or f.audience in names]


def read_fixture(path: Path) -> Fixture:
    """Read and check one test file; a problem raises ConfigError naming the file and line."""
    parsed = read_yaml_file(path)
    if not isinstance(parsed.data, dict):
        raise ConfigError(f"{path}, line 1: an audience test is a mapping with `as_of`, `events` and `members`")
    problems = validation_problems(FixtureFile, parsed.data)
    if problems:
        loc, message = problems[0]
        line = _item_line(parsed.root, loc) or key_line(parsed.lines, loc) or 1
        raise ConfigError(f"{path}, line {line}: `{'.'.join(loc)}`: {message}")
    spec = FixtureFile.model_validate(parsed.data)
    as_of = spec.as_of.astimezone(dt.timezone.utc).replace(tzinfo=None) if spec.as_of.tzinfo else spec.as_of
    rows = tuple(
        _row(path, _item_line(parsed.root, ("events", str(index))) or 1, index, payload)
        for index, payload in enumerate(spec.events)
    )
    return Fixture(
        name=path.stem, path=path, audience=spec.audience or path.stem, as_of=as_of, rows=rows,
        members=frozenset(str(member) for member in spec.members), description=spec.description,
    )


def _row(path: Path, line: int, index: int, payload: dict[str, Any]) -> dict[str, Any]:
    """The landing row of event `index`, validated as `revetl ingest` validates a line."""
    where = f"{path}, line {line}: event {index + 1}"
    payload = _json(payload)
    stamp = next((payload[k] for k in ("timestamp", "originalTimestamp") if payload.get(k)), None)
    try:
        if stamp is None:
            raise InvalidEvent("it has no `timestamp`; each event of a test needs one (the windows count from it)")
        return normalize(payload, received_at=parse_timestamp(stamp, "timestamp"))
    except InvalidEvent as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _json(value: Any) -> Any:
    """The value as JSON would carry it: YAML reads an unquoted 2026-01-05T10:00:00Z as a datetime."""
    if isinstance(value, dict):
        return {str(key): _json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json(item) for item in value]
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat() + "Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _item_line(root: yaml.Node | None, loc: tuple[str, ...]) -> int | None:
    """The line of a list item the key path names (`("events", "3", ...)`: the fourth event)."""
    if len(loc) < 2 or not loc[1].isdigit() or not isinstance(root, yaml.MappingNode):
        return None
    for key, value in root.value:
        if key.value == loc[0] and isinstance(value, yaml.SequenceNode) and int(loc[1]) < len(value.value):
            return value.value[int(loc[1])].start_mark.line + 1
    return None
