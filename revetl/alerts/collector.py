"""The collector's alerts: a task on its event loop that watches what /health says (`Pipeline.problem`).

The collector never opens the warehouse while it serves, so its alert state is a file of its own,
`alerts.json` in its log directory (store.FileStore): it outlives a restart, so a collector stopped while
degraded sends the recovery once it is healthy again after the restart. A rule counts the collector as
degraded once /health has said so for `for_seconds` (30 by default: a roll that fails once and works on
its retry a second later is not worth waking anyone). Messages are sent from a worker thread: requests
never wait for a channel. A channel that fails is one warning log line, and is tried again after
RETRY_SECONDS, not on every check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from revetl.alerts.notify import changes, deliver
from revetl.alerts.rules import collector_observation
from revetl.alerts.settings import AlertSettings
from revetl.alerts.store import STATE_FILE, FileStore

__all__ = ["watch_collector"]

CHECK_SECONDS = 1.0
RETRY_SECONDS = 30.0


async def watch_collector(settings: AlertSettings, log_dir: Path, problem: Callable[[], str | None], lines: Any,
                          project: str, check_seconds: float = CHECK_SECONDS) -> None:
    """Until cancelled: check `problem()` (None while healthy) every `check_seconds`; alert on changes."""
    rules = list(settings.rules_for("collector_degraded"))
    if not rules:
        return
    store = FileStore(Path(log_dir) / STATE_FILE)
    degraded_since: float | None = None
    quiet_until = 0.0
    while True:
        now_problem = problem()
        now = time.monotonic()
        if now_problem is None:
            degraded_since = None
        elif degraded_since is None:
            degraded_since = now
        observations = []
        for rule in rules:
            if now_problem is None:
                observations.append(collector_observation(rule, None, str(log_dir)))
            elif degraded_since is not None and now - degraded_since >= rule.wait_seconds:
                observations.append(collector_observation(rule, now_problem, str(log_dir)))
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
