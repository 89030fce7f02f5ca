"""What each channel was last told, per rule and subject: whether it heard of a failure (and since when).

A channel hears of a change only when what it was last told differs from what a rule observes now; the
state moves only once the channel took the message. So a channel that was down is told at the next
check if the state still differs, and a failure that cleared meanwhile is never sent at all.

    WarehouseStore  `revetl_state.alert_states` (migration 5), beside the runs it is about: syncs and builds
    FileStore       `alerts.json` in the collector's log directory: the collector never opens the warehouse
                    while it serves, and its log directory is its own (one collector per directory)
"""

from __future__ import annotations

import datetime as dt
import json
import os
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from revetl.warehouse.base import Connection

__all__ = ["STATE_FILE", "AlertStore", "FallbackStore", "FileStore", "Known", "Told", "WarehouseStore"]

STATE_FILE = "alerts.json"  # the file of a FileStore, in the collector's log directory or the work directory
Key = tuple[str, str, str]  # (rule id, subject, channel)


@dataclass(frozen=True)
class Known:
    """What a channel was last told about a rule and subject."""

    failing: bool
    since: dt.datetime  # when the failure it was told of began (kept through the recovery)


@dataclass(frozen=True)
class Told:
    """A change a channel took: the new state of (rule, subject, channel)."""

    key: Key
    failing: bool
    since: dt.datetime
    run_id: str | None
    message: str | None
    at: dt.datetime


class AlertStore(Protocol):
    def load(self, subjects: Iterable[str]) -> dict[Key, Known]: ...

    def save(self, told: list[Told]) -> None: ...


class WarehouseStore:
    """Alert states in the warehouse (`revetl_state.alert_states`), through a connection opened per step:
    read before the alerts are sent, written after, so the warehouse is never held while a channel answers."""

    def __init__(self, connect: Callable[[], contextlib.AbstractContextManager[Connection]]) -> None:
        self._connect = connect  # a migrated connection to the warehouse, for one step

    def load(self, subjects: Iterable[str]) -> dict[Key, Known]:
        from revetl.warehouse.dialect import Template

        query = Template("""select rule_id, subject, channel, failing, since from revetl_state.alert_states
            where subject = $subject""")
        found: dict[Key, Known] = {}
        with self._connect() as connection:
            for subject in subjects:
                for rule_id, name, channel, failing, since in connection.fetchall(query, {"subject": subject}):
                    found[(rule_id, name, channel)] = Known(bool(failing), _utc(since))
        return found

    def save(self, told: list[Told]) -> None:
        if not told:
            return
        with self._connect() as connection, connection.transaction():
            for change in told:
                _upsert(connection, change)


def _upsert(connection: Connection, change: Told) -> None:
    from revetl.warehouse.dialect import Template

    rule_id, subject, channel = change.key
    connection.execute(Template("""insert into revetl_state.alert_states
            values ($rule_id, $subject, $channel, $failing, $since, $run_id, $message, $at)
        on conflict (rule_id, subject, channel) do update set failing = excluded.failing, since = excluded.since,
            run_id = excluded.run_id, message = excluded.message, notified_at = excluded.notified_at"""), {
        "rule_id": rule_id, "subject": subject, "channel": channel, "failing": change.failing,
        "since": change.since, "run_id": change.run_id, "message": change.message, "at": change.at,
    })


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


class FileStore:
    """Alert states in one JSON file, replaced atomically (written beside, fsync'd, renamed)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._states: dict[Key, dict[str, object]] | None = None

    def _read(self) -> dict[Key, dict[str, object]]:
        if self._states is None:
            try:
                raw = json.loads(self.path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raw = []
            except (OSError, ValueError):
                raw = []  # unreadable: start afresh (at worst, one alert is sent again)
            self._states = {(row["rule"], row["subject"], row["channel"]): row for row in raw
                            if isinstance(row, dict) and {"rule", "subject", "channel"} <= row.keys()}
        return self._states

    def load(self, subjects: Iterable[str]) -> dict[Key, Known]:
        wanted = set(subjects)
        return {key: Known(bool(row.get("failing")), dt.datetime.fromisoformat(str(row["since"])))
                for key, row in self._read().items() if key[1] in wanted}

    def save(self, told: list[Told]) -> None:
        if not told:
            return
        states = self._read()
        for change in told:
            rule_id, subject, channel = change.key
            states[change.key] = {
                "rule": rule_id, "subject": subject, "channel": channel, "failing": change.failing,
                "since": change.since.isoformat(), "run_id": change.run_id, "message": change.message,
                "notified_at": change.at.isoformat(),
            }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(list(states.values()), out, indent=1)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)

    def told(self) -> list[Told]:
        """Every state in the file, as the changes that made it."""
        return [Told(key, bool(row.get("failing")), dt.datetime.fromisoformat(str(row["since"])),
                     row.get("run_id"), row.get("message"), dt.datetime.fromisoformat(str(row["notified_at"])))
                for key, row in self._read().items()]  # type: ignore[arg-type]

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self._states = {}


class FallbackStore:
    """The warehouse's store, or, while the warehouse cannot be reached (the very failure a sync may be
    reporting), a file beside it (`alerts.json` in the target's work directory). Once the warehouse answers
    again, what the file kept counts first and moves into the warehouse with the next change, and the file
    goes: one set of states, never two that disagree."""

    def __init__(self, primary: WarehouseStore, fallback: FileStore, warn: Callable[[str], None]) -> None:
        self.primary, self.fallback, self._warn = primary, fallback, warn
        self.reachable = True

    def load(self, subjects: Iterable[str]) -> dict[Key, Known]:
        from revetl.errors import RevetlError, first_line

        wanted = set(subjects)
        try:
            found = self.primary.load(wanted)
        except RevetlError as exc:
            self.reachable, found = False, {}
            self._warn(f"the warehouse could not be reached for the alert states ({first_line(exc)}); they are "
                       f"kept in {self.fallback.path} until it can")
        return {**found, **self.fallback.load(wanted)}

    def save(self, told: list[Told]) -> None:
        if not self.reachable:
            self.fallback.save(told)
            return
        changed = {change.key for change in told}
        kept = [change for change in self.fallback.told() if change.key not in changed]
        self.primary.save(kept + told)
        if kept or self.fallback.path.exists():
            self.fallback.clear()
