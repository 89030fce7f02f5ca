"""Project files -> typed, validated objects. Typos fail loudly with the file and key named.

The project is the directory holding `dbt_project.yml` (found by walking up from the working
directory, as dbt does). revetl's own settings live in `revetl.yml` beside it; the warehouse
connection is read from dbt's `profiles.yml` (one source of truth, see `warehouse/connection.py`). YAML is
read by yaml_files.py (lines of keys; non-UTF-8 files and alias bombs refused); `read_yaml` is
re-exported here.
"""

from __future__ import annotations

import os
import re
import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic import Field, SecretStr, field_validator

from revetl.errors import ConfigError
from revetl.schedule.settings import BuildSettings, ScheduleSettings, cron_expression
from revetl.yaml_files import YamlFile, key_line, node_line, read_problems, read_yaml, read_yaml_file

if TYPE_CHECKING:
    from revetl.alerts.settings import AlertSettings

__all__ = [
    "CollectSettings",
    "Identity",
    "Project",
    "Settings",
    "SyncConfig",
    "SyncFile",
    "check_sync",
    "expand_env",
    "find_project_root",
    "load_project",
    "load_sync",
    "named_file",
    "names_in",
    "read_yaml",
    "sync_names",
    "validation_problems",
]

PROJECT_FILE = "dbt_project.yml"
SETTINGS_FILE = "revetl.yml"


class Strict(BaseModel):
    """Base for every config object: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CollectSettings(Strict):
    """`collect:` in revetl.yml: the Segment-compatible collector (`revetl collect`).

    `write_keys` maps a source name to its write key; values may be `${VAR}` / `${VAR:-default}`,
    expanded when the collector starts. `log_dir` (the write-ahead log) is relative to the project
    and can be overridden with REVETL_COLLECTOR_DIR.
    """

    host: str = "127.0.0.1"
    port: int = Field(8088, ge=0, le=65535)
    write_keys: dict[str, SecretStr] = {}
    log_dir: str = "data/collector"
    flush_seconds: float = Field(10.0, gt=0)
    flush_events: int = Field(20_000, gt=0)
    dedupe_window: int = Field(100_000, ge=0)
    workers: int | None = Field(None, ge=0)  # parser processes; None: one per core (max 4)
    read_timeout_seconds: float = Field(10.0, gt=0)  # longest pause inside a request (headers, body)
    idle_timeout_seconds: float = Field(5.0, gt=0)  # a connection with no request in progress is closed


class Settings(Strict):
    """`revetl.yml`: where revetl reads and writes, relative to the project directory."""

    landing_dir: str = "data/events"
    traits_file: str = "traits.yml"
    collect: CollectSettings = CollectSettings()
    schedule: ScheduleSettings = ScheduleSettings()  # `revetl schedule run`: time zone, parallel limit
    build: BuildSettings = BuildSettings()  # the build's own schedule (revetl/schedule/settings.py)
    # `alerts:` (revetl/alerts/settings.py): validated by `load_project` only when the file has the block, since
    # building its models costs every command ~40 ms (a cron line's sync too). Read it as `Project.alerts`.
    alerts: Any = None


@dataclass(frozen=True)
class Project:
    """A loaded project: its directory and settings, with paths resolved."""

    root: Path
    settings: Settings
    landing_dir: Path
    traits_file: Path
    target_dir: Path
    # The profiles.yml output to use (`--target`, else $REVETL_TARGET, else $DBT_TARGET); None: the
    # profile's default. dbt, audiences, plan, state and sync all use it (warehouse/connection.py).
    target: str | None = None

    def with_landing_dir(self, landing_dir: Path) -> Project:
        return dataclasses.replace(self, landing_dir=Path(landing_dir))

    def alert_rules(self, *kinds: str) -> list[Any]:
        """The `alerts:` rules of these kinds (all, without kinds); none, with nothing imported, when revetl.yml
        has no `alerts:` block."""
        if self.settings.alerts is None:
            return []
        return [rule for rule in self.settings.alerts.rules if not kinds or rule.when in kinds]

    @property
    def alerts(self) -> AlertSettings:
        """The `alerts:` block of revetl.yml; without one, no channels and no rules."""
        if self.settings.alerts is not None:
            return self.settings.alerts  # type: ignore[no-any-return]
        from revetl.alerts.settings import AlertSettings

        return AlertSettings()

    @property
    def audiences_dir(self) -> Path:
        return self.root / "audiences"

    @property
    def syncs_dir(self) -> Path:
        return self.root / "syncs"


def find_project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` holding dbt_project.yml."""
    here = Path(start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / PROJECT_FILE).is_file():
            return candidate
    raise ConfigError(f"no {PROJECT_FILE} in {here} or any parent directory; run revetl inside a project")


def load_project(root: Path | None = None, target: str | None = None) -> Project:
    """Load the project at `root` (or the one containing the working directory), for the warehouse
    `target` (a profiles.yml output; default $REVETL_TARGET, $DBT_TARGET, then the profile's own)."""
    root = find_project_root(root)
    path = root / SETTINGS_FILE
    parsed = read_yaml_file(path) if path.exists() else None
    settings = validate(Settings, parsed.data if parsed else {}, path, source=parsed)
    if settings.alerts is not None:
        from revetl.alerts.settings import AlertSettings

        alerts = validate(AlertSettings, settings.alerts, path, source=parsed, at=("alerts",))
        settings = settings.model_copy(update={"alerts": alerts})
    # REVETL_LANDING_DIR overrides the file so that tests and one-off runs can point elsewhere.
    landing = Path(os.environ.get("REVETL_LANDING_DIR") or settings.landing_dir)
    target_dir = Path(os.environ.get("REVETL_TARGET_DIR") or "target")
    return Project(
        root=root,
        settings=settings,
        landing_dir=landing if landing.is_absolute() else root / landing,
        traits_file=root / settings.traits_file,
        target_dir=target_dir if target_dir.is_absolute() else root / target_dir,
        target=target or os.environ.get("REVETL_TARGET") or os.environ.get("DBT_TARGET") or None,
    )


def validation_problems(model: type[BaseModel], raw: Any) -> list[tuple[tuple[str, ...], str]]:
    """Every problem of `raw` against a Strict model: (key path, sentence), in the file's order.

    An unknown key names the nearest known one (`mdoe` -> did you mean `mode`?); a required key
    that such a typo stands for is not reported a second time as missing."""
    try:
        model.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
    else:
        return []
    import difflib  # for a typo's hint: a file that validates never needs it

    problems: list[tuple[tuple[str, ...], str]] = []
    meant: set[tuple[str, ...]] = set()
    for error in errors:
        loc = tuple(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            nearest = difflib.get_close_matches(loc[-1], _known_keys(model, loc[:-1]), n=1, cutoff=0.6)
            hint = f"; did you mean `{nearest[0]}`?" if nearest else ""
            meant.update((*loc[:-1], key) for key in nearest)
            problems.append((loc, f"unknown key{hint}"))
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append((loc, message[:1].lower() + message[1:]))
    return [
        (loc, message) for loc, message in problems
        if not (message == "field required" and loc in meant)
    ]


def _known_keys(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """The keys a mapping at `loc` under `model` may hold (none known when it is not a model); a list
    index or a dict key in `loc` steps into the item's model (`alerts.rules.1`)."""
    current: Any = model
    for part in loc:
        while typing.get_origin(current) is typing.Annotated:
            current = typing.get_args(current)[0]
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {info.alias or name: info for name, info in current.model_fields.items()}
            current = fields[part].annotation if part in fields else None
        elif typing.get_origin(current) in (list, dict):
            current = typing.get_args(current)[-1]
        else:
            return []
    if not (isinstance(current, type) and issubclass(current, BaseModel)):
        return []
    return [info.alias or name for name, info in current.model_fields.items()]


def validate(model: type[BaseModel], raw: Any, path: Path, where: str = "", source: YamlFile | None = None,
             at: tuple[str, ...] = ()) -> Any:
    """Validate `raw` against a Strict model; the first problem becomes one sentence (with its line when
    `source`, the file `raw` was read from, is given; `raw` is found at key path `at` in it)."""
    problems = validation_problems(model, raw)
    if problems:
        loc, message = problems[0]
        loc = (*at, *loc)
        field_ = f" `{'.'.join(loc)}`" if loc else ""
        line = node_line(source.root, loc) if source is not None else None
        raise ConfigError(f"{path}, line {line}:{field_} {message}" if line else f"{path}{where}:{field_} {message}")
    return model.model_validate(raw)


class Identity(Strict):
    """`identity:` in a sync file: which audience column identifies a row at the destination.

    `from` is the audience column (the plan's key), `to` the destination's identifier
    (e.g. Braze `external_id` or `email`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: str = Field(alias="from", min_length=1)
    to: str = Field(min_length=1)


class SyncConfig(Strict):
    """`syncs/NAME.yml`: one audience bound to one destination (DESIGN 5).

    `destination` stays a plain mapping here: its `type` picks a destination plugin, which
    validates the rest with its own strict schema. `${VAR}` values are left unexpanded so that
    a missing secret only matters to the commands that talk to the destination.
    """

    name: str
    path: Path
    audience: str = Field(min_length=1)
    destination: dict[str, Any]
    identity: Identity
    fields: dict[str, str] = {}  # audience column -> destination field
    membership: dict[str, Any] = {}  # destination-specific, e.g. {attribute: in_churn_risk}
    mode: Literal["mirror", "upsert"] = "mirror"
    schedule: str | None = None  # cron, read by `revetl schedule run` (revetl/schedule/)
    after: Literal["build"] | None = None  # `build`: a scheduled run builds first, and runs only if it passed
    max_remove_share: float = Field(0.5, ge=0, le=1)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return cron_expression(value)

    @property
    def key(self) -> str:
        """The audience column whose value is the plan's key."""
        return self.identity.from_

    @property
    def destination_type(self) -> str:
        return str(self.destination.get("type", ""))


def names_in(directory: Path, suffix: str) -> list[str]:
    """Names (stems) of the `*suffix` files in `directory`, sorted."""
    return sorted(p.stem for p in directory.glob(f"*{suffix}"))


def named_file(directory: Path, name: str, suffix: str, kind: str) -> Path:
    """`directory/NAME+suffix`; an unknown name is an error that lists the known ones."""
    path = directory / f"{name}{suffix}"
    if not path.is_file():
        known = ", ".join(names_in(directory, suffix)) or "none"
        raise ConfigError(f"no {kind} named {name!r} (no {path}); known {kind}s: {known}")
    return path


def sync_names(project: Project) -> list[str]:
    """Names of the sync files in `syncs/`, sorted."""
    return names_in(project.syncs_dir, ".yml")


@dataclass(frozen=True)
class SyncFile:
    """A sync file checked: the config when valid, and every problem as (line or None, sentence)."""

    yaml: YamlFile | None  # None when the file could not be read or parsed
    sync: SyncConfig | None
    problems: list[tuple[int | None, str]]


def check_sync(project: Project, name: str) -> SyncFile:
    """Read and validate `syncs/NAME.yml`, collecting every problem with its line.

    Unknown keys name the nearest known one; the destination's own settings are its plugin's to
    check (destinations.load_destination)."""
    path = named_file(project.syncs_dir, name, ".yml", "sync")
    parsed, unreadable = read_problems(path)
    if parsed is None:
        return SyncFile(None, None, unreadable)
    raw = parsed.data
    if not isinstance(raw, dict):
        return SyncFile(parsed, None, [(1, "a sync file is a mapping (audience, destination, identity, ...)")])
    problems: list[tuple[int | None, str]] = []
    for loc, message in validation_problems(SyncConfig, {**raw, "name": name, "path": path}):
        shown = f"`{'.'.join(loc)}` " if loc else ""
        problems.append((key_line(parsed.lines, loc), f"{shown}{message}"))
    destination = raw.get("destination")
    if isinstance(destination, dict) and not destination.get("type"):
        problems.append((parsed.lines.get(("destination",)), (
            "`destination` needs a `type` (braze, salesforce, intercom, ...)"
        )))
    problems.sort(key=lambda problem: (problem[0] is None, problem[0] or 0))  # keys not written last
    sync = None if problems else SyncConfig.model_validate({**raw, "name": name, "path": path})
    return SyncFile(parsed, sync, problems)


def load_sync(project: Project, name: str) -> SyncConfig:
    """Read and validate `syncs/NAME.yml`; the first problem is a ConfigError naming the file and line.

    An unknown name lists the syncs that exist."""
    checked = check_sync(project, name)
    if checked.problems:
        line, message = checked.problems[0]
        path = project.syncs_dir / f"{name}.yml"
        raise ConfigError(f"{path}, line {line}: {message}" if line else f"{path}: {message}")
    assert checked.sync is not None
    return checked.sync


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(text: str, environ: dict[str, str] | None = None) -> str:
    """Expand `${VAR}` and `${VAR:-default}`; an unset VAR without default is a ConfigError."""
    env = os.environ if environ is None else environ

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"environment variable {name} is not set")

    return _VAR.sub(replace, text)
