"""The warehouse connection, read from dbt's `profiles.yml`; the only module that opens it.

profiles.yml is rendered with dbt's `env_var()` semantics, so revetl and dbt always agree on where
the warehouse is. Only the DuckDB target type is supported for now; a relative DuckDB path is
taken relative to the project directory (revetl runs dbt from there too).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import yaml

from revetl.config import PROJECT_FILE, Project, read_yaml
from revetl.errors import ConfigError, WarehouseError

__all__ = ["connect", "duckdb_path", "sync_memory_limit", "target_config"]


def _env_var(name: str, default: str | None = None) -> str:
    if name in os.environ:
        return os.environ[name]
    if default is not None:
        return default
    raise ConfigError(f"profiles.yml uses env_var('{name}') but {name} is not set")


def target_config(project: Project) -> dict[str, Any]:
    """The active dbt target (profile from dbt_project.yml, target from DBT_TARGET or the default)."""
    profile_name = read_yaml(project.root / PROJECT_FILE).get("profile")
    path = project.root / "profiles.yml"
    template = jinja2.Template(path.read_text(encoding="utf-8"))
    try:
        profiles = yaml.safe_load(template.render(env_var=_env_var)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML after rendering: {exc}") from None
    profile = profiles.get(profile_name)
    if not isinstance(profile, dict):
        raise ConfigError(f"{path}: no profile named {profile_name!r} (from {PROJECT_FILE})")
    target = os.environ.get("DBT_TARGET") or profile.get("target")
    outputs = profile.get("outputs") or {}
    if target not in outputs:
        raise ConfigError(f"{path}: profile {profile_name!r} has no target {target!r}")
    return outputs[target]


def duckdb_path(project: Project) -> Path:
    """The DuckDB file the dbt target points at, absolute."""
    config = target_config(project)
    if config.get("type") != "duckdb":
        raise ConfigError(f"warehouse type {config.get('type')!r} is not supported yet; use duckdb")
    path = Path(str(config.get("path", "")))
    if not str(path) or str(path) == ":memory:":
        raise ConfigError("profiles.yml: the duckdb target needs a file `path`")
    return path if path.is_absolute() else project.root / path


def sync_memory_limit() -> str:
    """DuckDB's memory cap when planning and syncing: $REVETL_SYNC_MEMORY_LIMIT, default 128MB.

    Beyond it DuckDB spills to disk. Measured (bench/plan_bench.py, bench/sync_bench.py): a 10M-member
    plan takes 14 s at 128MB against 9 s at 3GB, with 0.3 GB of RSS instead of 2.6; a sync of 1M rows
    is as fast at 128MB as at 3GB and stays under 400 MB. A sync is a cron job beside other work:
    small by default, raise it for speed.
    """
    return os.environ.get("REVETL_SYNC_MEMORY_LIMIT", "128MB")


def connect(project: Project, read_only: bool = False, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """Open the warehouse. Time zone is pinned to UTC: all timestamps are UTC.

    DuckDB runs with the dbt profile's settings and threads, and `memory_limit` when given."""
    path = duckdb_path(project)
    if read_only and not path.exists():
        raise WarehouseError(f"no warehouse at {path} yet; run `revetl build` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = duckdb.connect(str(path), read_only=read_only)
    except duckdb.Error as exc:
        raise WarehouseError(f"cannot open the warehouse {path}: {exc}") from exc
    connection.execute("SET TimeZone = 'UTC'")
    # The same limits dbt runs with (profiles.yml `settings`, `threads`): one memory budget for both.
    config = target_config(project)
    for name, value in (config.get("settings") or {}).items():
        if name.lower() != "timezone":
            connection.execute(f"SET {name} = ?", [value])  # names come from the project's own profile
    if config.get("threads"):
        connection.execute("SET threads = ?", [int(config["threads"])])
    if memory_limit:
        try:
            connection.execute("SET memory_limit = ?", [memory_limit])
        except duckdb.Error as exc:
            connection.close()
            raise ConfigError(f"invalid DuckDB memory limit {memory_limit!r}: {exc}") from None
    return connection
