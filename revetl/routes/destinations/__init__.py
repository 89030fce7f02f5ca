"""Stream destinations, found through the `revetl.stream_destinations` entry-point group (built-ins too).

`load_stream_destination(route)` picks the class by the route's `destination.type`, expands `${VAR}` in its
settings from the environment and validates them with the class's strict schema.
"""

from __future__ import annotations

import difflib
import functools
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from revetl.config import expand_env, validate, validation_problems
from revetl.errors import ConfigError

if TYPE_CHECKING:
    from revetl.routes.config import RouteConfig
    from revetl.routes.destinations.base import StreamDestination

__all__ = ["load_stream_destination", "settings_problems", "stream_types", "unknown_type"]

GROUP = "revetl.stream_destinations"


@functools.lru_cache(maxsize=1)
def stream_types() -> dict[str, Any]:
    """Registered stream destination name -> entry point."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def unknown_type(kind: str) -> str | None:
    """None when stream destination type `kind` is installed, else a sentence naming the nearest and the installed."""
    types = sorted(stream_types())
    if kind in types:
        return None
    nearest = difflib.get_close_matches(kind, types, n=1, cutoff=0.6)
    hint = f"; did you mean `{nearest[0]}`?" if nearest else ""
    return f"unknown stream destination type `{kind}`{hint} (installed: {', '.join(types) or 'none'})"


def _expanded(value: Any, key: str, environ: dict[str, str] | None) -> Any:
    """`${VAR}`s expanded; an unset one is a ConfigError whose message starts with the key path."""
    if isinstance(value, str):
        try:
            return expand_env(value, environ)
        except ConfigError as exc:
            raise ConfigError(f"{key}\t{exc}") from None
    if isinstance(value, dict):
        return {k: _expanded(v, f"{key}.{k}", environ) for k, v in value.items()}
    return value


def settings_problems(destination: dict[str, Any], environ: dict[str, str] | None = None
                      ) -> list[tuple[tuple[str, ...], str]]:
    """Every problem of a route's `destination:` block against its type's schema, as (key path, sentence)."""
    cls = stream_types()[str(destination.get("type"))].load()
    try:
        raw = {k: _expanded(v, k, environ) for k, v in destination.items()}
    except ConfigError as exc:
        key, _, message = str(exc).partition("\t")
        return [(tuple(key.split(".")), message)]
    return validation_problems(cls.config_model, raw)


def load_stream_destination(route: RouteConfig, environ: dict[str, str] | None = None) -> StreamDestination[Any]:
    """The configured destination of `route`; a ConfigError names the route file and key."""
    problem = unknown_type(route.destination_type)
    if problem:
        raise ConfigError(f"{route.path}: {problem}")
    cls = stream_types()[route.destination_type].load()
    try:
        raw = {k: _expanded(v, k, environ) for k, v in route.destination.items()}
    except ConfigError as exc:
        key, _, message = str(exc).partition("\t")
        raise ConfigError(f"{route.path}: `destination.{key}`: {message}") from None
    config = validate(cls.config_model, raw, route.path, where=" destination")
    return cls(route.name, config)
