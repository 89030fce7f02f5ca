"""The quarantine: blocked events as Parquet beside the landing directory, never lost, replayable.

`data/events/` lands, `data/quarantine/` holds what a plan blocked (the landing directory's sibling
named `quarantine`; REVETL_QUARANTINE_DIR overrides). The files have the landing columns and the same
`received_date=` partitions, written as atomically as landed files (`landing.parquet`); each row's
`context` says why it was blocked (`violationErrors`, `trackingPlan`).

`replay` judges every quarantined row again with the plans as they are now (after the plan or the
app was fixed): rows that now pass, or only break rules that allow or omit, land; the others stay.
The landed rows are written first, then each quarantine file is replaced by what stays in it, so a
crash in between can only land a row twice, which the `events` model drops (same message_id).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from revetl.governance.gate import LANDED, Gate, clean_context

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["ReplayReport", "divert", "quarantine_dir", "quarantine_files", "quarantine_rows", "replay"]


def quarantine_dir(landing_dir: Path) -> Path:
    """Where blocked events go: REVETL_QUARANTINE_DIR, else `quarantine/` beside the landing directory."""
    given = os.environ.get("REVETL_QUARANTINE_DIR")
    return Path(given) if given else Path(landing_dir).parent / "quarantine"


def quarantine_rows(landing_dir: Path, rows: Iterable[Mapping[str, Any]], prefix: str) -> list[Path]:
    """Write blocked rows (landing columns) into the quarantine, atomically; the files written."""
    from revetl.landing import parquet

    return parquet.write_rows(quarantine_dir(landing_dir), rows, prefix=prefix)


def divert(landing_dir: Path, table: pa.Table, prefix: str) -> pa.Table:
    """The rows of a collector roll to land: those marked blocked (`door.BLOCKED_KEY`) are written to the
    quarantine first, unless a file of this `prefix` is there already (a roll replayed after a crash)."""
    import pyarrow.compute as pc

    from revetl.governance.door import BLOCKED_KEY
    from revetl.landing import parquet

    if BLOCKED_KEY not in table.column_names:
        return table
    marked = pc.fill_null(table[BLOCKED_KEY], False)
    if not pc.any(marked).as_py():
        return table.drop_columns([BLOCKED_KEY])
    directory = quarantine_dir(landing_dir)
    if not any(directory.glob(f"received_date=*/{prefix}-*.parquet")):
        parquet.write_table(directory, table.filter(marked).drop_columns([BLOCKED_KEY]), prefix=prefix)
    return table.filter(pc.invert(marked)).drop_columns([BLOCKED_KEY])


def quarantine_files(landing_dir: Path) -> list[Path]:
    """The quarantine's Parquet files, oldest name first."""
    directory = quarantine_dir(landing_dir)
    return sorted(directory.glob("received_date=*/*.parquet"), key=lambda p: (p.parent.name, p.name))


@dataclass(frozen=True)
class ReplayReport:
    """What `replay` did: rows landed from the quarantine, rows still blocked, files rewritten."""

    landed: int
    still_blocked: int
    files: int


def replay(landing_dir: Path, gate: Gate) -> ReplayReport:
    """Land every quarantined row the current plans no longer block; keep the others."""
    import pyarrow.parquet as pq

    from revetl.landing import parquet

    landed = kept = files = 0
    for path in quarantine_files(landing_dir):
        rows = pq.read_table(path).to_pylist()
        passing, staying = [], []
        for row in rows:
            row["context"], source = clean_context(row["context"])
            (passing if gate.judge(row, source) == LANDED else staying).append(row)
        if passing:
            parquet.write_rows(landing_dir, passing, prefix="replay")
            if staying:
                parquet.write_rows(path.parent.parent, staying, prefix="quarantine")
            path.unlink()
            parquet.fsync_dir(path.parent)
            files += 1
        landed += len(passing)
        kept += len(staying) if passing else len(rows)
    return ReplayReport(landed, kept, files)
