"""The collector's alerts: a task on its event loop that watches what /health says (`Pipeline.problem`).

The collector never opens the warehouse while it serves, so its alert state is a file of its own,
`alerts.json` in its log directory (store.FileStore): it outlives a restart, so a collector stopped while
degraded sends the recovery once it is healthy again after the restart. A rule counts the collector as
degraded once /health has said so for `for_seconds` (30 by default: a roll that fails once and works on
its retry a second later is not worth waking anyone). Messages are sent from a worker thread: requests
never wait for a channel. A channel that fails is one warning log line, and is tried again after
RETRY_SECONDS, not on every check.

The `violations` rules are checked here too, on what the tracking plans found in the events the
collector acknowledged (governance/door.py's `DoorCounts`), per source and per rule, in windows of the
rule's `for_seconds` (300): a kind of violation fails as soon as it appears, and recovers at the end of a
window in which the source sent events without it; a `share` is judged at the end of each window on that
window's events. A source that sent nothing in a window says nothing: its state stays.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from revetl.alerts.notify import changes, deliver
from revetl.alerts.rules import IngestFacts, Observation, collector_observation, rule_violations
from revetl.alerts.settings import AlertSettings, Rule
from revetl.alerts.store import STATE_FILE, FileStore
from revetl.governance.door import DoorCounts, Judged
from revetl.governance.schema import KINDS

__all__ = ["watch_collector"]

CHECK_SECONDS = 1.0
RETRY_SECONDS = 30.0


async def watch_collector(settings: AlertSettings, log_dir: Path, problem: Callable[[], str | None], lines: Any,
                          project: str, check_seconds: float = CHECK_SECONDS, counts: DoorCounts | None = None) -> None:
    """Until cancelled: check `problem()` (None while healthy) and, with `counts`, the violations the door
    found, every `check_seconds`; alert on changes."""
    degraded = _Degraded(list(settings.rules_for("collector_degraded")), problem, str(log_dir))
    violations = _Violations(list(settings.rules_for("violations")) if counts is not None else [],
                             counts or DoorCounts())
    if not degraded.rules and not violations.rules:
        return
    store = FileStore(Path(log_dir) / STATE_FILE)
    quiet_until = 0.0
    while True:
        now = time.monotonic()
        observations = [*degraded.observe(now), *violations.observe(now)]
        if now >= quiet_until:
            failed: list[str] = []
            try:
                due = changes(observations, store, project)
                made = await asyncio.to_thread(deliver, settings, due, store, failed.append) if due else []
            except Exception as exc:  # noqa: BLE001 - e.g. alerts.json on a full disk: the state is kept in memory
                made, failed = [], [f"alerts: {type(exc).__name__}: {exc}"]
            for sentence in failed:
                lines.warning(sentence)
            for delivery in made:
                lines.info("alert sent", channel=delivery.channel, rule=delivery.alert.observation.rule.id,
                           state="failing" if delivery.alert.failing else "recovered")
            quiet_until = now + RETRY_SECONDS if failed else 0.0
        await asyncio.sleep(check_seconds)


class _Degraded:
    """The collector_degraded rules: /health's problem, once it has lasted a rule's `for_seconds`."""

    def __init__(self, rules: list[Rule], problem: Callable[[], str | None], log_dir: str) -> None:
        self.rules, self.problem, self.log_dir = rules, problem, log_dir
        self.since: float | None = None

    def observe(self, now: float) -> list[Observation]:
        if not self.rules:
            return []
        problem = self.problem()
        if problem is None:
            self.since = None
            return [collector_observation(rule, None, self.log_dir) for rule in self.rules]
        if self.since is None:
            self.since = now
        return [collector_observation(rule, problem, self.log_dir)
                for rule in self.rules if now - self.since >= rule.wait_seconds]


class _Violations:
    """The violations rules on the door's counts, each in windows of its `for_seconds` (module docstring)."""

    def __init__(self, rules: list[Rule], counts: DoorCounts) -> None:
        self.rules, self.counts = rules, counts
        self.windows: list[tuple[float, dict[str, Judged]]] = [(time.monotonic(), {}) for _ in rules]

    def observe(self, now: float) -> list[Observation]:
        if not self.rules:
            return []
        fresh = self.counts.take()
        found = []
        for index, rule in enumerate(self.rules):
            started, sources = self.windows[index]
            for source, judged in fresh.items():
                sources.setdefault(source, Judged(source)).add(judged)
            closing = now - started >= rule.wait_seconds
            where = f"in the collector's {_span(rule.wait_seconds)} window"
            for source, judged in sources.items():
                seen = rule_violations(rule, IngestFacts(source, judged.events, judged.faulted, judged.kinds, KINDS,
                                                         where))
                # A kind fails as soon as it appears; a rate and a recovery wait for the window's end.
                found += seen if closing else [one for one in seen if one.failing and rule.share is None]
            if closing:
                self.windows[index] = (now, {})
        return found


def _span(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} s"
