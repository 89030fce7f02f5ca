"""Destinations, found through the `revetl.destinations` entry-point group (built-ins too).

`load_destination(sync)` picks the class by the sync's `destination.type`, expands `${VAR}` in
its settings from the environment and validates them with the class's strict schema.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from revetl.config import SyncConfig, expand_env, validate
from revetl.destinations.base import Destination, Row, RowResult
from revetl.errors import ConfigError

__all__ = ["Destination", "Row", "RowResult", "destination_types", "load_destination"]

GROUP = "revetl.destinations"


def destination_types() -> dict[str, Any]:
    """Registered destination name -> entry point."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def _expand(value: Any, sync: SyncConfig, key: str, environ: dict[str, str] | None) -> Any:
    if isinstance(value, str):
        try:
            return expand_env(value, environ)
        except ConfigError as exc:
            raise ConfigError(f"{sync.path}: `destination.{key}`: {exc}") from None
    if isinstance(value, dict):
        return {k: _expand(v, sync, f"{key}.{k}", environ) for k, v in value.items()}
    return value


def load_destination(sync: SyncConfig, environ: dict[str, str] | None = None) -> Destination:
    """The configured destination of `sync`; a ConfigError names the sync file and key."""
    types = destination_types()
    kind = sync.destination_type
    if kind not in types:
        known = ", ".join(sorted(types)) or "none installed"
        raise ConfigError(f"{sync.path}: unknown destination type {kind!r} (known: {known})")
    cls: type[Destination] = types[kind].load()
    raw = {k: _expand(v, sync, k, environ) for k, v in sync.destination.items()}
    config = validate(cls.config_model, raw, sync.path, where=" destination")
    return cls(sync=sync, config=config)
