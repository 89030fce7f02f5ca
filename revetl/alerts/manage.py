"""`revetl alerts`: send a test message to the channels, list what each channel was last told.

    test   one message per channel (`state: test`), through the same code as real alerts: a channel
           whose URL, secret, server or login is wrong says so in one sentence, before it matters
    list   the alert states: from the warehouse (syncs, builds) and the collector's `alerts.json`
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from revetl.alerts.channels import ChannelError, environment_secrets, send
from revetl.alerts.notify import channel_secrets
from revetl.alerts.store import STATE_FILE
from revetl.config import Project
from revetl.errors import ConfigError

__all__ = ["State", "states", "test_channels"]


def test_channels(project: Project, names: Sequence[str] = ()) -> list[tuple[str, str | None]]:
    """Send a test message to each named channel (default: all); (channel, None or why it failed)."""
    settings = project.alerts
    unknown = [name for name in names if name not in settings.channels]
    if unknown or not settings.channels:
        known = ", ".join(sorted(settings.channels)) or "none: add `alerts.channels` to revetl.yml"
        raise ConfigError(f"no alert channel named {unknown[0]!r} (known: {known})" if unknown
                          else f"no alert channels ({known})")
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    secrets = [*environment_secrets(), *channel_secrets(settings)]
    outcomes: list[tuple[str, str | None]] = []
    for name in names or sorted(settings.channels):
        payload = {"version": 1, "state": "test", "rule": "test", "kind": "test", "subject": name,
                   "summary": f"revetl can send alerts to channel {name}", "reason": None, "run_id": None,
                   "since": now, "at": now, "project": project.root.name}
        try:
            send(settings.channels[name], payload, secrets)
        except ChannelError as exc:
            outcomes.append((name, str(exc)))
        else:
            outcomes.append((name, None))
    return outcomes


@dataclass(frozen=True)
class State:
    """What one channel was last told about one rule and subject."""

    rule: str
    subject: str
    channel: str
    failing: bool
    since: str
    notified_at: str
    message: str | None


def states(project: Project) -> list[State]:
    """Every alert state: the warehouse's (if revetl wrote state there), then the files: the one kept while the
    warehouse could not be reached, and the collector's."""
    import json

    from revetl.collect.settings import collector_dir
    from revetl.sync.migrations import schema_version
    from revetl.warehouse.connection import connect, work_dir
    from revetl.warehouse.dialect import Template

    found = []
    with connect(project, read_only=True) as connection:
        if schema_version(connection) >= 5:
            rows = connection.fetchall(Template("""select rule_id, subject, channel, failing, since, notified_at,
                message from revetl_state.alert_states order by subject, rule_id, channel"""))
            found += [State(r, s, c, bool(f), str(since), str(at), m) for r, s, c, f, since, at, m in rows]
    for path in (work_dir(project) / STATE_FILE, collector_dir(project) / STATE_FILE):  # see store.py
        if path.is_file():
            for row in json.loads(path.read_text(encoding="utf-8")):
                found.append(State(row["rule"], row["subject"], row["channel"], bool(row["failing"]), row["since"],
                                   row["notified_at"], row.get("message")))
    return found
