"""Project files -> typed, validated objects. Typos fail loudly with the file and key named.

The project is the directory holding `dbt_project.yml` (found by walking up from the working
directory, as dbt does). revetl's own settings live in `revetl.yml` beside it; the warehouse
connection is read from dbt's `profiles.yml` (one source of truth, see `warehouse.py`).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic import Field, SecretStr

from revetl.errors import ConfigError

__all__ = [
    "CollectSettings",
    "Identity",
    "Project",
    "Settings",
    "SyncConfig",
    "SyncFile",
    "YamlFile",
    "check_sync",
    "expand_env",
    "find_project_root",
    "key_line",
    "load_project",
    "load_sync",
    "named_file",
    "names_in",
    "read_yaml",
    "read_yaml_file",
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


class Settings(Strict):
    """`revetl.yml`: where revetl reads and writes, relative to the project directory."""

    landing_dir: str = "data/events"
    traits_file: str = "traits.yml"
    collect: CollectSettings = CollectSettings()


@dataclass(frozen=True)
class Project:
    """A loaded project: its directory and settings, with paths resolved."""

    root: Path
    settings: Settings
    landing_dir: Path
    traits_file: Path
    target_dir: Path

    def with_landing_dir(self, landing_dir: Path) -> Project:
        return Project(self.root, self.settings, Path(landing_dir), self.traits_file, self.target_dir)

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


def load_project(root: Path | None = None) -> Project:
    """Load the project at `root` (or the one containing the working directory)."""
    root = find_project_root(root)
    path = root / SETTINGS_FILE
    raw = read_yaml(path) if path.exists() else {}
    settings = validate(Settings, raw, path)
    # REVETL_LANDING_DIR overrides the file so that tests and one-off runs can point elsewhere.
    landing = Path(os.environ.get("REVETL_LANDING_DIR") or settings.landing_dir)
    target = Path(os.environ.get("REVETL_TARGET_DIR") or "target")
    return Project(
        root=root,
        settings=settings,
        landing_dir=landing if landing.is_absolute() else root / landing,
        traits_file=root / settings.traits_file,
        target_dir=target if target.is_absolute() else root / target,
    )


# How many values a YAML document may hold once its aliases are expanded. Project files hold
# hundreds; a "billion laughs" (aliases of aliases) holds billions and would take minutes to walk.
YAML_BUDGET = 10_000


@dataclass(frozen=True)
class YamlFile:
    """A YAML file read: its data, its node tree (for lines) and the line of each mapping key path."""

    path: Path
    data: Any
    root: yaml.Node | None
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)  # ("identity", "from") -> line


def read_yaml(path: Path) -> Any:
    """Parse a YAML file; a problem (not UTF-8, a syntax error, an alias bomb) names the file and line."""
    return read_yaml_file(path).data


def read_yaml_file(path: Path) -> YamlFile:
    """`read_yaml`, keeping the node tree and where each key is written."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}, line {line}: the file is not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                          "save it as UTF-8") from None
    loader = _BudgetLoader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: the YAML is nested too deeply") from None
    finally:
        loader.dispose()
    return YamlFile(path, data or {}, root, _key_lines(root))


class _BudgetLoader(yaml.SafeLoader):
    """SafeLoader that refuses a document whose aliases expand past YAML_BUDGET values, or refer to
    the node they are written in, as soon as such an alias is read: before anything walks the expansion."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._expanded = 0
        self._sizes: dict[int, int] = {}
        self._open: set[str] = set()  # anchors of the collections being composed

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                raise yaml.composer.ComposerError(
                    None, None, f"the YAML alias `{event.anchor}` refers to itself", event.start_mark
                )
            node = self.anchors.get(event.anchor)
            self._expanded += self._size(node) if node is not None else 0
            if self._expanded > YAML_BUDGET:
                raise yaml.composer.ComposerError(
                    None, None, f"the YAML aliases expand to more than {YAML_BUDGET:,} values (an alias bomb?)",
                    event.start_mark,
                )
            return super().compose_node(parent, index)
        anchor = getattr(event, "anchor", None)
        if anchor is None:
            return super().compose_node(parent, index)
        self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._open.discard(anchor)

    def _size(self, node: yaml.Node) -> int:
        """Values under `node` with its aliases expanded, memoized (aliases share nodes; no cycles by now)."""
        if id(node) not in self._sizes:
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = node.value
            elif isinstance(node, yaml.MappingNode):
                children = [part for pair in node.value for part in pair]
            self._sizes[id(node)] = 1 + sum(self._size(child) for child in children)
        return self._sizes[id(node)]


def _key_lines(root: yaml.Node | None) -> dict[tuple[str, ...], int]:
    """Path of mapping keys (`("identity", "from")`) -> the line it is written on; aliased nodes once."""
    found: dict[tuple[str, ...], int] = {}
    seen: set[int] = set()

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                here = (*path, str(key.value))
                found.setdefault(here, key.start_mark.line + 1)
                walk(value, here)
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item, path)

    if root is not None:
        walk(root, ())
    return found


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
    """The keys a mapping at `loc` under `model` may hold (none known when it is not a model)."""
    for part in loc:
        fields = {info.alias or name: info for name, info in model.model_fields.items()}
        annotation = fields[part].annotation if part in fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return [info.alias or name for name, info in model.model_fields.items()]


def validate(model: type[Strict], raw: Any, path: Path, where: str = "") -> Any:
    """Validate `raw` against a Strict model; the first problem becomes one sentence."""
    problems = validation_problems(model, raw)
    if problems:
        loc, message = problems[0]
        field_ = f" `{'.'.join(loc)}`" if loc else ""
        raise ConfigError(f"{path}{where}:{field_} {message}")
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
    schedule: str | None = None
    max_remove_share: float = Field(0.5, ge=0, le=1)

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
    try:
        parsed = read_yaml_file(path)
    except ConfigError as exc:
        message = str(exc)
        found = re.match(rf"{re.escape(str(path))}, line (\d+): (.*)", message, re.S)
        if found:
            return SyncFile(None, None, [(int(found.group(1)), found.group(2))])
        return SyncFile(None, None, [(None, message.removeprefix(f"{path}: "))])
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


def key_line(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    """The line of key path `loc`, or of the nearest enclosing key written in the file."""
    return next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)


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
