"""Commands on events and the warehouse: ingest, generate, build, load, collect, demo, emulate."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from revetl.cli.app import app, console, current_project, err_console, print_error

if TYPE_CHECKING:
    from revetl.config import Project
    from revetl.landing.ingest import IngestReport


@app.command()
def ingest(
    files: Annotated[
        list[Path], typer.Argument(help="JSON-lines files (optionally gzipped) of Segment/RudderStack payloads.")
    ],
    source: Annotated[
        Optional[str], typer.Option(help="The source they come from: the tracking plan governing it judges them.")
    ] = None,
) -> None:
    """Land JSON lines of Segment or RudderStack payloads as Parquet."""
    from revetl.landing.ingest import ingest_files, print_report

    project = current_project()
    report = ingest_files(project, files, source=source)
    print_report(report, console)
    if source is not None and project.alert_rules():
        _violation_alerts(project, report, source)
    # Non-zero when anything was rejected (the good records still landed), so cron and CI notice.
    if report.rejected:
        raise typer.Exit(1)


def _violation_alerts(project: Project, report: IngestReport, source: str) -> None:
    """The `violations` alert rules, after an ingest the source's tracking plan judged (revetl/alerts/)."""
    from revetl.alerts.hooks import after_ingest
    from revetl.alerts.rules import IngestFacts
    from revetl.governance import project_gate
    from revetl.governance.schema import KINDS

    if project_gate(project).governs(source):
        events, faulted = report.accepted + report.quarantined, report.flagged + report.quarantined
        facts = IngestFacts(source, events, faulted, report.violations, KINDS)
        after_ingest(project, facts, err_console)


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
    from revetl.landing.generate import GenerateOptions, generate_events

    options = GenerateOptions(users=users, days=days, seed=seed, end=end, jsonl=jsonl)
    summary = generate_events(current_project(), options, console=console)
    console.print(summary)


@app.command()
def build(
    as_of: Annotated[
        Optional[dt.datetime], typer.Option("--as-of", help="Time computed-trait windows end at (UTC).")
    ] = None,
    select: Annotated[Optional[str], typer.Option(help="dbt selection, e.g. +identity_graph.")] = None,
) -> None:
    """Build the warehouse models with dbt (models and dbt tests) and report each; on a server warehouse, load
    the landed files first."""
    from revetl.alerts.hooks import watch_build
    from revetl.warehouse.connection import warehouse_type
    from revetl.warehouse.dbt import build_project, print_results

    project = current_project()
    with watch_build(project, err_console) as run:  # alerts once the build ended (revetl/alerts/)
        if warehouse_type(project) not in _READS_FILES:
            _load(project, then="build")
        result = run.result = build_project(project, as_of=as_of, select=select)
        print_results(result, console)
    if not result.ok:
        raise typer.Exit(1)


# The emulators `revetl emulate` serves (revetl.emulators.EMULATORS, not imported for the help: start-up).
_EMULATED = "braze, salesforce, intercom, webhook, slack, amplitude or mixpanel"
_READS_FILES = {"duckdb": "DuckDB", "spark": "Spark"}  # engines that read the landed Parquet in place


@app.command()
def load() -> None:
    """Load the landed Parquet files not loaded yet into a server warehouse (`revetl build` does it first)."""
    from revetl.warehouse.connection import warehouse_type

    project = current_project()
    if warehouse_type(project) in _READS_FILES:
        console.print(f"nothing to load: {_READS_FILES[warehouse_type(project)]} reads the landed files where they are")
        return
    _load(project, then="load")


def _load(project: Project, then: str) -> None:
    """Load landed files (revetl/warehouse/load.py), print the summary; a file that could not be loaded
    stops the command with its sentence (`then`: what to run again once it is moved out)."""
    from revetl.errors import LandingError
    from revetl.warehouse.load import load_landed, print_load

    report = load_landed(project, console=console)
    print_load(report, console)
    *others, last = report.problems(project.landing_dir, then) or [None]
    for problem in others:
        print_error(LandingError(problem))
    if last is not None:
        raise LandingError(last + ("; nothing was built" if then == "build" else ""))


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
    from revetl.collect import CollectorConfig, serve

    serve(CollectorConfig.from_project(
        current_project(), host=host, port=port, flush_seconds=flush_seconds, flush_events=flush_events,
        workers=workers, access_log=access_log,
    ))


@app.command()
def demo(
    users: Annotated[int, typer.Option(help="Number of people to simulate.")] = 2000,
) -> None:
    """Run the whole pipeline on generated data and print what it produced."""
    from revetl.demo import run_demo

    run_demo(current_project(), users=users, console=console)


@app.command()
def emulate(
    name: Annotated[str, typer.Argument(help=f"Destination API to emulate: {_EMULATED}.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[Optional[int], typer.Option(help="Port; 0 picks a free one (default: the emulator's).")] = None,
    rate_limit: Annotated[Optional[int], typer.Option(help="Requests per window (default: the vendor's).")] = None,
    rate_window: Annotated[Optional[float], typer.Option(help="Rate-limit window in seconds.")] = None,
    no_rate_limit: Annotated[bool, typer.Option("--no-rate-limit", help="No rate limit (benchmarks).")] = False,
    error_share: Annotated[float, typer.Option(help="Share of requests answered 5xx, not applied.")] = 0.0,
    drop_share: Annotated[float, typer.Option(help="Share of connections closed unanswered, not applied.")] = 0.0,
    lost_response_share: Annotated[float, typer.Option(help="Share applied, then closed unanswered.")] = 0.0,
    timeout_share: Annotated[float, typer.Option(help="Share never answered until the client gives up.")] = 0.0,
    rate_limit_burst: Annotated[int, typer.Option(help="Answer 429 to the first N requests (a 429 storm).")] = 0,
    latency_ms: Annotated[Optional[str], typer.Option(help="Added latency per request: N or LOW-HIGH.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed: same seed, same faults.")] = None,
) -> None:
    """Serve a local emulator of a destination API, with the vendor's limits and optional faults."""
    from revetl.emulators import serve
    from revetl.errors import ConfigError

    options: dict = {"error_share": error_share, "drop_share": drop_share, "timeout_share": timeout_share,
                     "lost_response_share": lost_response_share, "rate_limit_burst": rate_limit_burst, "seed": seed}
    if latency_ms is not None:
        options["latency_ms"] = latency_ms
    if no_rate_limit and rate_limit is not None:
        raise ConfigError("Use either --rate-limit or --no-rate-limit, not both.")
    if no_rate_limit or rate_limit is not None:
        options["rate_limit"] = None if no_rate_limit else rate_limit
    if rate_window is not None:
        options["rate_window"] = rate_window
    serve(name, host=host, port=port, options=options)


