"""The warehouse connection, read from dbt's `profiles.yml`; the only module that opens it.

profiles.yml is rendered with dbt's `env_var()` semantics, so revetl and dbt always agree on where
the warehouse is. Target types: `duckdb` (a relative path is taken relative to the project directory,
where revetl runs dbt too) and `postgres` (host, port, user, password, dbname; `schema` is the session's
search_path).

`connect` opens the target's engine (embedded.py: DuckDB; postgres.py: PostgreSQL over ADBC; spark.py: the
sync state's DuckDB file, its `source` a Spark session) and returns the one seam the rest of revetl talks
to, a `Connection` (base.py). On DuckDB it waits while another
process holds the embedded file (up to REVETL_LOCK_WAIT seconds, default 600). `sandbox=True` locks a
connection that runs analyst SQL away from files, network, extensions and settings (each engine's module
says how and why). `lock` and `locked` reach a named lock (one sync run, one build) without opening the
embedded file: an flock in the work directory on DuckDB, an advisory lock on PostgreSQL (advisory.py).
"""

from __future__ import annotations

import copy
import functools
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from revetl.config import PROJECT_FILE, Project
from revetl.errors import ConfigError, WarehouseError
from revetl.runtime import SYSTEM, Clock
from revetl.warehouse.base import Connection
from revetl.yaml_files import read_yaml_key, safe_load

if TYPE_CHECKING:  # the driver is loaded by the commands that reach a PostgreSQL target
    import jinja2
    from collections.abc import Callable
    from contextlib import AbstractContextManager

    from pyspark.sql import SparkSession

    from revetl.warehouse.libpq import Server

_SUPPORTED = "use duckdb, postgres or spark"

__all__ = ["Connection", "connect", "dbt_target_path", "dialect", "duckdb_path", "lock", "lock_wait_seconds", "locked",
           "postgres_server", "spark_session", "sync_memory_limit", "target_config", "target_name", "warehouse_type", "work_dir"]


def _env_var(name: str, default: str | None = None) -> str:
    if name in os.environ:
        return os.environ[name]
    if default is not None:
        return default
    raise ConfigError(f"profiles.yml uses env_var('{name}') but {name} is not set")


def _profile(project: Project) -> tuple[str, dict[str, Any]]:
    """(profile name, the profile) from profiles.yml, rendered."""
    profile_name = read_yaml_key(project.root / PROJECT_FILE, "profile")
    path = project.root / "profiles.yml"
    try:
        profiles = _profiles(render_profiles(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML after rendering: {exc}") from None
    profile = profiles.get(profile_name)
    if not isinstance(profile, dict):
        raise ConfigError(f"{path}: no profile named {profile_name!r} (from {PROJECT_FILE})")
    return profile_name, profile


def target_name(project: Project) -> str:
    """The profiles.yml output in use: the project's `--target` (or $REVETL_TARGET), else the profile's."""
    return str(project.target or _profile(project)[1].get("target"))


def target_config(project: Project) -> dict[str, Any]:
    """The active dbt target's output (profile from dbt_project.yml, target from `target_name`)."""
    profile_name, profile = _profile(project)
    target = str(project.target or profile.get("target"))  # target_name's, from the profile read here
    outputs = profile.get("outputs") or {}
    if target not in outputs:
        known = ", ".join(sorted(map(str, outputs))) or "none"
        raise ConfigError(f"{project.root / 'profiles.yml'}: profile {profile_name!r} has no target {target!r} "
                          f"(its targets: {known})")
    return copy.deepcopy(outputs[target])


def warehouse_type(project: Project) -> str:
    """The target's dbt adapter type: `duckdb`, `postgres`, ..."""
    return str(target_config(project).get("type"))


def dbt_target_path(project: Project) -> Path:
    """dbt's target directory for the target in use (`target/<name>`): manifests of two warehouses
    never overwrite each other."""
    return project.target_dir / target_name(project)


# `{{ env_var('NAME') }}`, `{{ env_var('NAME', 'default') }}`, either `| int`: what profiles.yml files hold
_ENV_VAR = re.compile(r"""\{\{\s*env_var\(\s*'([A-Za-z_][A-Za-z0-9_]*)'\s*(?:,\s*'([^'\\{}]*)'\s*)?\)\s*(\|\s*int\s*)?\}\}""")


def render_profiles(text: str) -> str:
    """profiles.yml's text rendered as dbt renders it. A file whose only Jinja is `env_var` calls (with a
    default, or `| int`) is rendered here, without loading Jinja (a cron line's sync does not pay for it);
    any other Jinja by Jinja itself."""
    if "{%" not in text and "{#" not in text:
        rendered = _ENV_VAR.sub(lambda match: _env_value(*match.groups()), text)
        if "{{" not in rendered:
            return rendered
    return _template(text).render(env_var=_env_var)


def _env_value(name: str, default: str | None, to_int: str | None) -> str:
    value = _env_var(name, default)
    if not to_int:
        return value
    try:  # Jinja's `int` filter: a number's integer part, else 0
        return str(int(value))
    except ValueError:
        try:
            return str(int(float(value)))
        except ValueError:
            return "0"


# A command reads the target several times (connect, compile, the build's staging copy): profiles.yml's
# Jinja is compiled once per text, and its YAML parsed once per rendering.
@functools.lru_cache(maxsize=4)
def _template(text: str) -> jinja2.Template:
    import jinja2

    return jinja2.Template(text)


@functools.lru_cache(maxsize=4)
def _profiles(rendered: str) -> dict[str, Any]:
    return safe_load(rendered) or {}


def duckdb_path(project: Project) -> Path:
    """The DuckDB file the dbt target points at, absolute."""
    config = target_config(project)
    if config.get("type") != "duckdb":
        raise ConfigError(f"target {target_name(project)!r} is a {config.get('type')} warehouse, not a DuckDB file")
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
    """revetl's own files for the target: locks, sync journals and plans, the build's staging copy.

    $REVETL_WORK_DIR when set; on DuckDB beside the warehouse file (`data/warehouse.duckdb` ->
    `data/warehouse.revetl/`); on a server warehouse `data/<target>.revetl/` in the project.
    Created on first use."""
    if os.environ.get("REVETL_WORK_DIR"):
        directory = Path(os.environ["REVETL_WORK_DIR"])
    elif warehouse_type(project) == "duckdb":
        path = duckdb_path(project)
        directory = path.with_name(path.name.split(".")[0] + ".revetl")
    else:
        directory = project.root / "data" / f"{target_name(project)}.revetl"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def lock_wait_seconds() -> float:
    """How long `connect` waits for another process to release the warehouse: $REVETL_LOCK_WAIT, 600 s."""
    raw = os.environ.get("REVETL_LOCK_WAIT", "600")
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise ConfigError(f"REVETL_LOCK_WAIT must be a number of seconds, not {raw!r}") from None


def dialect(project: Project) -> str:
    """The sqlglot dialect of the project's warehouse."""
    from revetl.warehouse.dialect import DIALECTS

    kind = str(target_config(project).get("type"))
    if kind not in DIALECTS:
        raise ConfigError(f"warehouse type {kind!r} is not supported yet; {_SUPPORTED}")
    return DIALECTS[kind]


def postgres_server(project: Project) -> Server:
    """The PostgreSQL database the target names (profiles.yml: host, port, user, password, dbname, schema)."""
    from revetl.warehouse.libpq import Server

    config = target_config(project)
    path = project.root / "profiles.yml"
    try:
        port = int(config.get("port") or 5432)
    except (TypeError, ValueError):
        raise ConfigError(f"{path}: target {target_name(project)!r} has port {config.get('port')!r}, "
                          "not a number") from None
    return Server(host=str(config.get("host") or "127.0.0.1"), port=port, user=str(config.get("user") or ""),
                  password=str(config.get("password") or ""),
                  dbname=str(config.get("dbname") or config.get("database") or ""),
                  schema=str(config.get("schema") or "public"))


def lock(project: Project, name: str, refuse: Callable[[str], Exception]) -> AbstractContextManager[None]:
    """A context manager holding the lock `name` of the project's warehouse for its block (one sync run, one
    build), without holding the warehouse itself: whoever else takes it meanwhile, in any process on any host
    reaching this warehouse, gets `refuse(holder)` raised at once, `holder` saying in a few words who holds it
    ("pid 1234"). Released when the block ends or its process dies: an flock in `work_dir` on DuckDB, an
    advisory lock held by a session of its own on PostgreSQL (advisory.py)."""
    if warehouse_type(project) == "postgres":
        from revetl.warehouse.advisory import advisory_lock
        from revetl.warehouse.postgres import session

        return advisory_lock(functools.partial(session, postgres_server(project)), name, refuse)
    from revetl import locks

    return locks.hold(locks.lock_path(work_dir(project), name), refuse)


def locked(project: Project, name: str) -> bool:
    """Whether a live process holds the named lock of the project's warehouse now."""
    if warehouse_type(project) == "postgres":
        from revetl.warehouse.advisory import advisory_locked
        from revetl.warehouse.postgres import session

        with session(postgres_server(project), {"TimeZone": "UTC"}) as connection:
            return advisory_locked(connection, name)
    from revetl import locks

    return locks.held(locks.lock_path(work_dir(project), name))


def connect(
    project: Project,
    read_only: bool = False,
    memory_limit: str | None = None,
    sandbox: bool = False,
    wait: float | None = None,
    clock: Clock = SYSTEM,
) -> Connection:
    """Open the warehouse (see `Connection`, base.py). Time zone is pinned to UTC: all timestamps are UTC.

    The engine runs with the dbt profile's settings and threads (one memory budget for dbt and revetl),
    and `memory_limit` when given. While another process holds the file, waits up to `wait` seconds
    (default `lock_wait_seconds()`). `sandbox=True` for connections that run analyst SQL (embedded.py,
    postgres.py). On PostgreSQL `memory_limit` and `wait` do not apply (the server shares itself)."""
    kind = warehouse_type(project)
    if kind == "postgres":
        from revetl.warehouse.postgres import open_server

        return open_server(postgres_server(project), read_only=read_only, sandbox=sandbox)
    if kind == "spark":
        return _spark_state(project, read_only, memory_limit, wait, clock)
    if kind != "duckdb":
        raise ConfigError(f"warehouse type {kind!r} is not supported yet; {_SUPPORTED}")
    from revetl.warehouse.embedded import open_file

    path = duckdb_path(project)
    if read_only and not path.exists():
        raise WarehouseError(f"no warehouse at {path} yet; run `revetl build` first")
    path.parent.mkdir(parents=True, exist_ok=True)
    config = target_config(project)
    return open_file(
        path, read_only=read_only, wait=lock_wait_seconds() if wait is None else wait,
        settings=config.get("settings") or {}, threads=config.get("threads"), memory_limit=memory_limit,
        sandbox=sandbox, clock=clock,
    )


def spark_session(project: Project, wait: float | None = None) -> SparkSession:
    """This process's Spark session for the project's `spark` target (warehouse/spark.py), started on first use."""
    from revetl.warehouse.spark import session

    return session(project.root, target_config(project), lock_wait_seconds() if wait is None else wait)


def _spark_state(project: Project, read_only: bool, memory_limit: str | None, wait: float | None,
                 clock: Clock) -> Connection:
    """On Spark, the connection is the sync state's DuckDB file in the work directory, its `source` the Spark
    session (warehouse/spark.py says why), started when first read. Analyst SQL runs on Spark, so the file
    needs no sandbox."""
    from revetl.warehouse.embedded import open_file
    from revetl.warehouse.spark import SparkConnection, SparkState

    wait = lock_wait_seconds() if wait is None else wait
    schema = str(target_config(project).get("schema") or "default")

    def source() -> SparkConnection:
        return SparkConnection(spark_session(project, wait), schema)

    path = work_dir(project) / "state.duckdb"
    return open_file(path, read_only=read_only and path.exists(), wait=wait, settings={"TimeZone": "UTC"},
                     threads=None, memory_limit=memory_limit, sandbox=False, clock=clock,
                     wrap=functools.partial(SparkState, source=source))
