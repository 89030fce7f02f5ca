"""Commands on syncs: plan, sync, runs, failures, state reset."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from revetl.cli.app import app, console, current_project, err_console


@app.command()
def plan(
    syncs: Annotated[Optional[list[str]], typer.Argument(help="Sync names (syncs/NAME.yml).")] = None,
    all_syncs: Annotated[bool, typer.Option("--all", help="Plan every sync in syncs/.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON (several: an object by name).")] = False,
) -> None:
    """Show what syncs would add, change and remove at their destinations; sends and writes nothing."""
    import json

    from revetl.config import load_sync, sync_names
    from revetl.sync.plan import plan_sync, print_plan

    project = current_project()
    names = sync_names(project) if all_syncs else list(syncs or [])
    if not names:
        raise typer.BadParameter("name at least one sync, or use --all")
    # One process plans them all: on Spark, one JVM start for every sync instead of one each.
    plans = {name: plan_sync(project, load_sync(project, name)) for name in names}
    if as_json:
        shown = {name: result.to_json() for name, result in plans.items()}
        print(json.dumps(shown[names[0]] if len(names) == 1 and not all_syncs else shown, default=str, indent=2))
        return
    for result in plans.values():
        print_plan(result, console)


@app.command("sync")
def sync_command(
    syncs: Annotated[Optional[list[str]], typer.Argument(help="Sync names (syncs/NAME.yml).")] = None,
    all_syncs: Annotated[bool, typer.Option("--all", help="Run every sync in syncs/.")] = False,
    force: Annotated[bool, typer.Option(help="Apply a plan the guard refused (mass removes).")] = False,
) -> None:
    """Apply each sync's plan at its destination; exit 0 only if every row was acknowledged."""
    from revetl.config import sync_names
    from revetl.sync.batch import run_syncs

    project = current_project()
    names = sync_names(project) if all_syncs else list(syncs or [])
    if not names:
        raise typer.BadParameter("name at least one sync, or use --all")
    if not run_syncs(project, names, force=force, console=console, err_console=err_console):
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

    project = current_project()
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

    with connect(current_project(), read_only=True) as connection:
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

    project = current_project()
    load_sync(project, sync)  # an unknown sync name fails here, before asking
    if not yes:
        typer.confirm(f"Forget everything sync {sync} sent, so that its next run resends every member?", abort=True)
    forgotten = forget(project, sync, lambda connection: state.reset(connection, sync))
    console.print(f"sync {sync}: forgot {forgotten:,} acknowledged rows; the next run is a full resync")


