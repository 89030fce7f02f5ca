"""The warehouse connection, read from dbt's `profiles.yml`; the only module that opens it.

profiles.yml is rendered with dbt's `env_var()` semantics, so revetl and dbt always agree on where
the warehouse is. Only the DuckDB target type is supported for now; a relative DuckDB path is
taken relative to the project directory (revetl runs dbt from there too).

Sharing the embedded warehouse. DuckDB lets one process write a file, or several read it, never
both: a second process's open fails at once with "Could not set lock". So every revetl command
holds the warehouse only for short steps (a plan, a fold of acknowledgements, a build's publish)
and `connect` waits for the file with backoff (up to REVETL_LOCK_WAIT seconds, default 600),
saying once on stderr which process it waits for. Cron may start many syncs and a build in the
same minute: they take turns for seconds, they do not fail.

Sandbox. A connection that runs analyst SQL (audiences: check, preview, plan, sync) is opened with
`sandbox=True`: DuckDB itself then refuses files, network, extension installs and loads
(`enable_external_access`, `autoinstall/autoload_known_extensions`, `allow_community_extensions`)
and any change of settings (`lock_configuration`), whatever the SQL manages to call.
"""

from __future__ import annotations

import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import jinja2
import yaml

from revetl.config import PROJECT_FILE, Project, read_yaml
from revetl.errors import ConfigError, WarehouseError, first_line

__all__ = ["connect", "duckdb_path", "lock_wait_seconds", "sync_memory_limit", "target_config", "work_dir"]


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


def work_dir(project: Project) -> Path:
    """revetl's own files beside the warehouse: locks, sync journals and plans, the build's staging copy.

    `data/warehouse.duckdb` -> `data/warehouse.revetl/`. Created on first use."""
    path = duckdb_path(project)
    directory = path.with_name(path.name.split(".")[0] + ".revetl")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def lock_wait_seconds() -> float:
    """How long `connect` waits for another process to release the warehouse: $REVETL_LOCK_WAIT, 600 s."""
    raw = os.environ.get("REVETL_LOCK_WAIT", "600")
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ConfigError(f"REVETL_LOCK_WAIT must be a number of seconds, not {raw!r}") from None


# Settings that keep analyst SQL inside the warehouse; applied in this order, the lock last.
_SANDBOX = (
    ("enable_external_access", False),  # no files, no network, no ATTACH, no COPY, no extension loads
    ("autoinstall_known_extensions", False),
    ("autoload_known_extensions", False),
    ("allow_community_extensions", False),
    ("lock_configuration", True),  # and no SET/RESET from here on
)
_LOCKED = re.compile(r"Could not set lock on file(?:.*?\(PID (\d+)\))?", re.S)


def connect(
    project: Project,
    read_only: bool = False,
    memory_limit: str | None = None,
    sandbox: bool = False,
    wait: float | None = None,
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse. Time zone is pinned to UTC: all timestamps are UTC.

    DuckDB runs with the dbt profile's settings and threads, and `memory_limit` when given. While
    another process holds the file, waits up to `wait` seconds (default `lock_wait_seconds()`).
    `sandbox=True` for connections that run analyst SQL (see the module docstring)."""
    path = duckdb_path(project)
    if read_only and not path.exists():
        raise WarehouseError(f"no warehouse at {path} yet; run `revetl build` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = _open(path, read_only, lock_wait_seconds() if wait is None else wait)
    try:
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
                raise ConfigError(f"invalid DuckDB memory limit {memory_limit!r}: {exc}") from None
        if sandbox:
            for name, value in _SANDBOX:
                connection.execute(f"SET {name} = {str(value).lower()}")
    except BaseException:
        connection.close()
        raise
    return connection


def _open(path: Path, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, retried with backoff and jitter while another process holds the file."""
    deadline = time.monotonic() + wait
    delay, told = 0.02, False
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            locked = _LOCKED.search(str(exc))
            if locked is None:
                raise WarehouseError(f"cannot open the warehouse {path}: {first_line(exc)}") from exc
            holder = f"process {locked.group(1)}" if locked.group(1) else "another process"
            if time.monotonic() >= deadline:
                raise WarehouseError(
                    f"the warehouse {path} is still in use by {holder} after {wait:g} s; "
                    "try again later, or wait longer with REVETL_LOCK_WAIT"
                ) from None
            if not told and delay >= 0.5:
                told = True
                print(f"waiting for the warehouse {path}: {holder} is using it", file=sys.stderr, flush=True)
            time.sleep(min(random.uniform(delay / 2, delay), max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 1.0)
