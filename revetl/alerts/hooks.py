"""What the commands call: `watch_sync` around each sync run, `watch_build` around a build.

Each is a context manager around the command's own work: it lets every error through unchanged and,
when the block is done, checks the rules and sends what changed. Alerts never change how the command
ends: any problem of theirs (a channel down, the warehouse busy past its wait) is one warning sentence on
stderr, and the exit code is the run's own. Without `alerts:` rules nothing is opened or loaded.

The facts of a sync run come from its record in `revetl_state.runs` (run id, counts, members; the
previous run's members) and from how the command ended: an error raised by a run that had started is a
failure, a guard refusal is `refused`, a refusal because another run holds the sync says nothing (that
run reports itself), Ctrl-C says nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from revetl.config import Project
from revetl.errors import RevetlError, SyncCancelled, SyncRefused, first_line
from revetl.runtime import SYSTEM, Clock

if TYPE_CHECKING:
    from rich.console import Console

    from revetl.alerts.rules import BuildFacts, IngestFacts, Observation, SyncFacts

    from revetl.alerts.store import WarehouseStore

    from revetl.sync.state import RunRecord
    from revetl.warehouse.base import Connection

__all__ = ["Outcome", "after_ingest", "warehouse_store", "watch_build", "watch_sync"]

_TOLERANCE_S = 2.0  # a run recorded this long before the hook started watching is still this command's


@dataclass
class Outcome:
    """What the watched block produced: set `result` to the RunResult or BuildResult it returned."""

    result: Any = None


@contextlib.contextmanager
def watch_sync(project: Project, sync: str, console: Console, clock: Clock = SYSTEM) -> Iterator[Outcome]:
    """Around one `run_sync`: afterwards, the sync rules' alerts (see the module docstring)."""
    outcome, started = Outcome(), clock.now()
    wanted = _watched(project, sync)
    try:
        yield outcome
    except BaseException as exc:
        if wanted and not isinstance(exc, (KeyboardInterrupt, SyncCancelled)):
            _quietly(console, f"sync {sync}", lambda: _after_sync(project, sync, outcome.result, exc, started,
                                                                  console, clock))
        raise
    if wanted:
        _quietly(console, f"sync {sync}", lambda: _after_sync(project, sync, outcome.result, None, started, console,
                                                              clock))


@contextlib.contextmanager
def watch_build(project: Project, console: Console, clock: Clock = SYSTEM) -> Iterator[Outcome]:
    """Around one build: afterwards, the build_failed rules' alerts. A build that raised failed."""
    outcome = Outcome()
    wanted = bool(project.alert_rules("build_failed"))
    try:
        yield outcome
    except BaseException as exc:
        if wanted and not isinstance(exc, KeyboardInterrupt):
            from revetl.alerts.rules import BuildFacts, build_observations

            facts = BuildFacts(ok=False, error=_sentence(exc), target=project.target)
            _quietly(console, "the build", lambda: _send(project, build_observations(project.alerts, facts),
                                                         console, clock))
        raise
    if wanted and outcome.result is not None:
        from revetl.alerts.rules import build_observations

        facts = _build_facts(project, outcome.result)
        _quietly(console, "the build", lambda: _send(project, build_observations(project.alerts, facts),
                                                     console, clock))


def _watched(project: Project, sync: str) -> bool:
    if not project.alert_rules():
        return False
    from revetl.alerts.settings import SYNC_RULES

    return any(rule.watches(sync) for rule in project.alert_rules(*SYNC_RULES))


def after_ingest(project: Project, facts: IngestFacts, console: Console, clock: Clock = SYSTEM) -> None:
    """After an ingest judged by a tracking plan: the violations rules' alerts (none without such rules)."""
    if not project.alert_rules("violations"):
        return
    from revetl.alerts.rules import violation_observations

    _quietly(console, "the ingest", lambda: _send(project, violation_observations(project.alerts, facts),
                                                  console, clock))


def _build_facts(project: Project, result: Any) -> BuildFacts:
    """BuildFacts of a `warehouse.dbt.BuildResult`."""
    from revetl.alerts.rules import BuildFacts

    failed = tuple((node.name, (node.message or node.status).strip().splitlines()[0]) for node in result.failures)
    passed = sum(1 for node in result.nodes if node.ok)
    return BuildFacts(ok=result.ok, error=result.error, failed=failed, passed=passed, skipped=len(result.skipped),
                      seconds=round(result.seconds, 1), target=project.target)


def _quietly(console: Console, what: str, work: Callable[[], None]) -> None:
    """Run `work`; any error of the alerts is one warning, never the command's."""
    try:
        work()
    except Exception as exc:  # noqa: BLE001 - alerts must never change how the command ends
        _warn(console, f"alerts for {what} were not checked: {_sentence(exc)}")


def _warn(console: Console, sentence: str) -> None:
    from rich.text import Text

    from revetl.errors import scrub_urls

    console.print(Text("warning: ", style="bold yellow") + Text(scrub_urls(sentence)), highlight=False, soft_wrap=True)


def _sentence(exc: BaseException) -> str:
    text = "; ".join([first_line(exc), *getattr(exc, "__notes__", ())])
    return text if isinstance(exc, RevetlError) else f"{type(exc).__name__}: {text}"


@contextlib.contextmanager
def _state(project: Project) -> Iterator[Connection]:
    """The warehouse, its state tables migrated (alert_states is migration 5), for one short step."""
    from revetl.sync.migrations import migrate
    from revetl.warehouse.connection import connect

    with connect(project) as connection:
        migrate(connection)
        yield connection


def warehouse_store(project: Project) -> WarehouseStore:
    """The project's alert states in its warehouse (the target's), each step on a connection of its own."""
    from revetl.alerts.store import WarehouseStore

    return WarehouseStore(lambda: _state(project))


def _send(project: Project, observations: list[Observation], console: Console, clock: Clock,
          secrets: list[str] | None = None) -> None:
    from revetl.alerts.notify import changes, deliver  # the channels: loaded when there are rules to check
    from revetl.alerts.store import STATE_FILE, FallbackStore, FileStore
    from revetl.warehouse.connection import work_dir

    warn = lambda sentence: _warn(console, sentence)  # noqa: E731
    store = FallbackStore(warehouse_store(project), FileStore(work_dir(project) / STATE_FILE), warn)
    due = changes(observations, store, project.root.name, clock)
    deliver(project.alerts, due, store, warn, secrets or [], clock)


def _after_sync(project: Project, sync: str, result: Any, error: BaseException | None, started: dt.datetime,
                console: Console, clock: Clock) -> None:
    from revetl.alerts.rules import sync_observations
    from revetl.sync import state

    if result is None and error is not None:
        result = getattr(error, "result", None)
    try:
        with _state(project) as connection:
            records = state.runs(connection, sync, limit=50)
    except RevetlError:  # the warehouse cannot be reached: the facts are what the command saw (store.py)
        records = []
    facts = _sync_facts(records, sync, result, error, started)
    _send(project, sync_observations(project.alerts, facts), console, clock, _destination_secrets(project, sync))


def _sync_facts(records: list[RunRecord], sync: str, result: Any, error: BaseException | None,
                started: dt.datetime) -> SyncFacts:
    """How one `revetl sync NAME` ended, from its latest run records (newest first) and the error (see the
    module docstring)."""
    from revetl.alerts.rules import SyncFacts

    run_id = getattr(result, "run_id", None)
    if run_id is not None:
        mine = next((record for record in records if record.run_id == run_id), None)
    else:  # no result: a run refused or failed before sending, if it left a record since the command began
        mine = next((record for record in records
                     if _utc(record.started_at) >= started - dt.timedelta(seconds=_TOLERANCE_S)), None)
    if error is None:
        status, stopped, message = getattr(result, "status", "succeeded"), False, getattr(result, "message", None)
    elif isinstance(error, SyncRefused) and (mine is None or mine.status != "refused"):
        return SyncFacts(sync, "locked", False)  # another run holds the sync: that run reports itself
    else:
        status = mine.status if mine is not None else "not started"
        stopped, message = True, _sentence(error)
    previous = _previous_members(records, mine)
    if result is not None:
        planned, acknowledged, rejected = result.planned, result.acknowledged, result.failed
        members = result.plan.members
    elif mine is not None:
        planned = sum(count or 0 for count in mine.planned) if any(c is not None for c in mine.planned) else None
        acknowledged, rejected, members = sum(count or 0 for count in mine.acked), mine.failed, mine.members
    else:
        planned = acknowledged = rejected = members = None
    return SyncFacts(sync, status, stopped, audience=mine.audience if mine else None,
                     run_id=mine.run_id if mine else run_id, message=message, members=members,
                     previous_members=previous, planned=planned, acknowledged=acknowledged, rejected=rejected)


def _previous_members(records: list[RunRecord], mine: RunRecord | None) -> int | None:
    """Members at the sync's latest run before `mine` that counted them (None: no such run)."""
    if mine is None:
        return None
    older = records[records.index(mine) + 1:]
    return next((record.members for record in older if record.members is not None), None)


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value


def _destination_secrets(project: Project, sync: str) -> list[str]:
    """The sync destination's secrets, to scrub from its alerts (none when its file no longer loads)."""
    from revetl.config import load_sync
    from revetl.destinations import load_destination

    try:
        return load_destination(load_sync(project, sync)).secrets
    except RevetlError:
        return []
