"""The tracking plans in a collector's parser process: installed once, then applied to every request's rows.

`revetl collect` parses request bodies in worker processes (collect/workers.py); each gets the
compiled plans and the write-key map when it starts (`install`), so a request costs no pickling of
plans. A blocked row is marked with `BLOCKED_KEY`; it travels through the write-ahead log like any
acknowledged row (so the 200 still means durable) and the roll sends it to the quarantine
(`quarantine.divert`) instead of the landing directory. Routes reading the log must skip marked rows.

What the door found is also counted (`Judged`, per request; `DoorCounts`, per source on the collector's
event loop) for the `violations` alert rules, which the collector checks as it serves (alerts/collector.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from revetl.governance.gate import BLOCKED, Gate, violations_of

__all__ = ["BLOCKED_KEY", "DoorCounts", "Judged", "install", "judge_rows"]

BLOCKED_KEY = "_blocked"
_installed: dict[str, Any] = {"gate": None, "keys": {}}


def install(gate: Gate | None, sources_by_key: Mapping[str, str]) -> None:
    """Use `gate` for the rows this process parses; `sources_by_key` maps a body's `writeKey` to its source."""
    _installed["gate"] = gate if gate else None
    _installed["keys"] = dict(sources_by_key) if gate else {}


@dataclass
class Judged:
    """What a tracking plan found in some events of one source: how many it judged, how many had
    violations (flagged or blocked), and the violations by kind (a row may have several)."""

    source: str
    events: int = 0
    faulted: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def add(self, other: Judged) -> None:
        self.events += other.events
        self.faulted += other.faulted
        for kind, count in other.kinds.items():
            self.kinds[kind] = self.kinds.get(kind, 0) + count


class DoorCounts:
    """`Judged` summed per source as requests are acknowledged, until an alert check takes them."""

    def __init__(self) -> None:
        self._by_source: dict[str, Judged] = {}

    def add(self, judged: Judged) -> None:
        self._by_source.setdefault(judged.source, Judged(judged.source)).add(judged)

    def take(self) -> dict[str, Judged]:
        """The counts since the last take, by source (and start again from none)."""
        taken, self._by_source = self._by_source, {}
        return taken


def judge_rows(rows: Sequence[dict[str, Any]], events: Sequence[Any], source: str | None,
               body_key: str | None) -> Judged | None:
    """Judge one request's rows (`events`: the wire events they came from), marking the blocked ones;
    what was found, or None when no plan governs the source."""
    gate: Gate | None = _installed["gate"]
    if gate is None:
        return None
    if source is None and body_key is not None:
        source = _installed["keys"].get(body_key)
    if source is None or not gate.governs(source):
        return None
    faulted = 0
    kinds: Counter[str] = Counter()
    for row, event in zip(rows, events):
        verdict = gate.judge(row, source, event)
        if verdict == BLOCKED:
            row[BLOCKED_KEY] = True
        errors = violations_of(row["context"])  # what the verdict wrote (none for a clean row: no parse)
        if errors:
            faulted += 1
            kinds.update(error.get("type") for error in errors)
    return Judged(source, len(rows), faulted, dict(kinds))
