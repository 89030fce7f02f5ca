"""The collector's runtime configuration: `collect:` in revetl.yml, resolved once at start-up.

Write keys are expanded from the environment here (`${REVETL_WRITE_KEY_WEB:-dev-web-key}`) and kept
only as a key -> source-name map that is never printed (`repr=False`), logged or put in error text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from revetl.alerts.settings import AlertSettings
from revetl.collect.workers import default_workers
from revetl.config import Project, expand_env
from revetl.errors import CollectError, ConfigError
from revetl.governance import Gate, project_gate

__all__ = ["CollectorConfig", "collector_dir", "routes_log_dir"]

# Requests are refused with 503 (retry later) while this many events wait to be rolled into
# Parquet, as a multiple of `flush_events`: memory stays bounded when the landing disk is stuck.
_BUFFER_FACTOR = 5
_MIN_BUFFERED = 50_000


def collector_dir(project: Project) -> Path:
    """The write-ahead log directory: REVETL_COLLECTOR_DIR, else `collect.log_dir`, absolute."""
    path = Path(os.environ.get("REVETL_COLLECTOR_DIR") or project.settings.collect.log_dir)
    return path if path.is_absolute() else project.root / path


def routes_log_dir(log_dir: Path) -> Path:
    """Where the collector keeps landed log segments for the routes, under its log directory."""
    return log_dir / "routes" / "log"


@dataclass(frozen=True)
class CollectorConfig:
    """Everything `revetl collect` needs, with paths absolute and write keys expanded."""

    host: str
    port: int
    landing_dir: Path
    log_dir: Path
    flush_seconds: float
    flush_events: int
    dedupe_window: int
    workers: int
    sources_by_key: dict[str, str] = field(repr=False)
    access_log: bool = True
    read_timeout: float = 10.0
    idle_timeout: float = 5.0
    alerts: AlertSettings = field(default_factory=AlertSettings, repr=False)  # collector_degraded and violations rules
    project: str = ""  # the project directory's name, in alerts
    # When the project has routes (routes/*.yml): landed log segments move here for `revetl routes run`
    # to read (revetl/routes/feed.py) and each logged row names its source; None: they are deleted.
    routes_log: Path | None = None
    gate: Gate | None = field(default=None, repr=False)  # the tracking plans (revetl/governance/)

    @property
    def sources(self) -> list[str]:
        """The configured source names, sorted (safe to print)."""
        return sorted(set(self.sources_by_key.values()))

    @property
    def max_buffered_events(self) -> int:
        """Above this many events waiting for Parquet, requests get 503 and a Retry-After."""
        return max(_MIN_BUFFERED, _BUFFER_FACTOR * self.flush_events)

    @classmethod
    def from_project(
        cls,
        project: Project,
        host: str | None = None,
        port: int | None = None,
        flush_seconds: float | None = None,
        flush_events: int | None = None,
        workers: int | None = None,
        access_log: bool = True,
    ) -> CollectorConfig:
        """Resolve the project's `collect:` settings; arguments given here win over the file."""
        settings = project.settings.collect
        config = cls(
            host=host or settings.host,
            port=settings.port if port is None else port,
            landing_dir=project.landing_dir,
            log_dir=collector_dir(project),
            flush_seconds=settings.flush_seconds if flush_seconds is None else flush_seconds,
            flush_events=settings.flush_events if flush_events is None else flush_events,
            dedupe_window=settings.dedupe_window,
            workers=next(w for w in (workers, settings.workers, default_workers()) if w is not None),
            sources_by_key=_expand_keys({k: v.get_secret_value() for k, v in settings.write_keys.items()}),
            access_log=access_log,
            read_timeout=settings.read_timeout_seconds,
            idle_timeout=settings.idle_timeout_seconds,
            alerts=project.alerts,
            project=project.root.name,
            routes_log=routes_log_dir(collector_dir(project)) if any((project.root / "routes").glob("*.yml")) else None,
            gate=project_gate(project),
        )
        if config.flush_seconds <= 0 or config.flush_events <= 0:
            raise CollectError("flush seconds and flush events must both be positive")
        if config.workers < 0:
            raise CollectError(f"workers must be 0 or more, not {config.workers}")
        if not 0 <= config.port <= 65535:
            raise CollectError(f"port {config.port} is not between 0 and 65535")
        return config


def _expand_keys(raw: dict[str, str]) -> dict[str, str]:
    """source -> `${VAR}` template  =>  expanded key -> source; blank or shared keys are errors."""
    if not raw:
        raise ConfigError("revetl.yml: `collect.write_keys` is empty; add at least one `source: key`")
    by_key: dict[str, str] = {}
    for source, template in sorted(raw.items()):
        try:
            key = expand_env(template).strip()
        except ConfigError as exc:
            raise ConfigError(f"revetl.yml: `collect.write_keys.{source}`: {exc}") from None
        if not key:
            raise ConfigError(f"revetl.yml: `collect.write_keys.{source}` is empty once expanded")
        if key in by_key:
            raise ConfigError(
                f"revetl.yml: sources `{by_key[key]}` and `{source}` share one write key; give each its own"
            )
        by_key[key] = source
    return by_key
