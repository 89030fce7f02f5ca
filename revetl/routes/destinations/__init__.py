"""Stream destinations, found through the `revetl.stream_destinations` entry-point group (built-ins too).

`load_stream_destination(route)` picks the class by the route's `destination.type`, expands `${VAR}` in its
settings from the environment and validates them with the class's strict schema.
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from revetl.config import validate, validation_problems
from revetl.destinations import UnsetSetting, expand_settings
from revetl.destinations import unknown_type as unknown
from revetl.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from revetl.routes.destinations.base import StreamDestination

__all__ = ["load_stream_destination", "settings_problems", "stream_types", "unknown_type"]

GROUP = "revetl.stream_destinations"


@functools.lru_cache(maxsize=1)
def stream_types() -> dict[str, Any]:
    """Registered stream destination name -> entry point."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def unknown_type(kind: str) -> str | None:
    """None when stream destination type `kind` is installed, else a sentence naming the nearest and the installed."""
    return unknown(kind, stream_types(), "stream destination")


def settings_problems(destination: dict[str, Any], environ: dict[str, str] | None = None
                      ) -> list[tuple[tuple[str, ...], str]]:
    """Every problem of a route's `destination:` block against its type's schema, as (key path, sentence)."""
    cls = stream_types()[str(destination.get("type"))].load()
    try:
        raw = {k: expand_settings(v, k, environ) for k, v in destination.items()}
    except UnsetSetting as exc:
        return [(tuple(exc.key.split(".")), exc.reason)]
    return validation_problems(cls.config_model, raw)


def load_stream_destination(name: str, path: Path, destination: dict[str, Any], environ: dict[str, str] | None = None
                            ) -> StreamDestination[Any]:
    """The configured destination of route `name` (file `path`); a ConfigError names the file and key."""
    kind = str(destination.get("type", ""))
    problem = unknown_type(kind)
    if problem:
        raise ConfigError(f"{path}: {problem}")
    cls = stream_types()[kind].load()
    try:
        raw = {k: expand_settings(v, k, environ) for k, v in destination.items()}
    except UnsetSetting as exc:
        raise ConfigError(f"{path}: {exc}") from None
    config = validate(cls.config_model, raw, path, where=" destination")
    return cls(name, config)
