"""The `revetl` command line: each command parses arguments and calls the library.

One handler (`main`) turns a RevetlError into one red sentence and exit code 1; `--debug`
shows the traceback instead.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from revetl.config import Project, load_project
from revetl.errors import RevetlError

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
console = Console()
err_console = Console(stderr=True)

_state = {"debug": False, "project_dir": None}


@app.callback()
def _options(
    project_dir: Annotated[
        Optional[Path], typer.Option("--project-dir", help="Project directory (default: found from here).")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    _state["project_dir"] = project_dir
    _state["debug"] = debug


def _project() -> Project:
    return load_project(_state["project_dir"])


@app.command()
def ingest(
    files: Annotated[
        list[Path], typer.Argument(help="JSON-lines files (optionally gzipped) of Segment/RudderStack payloads.")
    ],
) -> None:
    """Land JSON lines of Segment or RudderStack payloads as Parquet."""
    from revetl.ingest import ingest_files, print_report

    report = ingest_files(_project(), files)
    print_report(report, console)
    # Non-zero when anything was rejected (the good records still landed), so cron and CI notice.
    if report.rejected:
        raise typer.Exit(1)


@app.command()
def generate(
    users: Annotated[int, typer.Option(min=1, help="Number of people to simulate.")] = 2000,
    days: Annotated[int, typer.Option(min=1, help="Days of history, ending at --end.")] = 90,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same events.")] = 7,
    end: Annotated[
        Optional[dt.datetime], typer.Option(help="When history ends (UTC, exclusive); default today 00:00.")
    ] = None,
    jsonl: Annotated[
        Optional[Path],
        typer.Option(help="Write wire-format JSON lines (gzipped if it ends in .gz) instead of landing Parquet."),
    ] = None,
) -> None:
    """Write a synthetic, realistic event stream into the landing directory."""
    from revetl.generate import GenerateOptions, generate_events

    options = GenerateOptions(users=users, days=days, seed=seed, end=end, jsonl=jsonl)
    summary = generate_events(_project(), options, console=console)
    console.print(summary)


@app.command()
def build(
    as_of: Annotated[
        Optional[dt.datetime], typer.Option("--as-of", help="Time computed-trait windows end at (UTC).")
    ] = None,
    select: Annotated[Optional[str], typer.Option(help="dbt selection, e.g. +identity_graph.")] = None,
) -> None:
    """Build the warehouse models with dbt (models and dbt tests) and report each."""
    from revetl.dbt import build_project, print_results

    result = build_project(_project(), as_of=as_of, select=select)
    print_results(result, console)
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def collect(
    host: Annotated[Optional[str], typer.Option(help="Address to listen on (default: collect.host, 127.0.0.1).")] = None,
    port: Annotated[Optional[int], typer.Option(help="Port to listen on; 0 picks a free one (default: 8088).")] = None,
    flush_seconds: Annotated[Optional[float], typer.Option(help="Roll into Parquet at least this often.")] = None,
    flush_events: Annotated[Optional[int], typer.Option(help="Roll into Parquet once this many events wait.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Parser processes (0: parse in the server process).")] = None,
    access_log: Annotated[bool, typer.Option(help="Log one JSON line per request.")] = True,
) -> None:
    """Serve Segment's HTTP Tracking API and land what SDKs send as Parquet."""
    from revetl.collect import serve

    serve(
        _project(), host=host, port=port, flush_seconds=flush_seconds, flush_events=flush_events,
        workers=workers, access_log=access_log,
    )


@app.command()
def demo(
    users: Annotated[int, typer.Option(help="Number of people to simulate.")] = 2000,
) -> None:
    """Run the whole pipeline on generated data and print what it produced."""
    from revetl.demo import run_demo

    run_demo(_project(), users=users, console=console)


def main() -> None:
    """Entry point: run the app, turning revetl errors into one red sentence."""
    try:
        code = app(standalone_mode=False)  # returns, not raises, a typer.Exit's code
        sys.exit(code if isinstance(code, int) else 0)
    except RevetlError as exc:
        if _state["debug"]:
            raise
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except Exception as exc:  # click usage errors come here with standalone_mode=False
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
