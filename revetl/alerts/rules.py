"""What a sync run, a build or the collector says about each rule: an `Observation` (failing or not, and why).

Pure functions of facts gathered by hooks.py, so that every rule is decided the same way in a test and in
the command line. A rule with nothing to say about an outcome (a run cancelled by Ctrl-C, a run that did
not start because another one holds the sync, a first run with no previous size) gives no observation,
and its state stays as it was.

    sync_failed         the run stopped (a fatal answer, retries exhausted, an unreachable destination),
                        could not start (a broken sync file or audience), or was refused by the guard.
                        A run that went to the end is not failing, even with rejected rows (their rule).
    rejected_rows       rejected rows above `share` of the rows the destination answered in the run
    audience_size       the audience's member count moved more than `share` of the sync's previous run's
    build_failed        `revetl build` failed: a model or test, or what it loads
    collector_degraded  /health said `degraded` for at least `for_seconds`
    violations          `revetl ingest --source S` under a tracking plan: with `share`, more than that share
                        of the source's events had violations (subject `violations:S`); without, each kind
                        of violation that appeared in the ingest (subject `violations:S:KIND`), recovering
                        when an ingest of that source no longer has it. The collector judges the same way
                        as it serves (alerts/collector.py): a new kind fails at once, a window of
                        `for_seconds` (300) without it recovers, and the share is of each window's events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from revetl.alerts.settings import SYNC_RULES, AlertSettings, Rule

__all__ = ["BuildFacts", "IngestFacts", "Observation", "SyncFacts", "build_observations", "collector_observation",
           "rule_violations", "sync_observations", "violation_observations"]

# How a sync command ended, as hooks.py saw it. `cancelled` and `locked` say nothing about any rule.
SILENT = ("cancelled", "locked")


@dataclass(frozen=True)
class Observation:
    """What one rule says about one subject now: failing or not, one sentence, and the facts an alert carries."""

    rule: Rule
    subject: str
    failing: bool
    summary: str  # one sentence for the state observed, e.g. "sync people failed"
    reason: str | None = None  # why, when failing: the run's message, dbt's, the collector's
    run_id: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # sync, audience, counts...


@dataclass(frozen=True)
class SyncFacts:
    """One `revetl sync NAME` as it ended: the run's record in the warehouse where there is one."""

    sync: str
    status: str  # succeeded | failed | refused | cancelled | locked | not started
    stopped: bool  # the run did not go to the end (an error stopped it or kept it from starting)
    audience: str | None = None
    run_id: str | None = None
    message: str | None = None
    members: int | None = None
    previous_members: int | None = None  # at the sync's previous run that counted its members
    planned: int | None = None
    acknowledged: int | None = None
    rejected: int | None = None

    def counts(self) -> dict[str, int | None]:
        return {"planned": self.planned, "acknowledged": self.acknowledged, "rejected": self.rejected,
                "members": self.members, "previous_members": self.previous_members}


def sync_observations(settings: AlertSettings, facts: SyncFacts) -> list[Observation]:
    """Every sync rule's observation of one run (none for a cancelled or locked one)."""
    if facts.status in SILENT:
        return []
    found = []
    for rule in settings.rules_for(*SYNC_RULES):
        if rule.watches(facts.sync):
            observed = _OBSERVERS[rule.when](rule, facts)
            if observed is not None:
                found.append(observed)
    return found


def _observation(rule: Rule, facts: SyncFacts, failing: bool, summary: str, reason: str | None = None) -> Observation:
    details = {"sync": facts.sync, "audience": facts.audience, "status": facts.status, "counts": facts.counts()}
    return Observation(rule, facts.sync, failing, summary, reason, facts.run_id, details)


def _sync_failed(rule: Rule, facts: SyncFacts) -> Observation:
    if not facts.stopped:
        return _observation(rule, facts, False, f"sync {facts.sync} ran to the end")
    if facts.status == "refused":
        summary = f"sync {facts.sync} was refused by the guard"
    elif facts.status == "not started":
        summary = f"sync {facts.sync} could not start"
    else:
        summary = f"sync {facts.sync} failed"
    return _observation(rule, facts, True, summary, facts.message)


def _rejected_rows(rule: Rule, facts: SyncFacts) -> Observation | None:
    rejected = facts.rejected or 0
    answered = (facts.acknowledged or 0) + rejected
    if not answered:  # nothing answered: fine if the run went to the end (nothing to send), else unknown
        return None if facts.stopped else _observation(rule, facts, False, f"sync {facts.sync}: no row rejected")
    share = rejected / answered
    assert rule.share is not None
    failing = share > rule.share
    verdict = "above" if failing else "within"
    summary = (f"sync {facts.sync}: {rejected:,} of {answered:,} rows rejected ({share:.1%}, {verdict} "
               f"{rule.share:.1%})")
    reason = facts.message if failing else None
    return _observation(rule, facts, failing, summary, reason)


def _audience_size(rule: Rule, facts: SyncFacts) -> Observation | None:
    now, before = facts.members, facts.previous_members
    if now is None or before is None:
        return None
    moved = abs(now - before) / before if before else (math.inf if now else 0.0)
    assert rule.share is not None
    failing = moved > rule.share
    change = "no change" if now == before else (f"{(now - before) / before:+.1%}" if before else "from empty")
    audience = facts.audience or facts.sync
    summary = (f"audience {audience} (sync {facts.sync}) went from {before:,} to {now:,} members ({change}; "
               f"{'more than' if failing else 'within'} {rule.share:.0%})")
    return _observation(rule, facts, failing, summary)


_OBSERVERS = {"sync_failed": _sync_failed, "rejected_rows": _rejected_rows, "audience_size": _audience_size}


@dataclass(frozen=True)
class BuildFacts:
    """One `revetl build` as it ended: `error` when it stopped with one sentence, else dbt's node counts."""

    ok: bool
    error: str | None = None
    failed: tuple[tuple[str, str], ...] = ()  # (node, dbt's first line) of each failed model or test
    passed: int = 0
    skipped: int = 0
    seconds: float | None = None
    target: str | None = None


def build_observations(settings: AlertSettings, facts: BuildFacts) -> list[Observation]:
    """The build_failed rules' observation of one build."""
    found = []
    for rule in settings.rules_for("build_failed"):
        if facts.ok:
            summary, reason = "the build passed", None
        else:
            summary = f"the build failed ({len(facts.failed)} models or tests)" if facts.failed else "the build failed"
            named = "; ".join(f"{name}: {message}" for name, message in facts.failed[:5])
            more = f"; and {len(facts.failed) - 5} more" if len(facts.failed) > 5 else ""
            reason = facts.error or (named + more) or None
        counts = {"passed": facts.passed, "failed": len(facts.failed), "skipped": facts.skipped}
        details = {"target": facts.target, "counts": counts, "seconds": facts.seconds}
        found.append(Observation(rule, "build", not facts.ok, summary, reason, None, details))
    return found


def collector_observation(rule: Rule, problem: str | None, log_dir: str) -> Observation:
    """The collector_degraded rule's observation of the collector's /health: `problem` is its `error`."""
    summary = "the collector is degraded" if problem else "the collector is healthy again"
    return Observation(rule, "collector", problem is not None, summary, problem, None, {"log_dir": log_dir})


@dataclass(frozen=True)
class IngestFacts:
    """One `revetl ingest --source S` under a tracking plan: events judged, how many had violations, of which kinds."""

    source: str
    events: int  # landed and blocked
    faulted: int  # landed flagged and blocked
    kinds: dict[str, int] = field(default_factory=dict)  # violations by kind
    kinds_known: tuple[str, ...] = ()  # every kind there is (a kind absent from `kinds` is observed as ok)
    where: str = "in this ingest"  # the events counted, in the summaries


def violation_observations(settings: AlertSettings, facts: IngestFacts) -> list[Observation]:
    """The violations rules' observations of one ingest (see the module docstring)."""
    return [seen for rule in settings.rules_for("violations") for seen in rule_violations(rule, facts)]


def rule_violations(rule: Rule, facts: IngestFacts) -> list[Observation]:
    """One violations rule's observations of some events of one source: its rate, or each kind there is."""
    details = {"source": facts.source, "counts": {"events": facts.events, "with_violations": facts.faulted, **facts.kinds}}
    if rule.share is not None:
        rate = facts.faulted / facts.events if facts.events else 0.0
        failing = rate > rule.share
        summary = (f"{rate:.1%} of source {facts.source}'s events {facts.where} broke its tracking plan, above "
                   f"{rule.share:.1%}" if failing
                   else f"source {facts.source}'s violations {facts.where} are at {rate:.1%}, within {rule.share:.1%}")
        return [Observation(rule, f"violations:{facts.source}", failing, summary, None, None, details)]
    found = []
    for kind in facts.kinds_known:
        count = facts.kinds.get(kind, 0)
        summary = (f"source {facts.source} sends {kind} violations ({count:,} {facts.where})" if count
                   else f"source {facts.source} sent no {kind} violations {facts.where}")
        found.append(Observation(rule, f"violations:{facts.source}:{kind}", count > 0, summary, None, None, details))
    return found
