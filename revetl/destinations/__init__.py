"""Destinations, found through the `revetl.destinations` entry-point group (built-ins too).

`load_destination(sync)` picks the class by the sync's `destination.type`, expands `${VAR}` in
its settings from the environment and validates them with the class's strict schema.
"""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, distribution, entry_points
from typing import Any

from revetl.config import SyncConfig, expand_env, validate, validation_problems
from revetl.destinations.base import Destination, DestinationConfig, HttpOptions, Row, RowResult
from revetl.errors import ConfigError

__all__ = [
    "Destination", "DestinationConfig", "HttpOptions", "Row", "RowResult", "destination_types", "load_destination",
    "expand_settings", "settings_problems", "unknown_type", "UnsetSetting",
]

GROUP = "revetl.destinations"


@functools.lru_cache(maxsize=1)
def destination_types() -> dict[str, Any]:
    """Registered destination name -> entry point (read once per process: the scan reads every installed
    distribution's metadata); revetl's own names are its built-ins, whatever another package registers."""
    return {**{ep.name: ep for ep in entry_points(group=GROUP)}, **_built_in()}


@functools.lru_cache(maxsize=1)
def _built_in() -> dict[str, Any]:
    """revetl's own destinations, from its own metadata alone: a sync to a built-in (a cron line's) does not pay
    for the scan of every installed package."""
    try:
        return {ep.name: ep for ep in distribution("revetl").entry_points.select(group=GROUP)}
    except PackageNotFoundError:  # run from a source tree that was never installed
        return {}


def _entry_point(kind: str) -> Any:
    """The entry point of destination type `kind`, or None when it is not installed."""
    return _built_in().get(kind) or destination_types().get(kind)


def unknown_type(kind: str, installed: dict[str, Any] | None = None, what: str = "destination") -> str | None:
    """None when destination type `kind` is installed (in `installed`, default the sync destinations), else a
    sentence naming the nearest and the installed ones."""
    types = sorted(destination_types() if installed is None else installed)
    if kind in types:
        return None
    import difflib  # only for a type that is not installed

    nearest = difflib.get_close_matches(kind, types, n=1, cutoff=0.6)
    hint = f"; did you mean `{nearest[0]}`?" if nearest else ""
    return f"unknown {what} type `{kind}`{hint} (installed: {', '.join(types) or 'none'})"


class UnsetSetting(ConfigError):
    """A `${VAR}` in a destination setting (`key`, dotted) is not set in the environment."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"`destination.{key}`: {message}")
        self.key = key
        self.reason = message


def expand_settings(value: Any, key: str, environ: dict[str, str] | None) -> Any:
    """A destination setting with its `${VAR}`s expanded (nested mappings too); UnsetSetting names the key."""
    if isinstance(value, str):
        try:
            return expand_env(value, environ)
        except ConfigError as exc:
            raise UnsetSetting(key, str(exc)) from None
    if isinstance(value, dict):
        return {k: expand_settings(v, f"{key}.{k}", environ) for k, v in value.items()}
    return value


def _expand(value: Any, sync: SyncConfig, key: str, environ: dict[str, str] | None) -> Any:
    try:
        return expand_settings(value, key, environ)
    except UnsetSetting as exc:
        raise ConfigError(f"{sync.path}: {exc}") from None


def load_destination(sync: SyncConfig, environ: dict[str, str] | None = None) -> Destination[Any]:
    """The configured destination of `sync`; a ConfigError names the sync file and key."""
    entry = _entry_point(sync.destination_type)
    if entry is None:
        raise ConfigError(f"{sync.path}: {unknown_type(sync.destination_type)}")
    cls: type[Destination[Any]] = entry.load()
    raw = {k: _expand(v, sync, k, environ) for k, v in sync.destination.items()}
    config = validate(cls.config_model, raw, sync.path, where=" destination")
    return cls(sync=sync, config=config)


def settings_problems(sync: SyncConfig, environ: dict[str, str] | None = None) -> list[tuple[tuple[str, ...], str]]:
    """Every problem of the sync's `destination:` settings against its type's schema, as (key path, sentence).

    For `revetl audiences check`; the type must be installed and its `${VAR}`s set."""
    cls: type[Destination[Any]] = _entry_point(sync.destination_type).load()
    raw = {k: _expand(v, sync, k, environ) for k, v in sync.destination.items()}
    return validation_problems(cls.config_model, raw)
