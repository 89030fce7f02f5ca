"""`revetl report`: one self-contained HTML file of the project's sync history, with plots.

    history.py  what is shown, read once: runs and rejected rows (warehouse), the last build (dbt's
                run_results.json), the collector's volume (the files it landed), the routes' counters by
                time bucket (warehouse, `revetl_state.route_stats`)
    charts.py   the charts, run by run or aggregated into time buckets past `MAX_MARKS` marks
    route_charts.py  each route's events (delivered, dead-lettered, retried) and lag over time
    svg.py      chart primitives as inline SVG (no script), tooltips as <title>
    page.py     the page: figures at a glance, the charts, tables of the latest runs and rejected rows
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from revetl.config import Project
from revetl.runtime import SYSTEM, Clock

__all__ = ["Written", "write_report"]


@dataclass(frozen=True)
class Written:
    path: Path
    size: int
    runs: int


def write_report(project: Project, out: Path, days: float = 90.0, clock: Clock = SYSTEM) -> Written:
    """Write the report of the last `days` days to `out` (atomically: a reader never sees half a page)."""
    from revetl.errors import ConfigError
    from revetl.report.history import read_history
    from revetl.report.page import render

    history = read_history(project, days=days, clock=clock)
    html = render(history, project.root.name).encode("utf-8")
    out = Path(out)
    temporary = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(html)
        os.replace(temporary, out)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"cannot write the report to {out}: {exc.strerror or exc}") from None
    return Written(out, len(html), len(history.runs))
