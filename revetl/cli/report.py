"""`revetl report`: the project's sync history as one self-contained HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from revetl.cli.app import app, console, current_project


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", help="The HTML file to write.")] = Path("report.html"),
    days: Annotated[float, typer.Option(min=0.01, help="How many days of history to plot.")] = 90.0,
) -> None:
    """Write one HTML file (opens offline) plotting audiences, sync runs, rejected rows, throughput, the last
    build and the collector, with tables of the latest runs and rejected rows."""
    from revetl.report import write_report

    written = write_report(current_project(), out, days=days)
    runs = f"{written.runs:,} run{'s' if written.runs != 1 else ''}"
    console.print(f"wrote {written.path} ({written.size / 1024:,.0f} KB, {runs} in the last {days:g} days)",
                  highlight=False, soft_wrap=True)
