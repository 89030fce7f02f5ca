"""YAML project files -> data, with the line of each key; hostile files refused with file and line.

Every YAML file revetl reads (revetl.yml, traits.yml, sync files, dbt_project.yml) goes through
`read_yaml_file`: a file that is not UTF-8 names the line of the first bad byte; a syntax error
names its line; a document whose aliases expand past YAML_BUDGET values (a "billion laughs") or
refer to the collection they are written in is refused while it is being composed, before
anything walks the expansion.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from revetl.errors import ConfigError

__all__ = ["YAML_BUDGET", "YamlFile", "key_line", "node_line", "read_problems", "read_yaml", "read_yaml_file",
           "read_yaml_key", "safe_load"]

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


def read_yaml_key(path: Path, key: str) -> Any:
    """The value of top-level `key` in a mapping file (None when absent or not a mapping), as `read_yaml`
    reads it, without copying the rest (dbt_project.yml's profile name, read on every look at the target)."""
    data = _read(Path(path)).data
    return copy.deepcopy(data.get(key)) if isinstance(data, dict) else None


def read_yaml_file(path: Path) -> YamlFile:
    """`read_yaml`, keeping the node tree and where each key is written."""
    parsed = _read(Path(path))
    return dataclasses.replace(parsed, data=copy.deepcopy(parsed.data))


def _read(path: Path) -> YamlFile:
    """The file's parse, shared with every reader of the same text: copy what leaves this module."""
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
    return _parse(path, text)


def read_problems(path: Path) -> tuple[YamlFile | None, list[tuple[int | None, str]]]:
    """`read_yaml_file` for a checker: the file, or None and its one problem as (line or None, sentence)."""
    try:
        return read_yaml_file(path), []
    except ConfigError as exc:
        message = str(exc)
        found = re.match(rf"{re.escape(str(path))}, line (\d+): (.*)", message, re.S)
        if found:
            return None, [(int(found.group(1)), found.group(2))]
        return None, [(None, message.removeprefix(f"{path}: "))]


@functools.lru_cache(maxsize=32)
def _parse(path: Path, text: str) -> YamlFile:
    """The parse of a file's text, kept: a command reads dbt_project.yml and profiles.yml several times.
    Callers get their own copy of the data."""
    try:
        root, data = _compose(text, budget=True)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"{path}, line {line}: character #x{exc.character:04x} is not allowed in YAML ({exc.reason})"
                          ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: the YAML is nested too deeply") from None
    return YamlFile(path, data or {}, root, _key_lines(root))


def safe_load(text: str) -> Any:
    """`yaml.safe_load(text)`, parsed as `_compose` parses."""
    return _compose(text, budget=False)[1]


def _compose(text: str, budget: bool) -> tuple[yaml.Node | None, Any]:
    """(node tree, data) of a one-document `text`.

    libyaml parses it when the text holds no anchor and no alias (`&`, `*`: then no budget can apply): ten times
    faster than PyYAML's Python parser, and a cron line's sync reads four project files. Any error there is
    left to PyYAML's parser, which then reports it in its own words; so does a text with aliases, under the
    budget when `budget`. The data is the same either way (tests/test_sync_file_check.py holds it over every YAML
    file of the repository); libyaml also reads a few texts PyYAML refuses (a tab inside a plain value, `?` in
    a flow mapping), as dbt does, which parses with libyaml too."""
    if "&" not in text and "*" not in text and getattr(yaml, "__with_libyaml__", False):
        fast = yaml.CSafeLoader(text)
        try:
            root = fast.get_single_node()
            return root, fast.construct_document(root) if root is not None else None
        except yaml.YAMLError:
            pass
        finally:
            fast.dispose()
    loader = _BudgetLoader(text) if budget else yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        return root, loader.construct_document(root) if root is not None else None
    finally:
        loader.dispose()


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


def key_line(lines: dict[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    """The line of key path `loc`, or of the nearest enclosing key written in the file."""
    return next((lines[loc[:n]] for n in range(len(loc), 0, -1) if loc[:n] in lines), None)


def node_line(root: yaml.Node | None, loc: tuple[str, ...]) -> int | None:
    """The line of key path `loc` (mapping keys and list indexes, as pydantic reports them), or of the
    deepest part of it written in the file; parts the file does not have (a union's tag) are skipped."""
    node, line = root, None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next((pair for pair in node.value if str(pair[0].value) == part), None)
            if found is not None:
                line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
    return line
