"""The tracking plans in a collector's parser process: installed once, then applied to every request's rows.

`revetl collect` parses request bodies in worker processes (collect/workers.py); each gets the
compiled plans and the write-key map when it starts (`install`), so a request costs no pickling of
plans. A blocked row is marked with `BLOCKED_KEY`; it travels through the write-ahead log like any
acknowledged row (so the 200 still means durable) and the roll sends it to the quarantine
(`quarantine.divert`) instead of the landing directory. Routes reading the log must skip marked rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from revetl.governance.gate import BLOCKED, Gate

__all__ = ["BLOCKED_KEY", "install", "judge_rows"]

BLOCKED_KEY = "_blocked"
_installed: dict[str, Any] = {"gate": None, "keys": {}}


def install(gate: Gate | None, sources_by_key: Mapping[str, str]) -> None:
    """Use `gate` for the rows this process parses; `sources_by_key` maps a body's `writeKey` to its source."""
    _installed["gate"] = gate if gate else None
    _installed["keys"] = dict(sources_by_key) if gate else {}


def judge_rows(rows: Sequence[dict[str, Any]], events: Sequence[Any], source: str | None, body_key: str | None) -> int:
    """Judge one request's rows (`events`: the wire events they came from); returns how many were blocked."""
    gate: Gate | None = _installed["gate"]
    if gate is None:
        return 0
    if source is None and body_key is not None:
        source = _installed["keys"].get(body_key)
    if not gate.governs(source):
        return 0
    blocked = 0
    for row, event in zip(rows, events):
        if gate.judge(row, source, event) == BLOCKED:
            row[BLOCKED_KEY] = True
            blocked += 1
    return blocked
