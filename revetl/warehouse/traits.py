"""traits.yml -> validated computed-trait definitions, passed to dbt as vars.

A typo fails the build before dbt runs, with the file, line and trait named. macros/traits.sql
renders each definition as SQL for the target's engine; the one piece of SQL a trait carries itself,
`where`, is written in DuckDB's dialect (as audiences are) and transpiled by sqlglot to the target's.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import sqlglot
import yaml
from pydantic import Field, field_validator, model_validator

from revetl.config import Strict, read_yaml, validate
from revetl.errors import ConfigError

__all__ = ["TRAIT_KINDS", "TraitFile", "TraitSpec", "load_traits"]

TRAIT_KINDS = ("count", "sum", "avg", "min", "max", "first", "last", "most_frequent", "unique_list")
_NUMERIC_KINDS = {"sum", "avg", "min", "max"}
_NEEDS_PROPERTY = set(TRAIT_KINDS) - {"count"}
_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_WINDOW = re.compile(r"^\d+ (minute|hour|day|week|month|year)s?$")
_RESERVED = {"profile_id"}


class TraitSpec(Strict):
    """One computed trait: a column of profile_traits."""

    name: str
    kind: str
    event: list[str] | None = None
    event_type: list[Literal["track", "identify", "page", "screen", "group", "alias"]] | None = None
    property: str | None = None
    source: Literal["properties", "traits", "context"] = "properties"
    as_: Literal["number", "string"] | None = Field(default=None, alias="as")
    window: str | None = None
    where: str | None = None

    @field_validator("event", "event_type", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> TraitSpec:
        if not _NAME.match(self.name) or self.name in _RESERVED:
            raise ValueError(f"name {self.name!r} must be a lower-case SQL identifier other than profile_id")
        if self.kind not in TRAIT_KINDS:
            raise ValueError(f"unknown kind {self.kind!r}; expected one of {', '.join(TRAIT_KINDS)}")
        if self.kind in _NEEDS_PROPERTY and not self.property:
            raise ValueError(f"kind {self.kind!r} needs a `property`")
        if self.kind == "count" and self.property:
            raise ValueError("kind 'count' takes no `property`")
        if self.kind in {"sum", "avg"} and self.as_ == "string":
            raise ValueError(f"kind {self.kind!r} needs numbers, not `as: string`")
        if self.window is not None and not _WINDOW.match(self.window.strip()):
            raise ValueError(f"window {self.window!r} must look like '30 days' or '12 hours'")
        return self

    def as_var(self, dialect: str = "duckdb") -> dict[str, Any]:
        """The dict macros/traits.sql renders, its `where` in the sqlglot `dialect` of the target."""
        value_type = self.as_ or ("number" if self.kind in _NUMERIC_KINDS else "string")
        return {
            "name": self.name,
            "kind": self.kind,
            "event": self.event,
            "event_type": self.event_type,
            "property": self.property,
            "source": self.source,
            "as": value_type,
            "window": self.window.strip() if self.window else None,
            "where": _transpiled(self.where, dialect) if self.where else None,
        }


def _transpiled(where: str, dialect: str) -> str:
    """A DuckDB condition in `dialect` (unchanged for DuckDB itself: it runs as written)."""
    if dialect == "duckdb":
        return where
    return sqlglot.parse_one(where, read="duckdb").sql(dialect=dialect)


class TraitFile(Strict):
    """The whole traits.yml."""

    traits: list[dict[str, Any]] = []
    models: list[str] = []


def _item_lines(text: str) -> list[int]:
    """1-based line of each item under the top-level `traits:` key, for error messages."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == "traits" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def load_traits(path: Path, dialect: str = "duckdb") -> tuple[list[TraitSpec], list[str]]:
    """Read and validate traits.yml for a warehouse of the sqlglot `dialect`; a missing file means no
    computed traits. A `where` another dialect cannot be given is an error naming its line."""
    if not path.exists():
        return [], []
    raw = read_yaml(path)
    parsed: TraitFile = validate(TraitFile, raw, path)
    lines = _item_lines(path.read_text(encoding="utf-8"))
    specs: list[TraitSpec] = []
    seen: set[str] = set()
    for index, item in enumerate(parsed.traits):
        where = f", line {lines[index]}" if index < len(lines) else ""
        name = item.get("name") if isinstance(item, dict) else None
        label = f" trait `{name}`" if name else f" trait #{index + 1}"
        spec = validate(TraitSpec, item, path, where=where + ":" + label)
        if spec.where and dialect != "duckdb":
            try:
                _transpiled(spec.where, dialect)
            except sqlglot.errors.SqlglotError as exc:
                reason = " ".join(str(exc).split())
                raise ConfigError(f"{path}{where}:{label}: `where` is not a DuckDB SQL condition revetl can "
                                  f"write for {dialect} ({reason})") from None
        if spec.name in seen:
            raise ConfigError(f"{path}{where}:{label}: the name is used twice")
        seen.add(spec.name)
        specs.append(spec)
    for model in parsed.models:
        if not _NAME.match(model):
            raise ConfigError(f"{path}: `models` entry {model!r} is not a model name")
    return specs, parsed.models
