"""The `revetl` command line: each command parses arguments and calls the library.

One handler (`main`) turns a RevetlError into one red sentence and exit code 1; `--debug`
shows the traceback instead.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

from revetl.errors import RevetlError

if TYPE_CHECKING:  # each command loads what it needs: `revetl --help` loads none of it
    from revetl.config import Project

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
console = Console()
err_console = Console(stderr=True)

_state = {"debug": False, "project_dir": None, "target": None}


@app.callback()
def _options(
    project_dir: Annotated[
        Optional[Path], typer.Option("--project-dir", help="Project directory (default: found from here).")
    ] = None,
    target: Annotated[
        Optional[str], typer.Option("--target", envvar="REVETL_TARGET", show_envvar=True,
                                    help="Warehouse: a profiles.yml output (duckdb, postgres; default: the profile's).")
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    _state["project_dir"] = project_dir
    _state["target"] = target
    _state["debug"] = debug


def _project() -> Project:
    from revetl.config import load_project

    return load_project(_state["project_dir"], _state["target"])


@app.command()
def ingest(
    files: Annotated[
        list[Path], typer.Argument(help="JSON-lines files (optionally gzipped) of Segment/RudderStack payloads.")
    ],
) -> None:
    """Land JSON lines of Segment or RudderStack payloads as Parquet."""
    from revetl.landing.ingest import ingest_files, print_report

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
    from revetl.landing.generate import GenerateOptions, generate_events

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
    """Build the warehouse models with dbt (models and dbt tests) and report each; on a server warehouse, load
    the landed files first."""
    from revetl.warehouse.connection import warehouse_type
    from revetl.warehouse.dbt import build_project, print_results

    project = _project()
    if warehouse_type(project) != "duckdb":  # DuckDB reads the landed files in place
        _load(project, then="build")
    result = build_project(project, as_of=as_of, select=select)
    print_results(result, console)
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def load() -> None:
    """Load the landed Parquet files not loaded yet into a server warehouse (`revetl build` does it first)."""
    from revetl.warehouse.connection import warehouse_type

    project = _project()
    if warehouse_type(project) == "duckdb":
        console.print("nothing to load: DuckDB reads the landed files where they are")
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
        _print_error(LandingError(problem))
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


@app.command()
def emulate(
    name: Annotated[str, typer.Argument(help="Destination API to emulate: braze, salesforce or intercom.")],
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


audiences_app = typer.Typer(no_args_is_help=True, help="Audiences (audiences/NAME.sql): list, preview, check.")
app.add_typer(audiences_app, name="audiences")


@audiences_app.command("list")
def audiences_list() -> None:
    """Every audience: description, output columns, last known size."""
    from revetl.audiences.preview import audience_summaries, print_audiences

    print_audiences(audience_summaries(_project()), console)


@audiences_app.command("preview")
def audiences_preview(
    name: Annotated[str, typer.Argument(help="Audience name (audiences/NAME.sql).")],
    limit: Annotated[int, typer.Option(min=0, help="Sample rows to show.")] = 10,
) -> None:
    """Run an audience on the warehouse: its size and sample rows."""
    from revetl.audiences.preview import preview_audience, print_preview

    print_preview(preview_audience(_project(), name, limit=limit), console)


@audiences_app.command("check")
def audiences_check() -> None:
    """Compile and check every audience and sync file; report every problem (exit 1 if any; warnings alone: 0)."""
    from revetl.audiences.check import check_project
    from revetl.audiences.compile import audience_names
    from revetl.config import sync_names

    project = _project()
    problems = check_project(project)
    for problem in problems:
        console.print(str(problem.relative_to(Path.cwd())), markup=False, highlight=False, soft_wrap=True)
    checked = f"{len(audience_names(project))} audiences and {len(sync_names(project))} syncs"
    warnings = sum(1 for problem in problems if problem.warning)
    noted = f", {warnings} warning(s)" if warnings else ""
    if len(problems) > warnings:
        console.print(f"[bold red]{len(problems) - warnings} problem(s)[/]{noted} in {checked}", highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]{checked}: no problems[/]{noted}", highlight=False)


@app.command()
def plan(
    sync: Annotated[str, typer.Argument(help="Sync name (syncs/NAME.yml).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Show what a sync would add, change and remove at its destination; sends and writes nothing."""
    import json

    from revetl.config import load_sync
    from revetl.sync.plan import plan_sync, print_plan

    project = _project()
    result = plan_sync(project, load_sync(project, sync))
    if as_json:
        print(json.dumps(result.to_json(), default=str, indent=2))
    else:
        print_plan(result, console)


@app.command("sync")
def sync_command(
    syncs: Annotated[Optional[list[str]], typer.Argument(help="Sync names (syncs/NAME.yml).")] = None,
    all_syncs: Annotated[bool, typer.Option("--all", help="Run every sync in syncs/.")] = False,
    force: Annotated[bool, typer.Option(help="Apply a plan the guard refused (mass removes).")] = False,
) -> None:
    """Apply each sync's plan at its destination; exit 0 only if every row was acknowledged."""
    from revetl.sync.apply import run_sync
    from revetl.config import load_sync, sync_names
    from revetl.errors import SyncCancelled
    from revetl.sync.report import print_result

    project = _project()
    names = sync_names(project) if all_syncs else list(syncs or [])
    if not names:
        raise typer.BadParameter("name at least one sync, or use --all")
    results, errors = [], []
    try:
        for name in names:  # one sync failing does not stop the others (cron runs them all)
            try:
                results.append(run_sync(project, load_sync(project, name), force=force, console=console))
            except RevetlError as exc:
                if getattr(exc, "result", None) is not None:
                    results.append(exc.result)  # type: ignore[attr-defined]
                if len(names) == 1 or isinstance(exc, SyncCancelled):
                    raise
                errors.append(exc)
    finally:
        if results:
            print_result(results, console)
        for exc in errors:
            _print_error(exc)
    if errors or not all(result.ok for result in results):
        raise typer.Exit(1)


@app.command()
def runs(
    sync: Annotated[Optional[str], typer.Argument(help="Only this sync's runs.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many runs to show.")] = 20,
) -> None:
    """List past sync runs, newest first: counts, duration, status (a run in progress: what it has acknowledged)."""
    from revetl.sync import state
    from revetl.sync.apply import live_runs
    from revetl.sync.report import print_runs
    from revetl.warehouse.connection import connect

    project = _project()
    with connect(project, read_only=True) as connection:
        records = state.runs(connection, sync, limit=limit)
    print_runs(live_runs(project, records), console)


@app.command()
def failures(
    sync: Annotated[str, typer.Argument(help="Sync name.")],
    run: Annotated[Optional[str], typer.Option(help="Run id (default: the latest run with rejects).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many rows to show.")] = 100,
) -> None:
    """List rows the destination rejected, with its reason; they are retried on the next run."""
    from revetl.sync import state
    from revetl.sync.report import print_failures
    from revetl.warehouse.connection import connect

    with connect(_project(), read_only=True) as connection:
        print_failures(sync, state.failures(connection, sync, run, limit=limit), console)


state_app = typer.Typer(no_args_is_help=True, help="Sync state kept in the warehouse.")
app.add_typer(state_app, name="state")


@state_app.command("reset")
def state_reset(
    sync: Annotated[str, typer.Argument(help="Sync name.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Forget what the destination acknowledged: the next run sends every member again (full resync)."""
    from revetl.sync import state
    from revetl.sync.apply import forget
    from revetl.config import load_sync

    project = _project()
    load_sync(project, sync)  # an unknown sync name fails here, before asking
    if not yes:
        typer.confirm(f"Forget everything sync {sync} sent, so that its next run resends every member?", abort=True)
    forgotten = forget(project, sync, lambda connection: state.reset(connection, sync))
    console.print(f"sync {sync}: forgot {forgotten:,} acknowledged rows; the next run is a full resync")


def _print_error(exc: BaseException) -> None:
    # soft_wrap: a long path must not be broken by the terminal width (the sentence is greppable).
    # Text: the sentence quotes user data, which may contain rich [markup]; URL passwords are hidden.
    from rich.text import Text

    from revetl.errors import scrub_urls

    # Notes added on the way up (how far a sync run got) end the same sentence.
    sentence = "; ".join([str(exc), *getattr(exc, "__notes__", ())])
    err_console.print(Text("error: ", style="bold red") + Text(scrub_urls(sentence)), highlight=False,
                      soft_wrap=True)


def main() -> None:
    """Entry point: run the app, turning revetl errors into one red sentence."""
    try:
        code = app(standalone_mode=False)  # returns, not raises, a typer.Exit's code
        sys.exit(code if isinstance(code, int) else 0)
    except RevetlError as exc:
        if _state["debug"]:
            raise
        _print_error(exc)
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
        if _state["debug"]:
            raise
        # A revetl bug: still one sentence (secrets scrubbed), the traceback with --debug.
        _print_error(RuntimeError(f"unexpected {type(exc).__name__}: {exc} (a revetl bug; --debug shows where)"))
        sys.exit(1)
