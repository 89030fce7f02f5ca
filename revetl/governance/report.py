"""`revetl violations`: what the tracking plans found, counted by event, property and kind, with examples.

Read from the files, not the warehouse, so it answers before any build: landed events whose context
lists violations (flagged, or with properties omitted) and the quarantine's blocked events.
`--since` keeps the events received from then on (by their `received_date` partition and
`received_at`).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from revetl.errors import ConfigError
from revetl.governance.gate import violations_of
from revetl.governance.quarantine import quarantine_files

__all__ = ["ViolationReport", "parse_since", "print_violations", "violation_report"]

_DURATION = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")
_EXAMPLES = 3  # kept per (event, property, kind); the table prints the first


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """`30d`, `12h`, `90m`, or an ISO date or time (UTC) -> the moment it names."""
    found = _DURATION.match(text)
    if found:
        amount, unit = int(found.group(1)), found.group(2)
        return now - dt.timedelta(**{{"d": "days", "h": "hours", "m": "minutes"}[unit]: amount})
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since {text!r} is neither a duration (30d, 12h, 90m) nor an ISO date or time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


@dataclass
class ViolationReport:
    """Counts of violations: by (event, property, kind), by kind; events flagged and blocked; examples."""

    by_property: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    flagged_events: int = 0
    blocked_events: int = 0
    examples: dict[tuple[str, str, str], list[str]] = field(default_factory=dict)

    def add(self, event: str, message_id: str, errors: list[dict[str, Any]], blocked: bool) -> None:
        if blocked:
            self.blocked_events += 1
        else:
            self.flagged_events += 1
        for error in errors:
            key = (event, str(error.get("property") or ""), str(error.get("type")))
            self.by_property[key] += 1
            self.by_kind[key[2]] += 1
            shown = self.examples.setdefault(key, [])
            if len(shown) < _EXAMPLES:
                shown.append(f"{message_id}: {error.get('message', '')}")


def violation_report(landing_dir: Path, since: dt.datetime | None = None) -> ViolationReport:
    """Every violation recorded in landed and quarantined events received since `since`."""
    report = ViolationReport()
    seen: set[str] = set()  # a message landed twice (an SDK's retry) is one event, as in `events`
    landed = sorted(Path(landing_dir).glob("received_date=*/*.parquet"))
    for path, blocked in [*((p, False) for p in landed), *((p, True) for p in quarantine_files(landing_dir))]:
        for row in _flagged_rows(path, since):
            if row["message_id"] in seen:
                continue
            seen.add(row["message_id"])
            label = row["event"] if row["type"] == "track" else row["type"]
            report.add(str(label), row["message_id"], violations_of(row["context"]), blocked)
    return report


def _flagged_rows(path: Path, since: dt.datetime | None) -> list[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if since is not None and path.parent.name.partition("=")[2] < since.date().isoformat():
        return []
    try:
        table = pq.read_table(path, columns=["message_id", "type", "event", "received_at", "context"])
    except (OSError, pa.ArrowException):
        return []  # an unreadable file is `revetl build`'s to report
    keep = pc.fill_null(pc.match_substring(table["context"], '"violationErrors"'), False)
    if since is not None:
        keep = pc.and_(keep, pc.greater_equal(table["received_at"], pa.scalar(since, table.schema.field("received_at").type)))
    return table.filter(keep).to_pylist()


def print_violations(report: ViolationReport, console: Console, since: dt.datetime | None) -> None:
    """Counts by kind, then by event and property with examples."""
    when = f" since {since:%Y-%m-%d %H:%M} UTC" if since else ""
    total = sum(report.by_kind.values())
    if not total:
        console.print(f"[green]no violations{when}[/]", highlight=False)
        return
    console.print(Text(
        f"{total:,} violations{when} in {report.flagged_events + report.blocked_events:,} events: "
        f"{report.flagged_events:,} landed flagged, {report.blocked_events:,} blocked in the quarantine"))
    kinds = Table(title="by kind", title_justify="left")
    kinds.add_column("kind")
    kinds.add_column("violations", justify="right")
    for kind, count in report.by_kind.most_common():
        kinds.add_row(kind, f"{count:,}")
    console.print(kinds)
    table = Table(title="by event and property", title_justify="left")
    for name in ("event", "property", "kind"):
        table.add_column(name, no_wrap=True)
    table.add_column("violations", justify="right")
    table.add_column("example (message_id: why)", overflow="fold")
    for key, count in sorted(report.by_property.items(), key=lambda item: (-item[1], item[0])):
        table.add_row(*(Text(part) for part in key), f"{count:,}", Text(report.examples[key][0]))
    console.print(table)
