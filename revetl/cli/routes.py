"""`revetl routes`: check, run, status, replay, dead-letters (the event stream, revetl/routes/)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Optional

import typer

from revetl.cli.app import app, console, current_project, end_check

routes_app = typer.Typer(no_args_is_help=True, help="Routes (routes/NAME.yml): collected events to destinations.")
app.add_typer(routes_app, name="routes")


@routes_app.command("check")
def routes_check() -> None:
    """Check every route file; report every problem with its file and line (exit 1 if any)."""
    from revetl.routes.check import check_routes

    problems, checked = check_routes(current_project())
    for problem in problems:
        console.print(problem, markup=False, highlight=False, soft_wrap=True)
    end_check(len(problems), f"{checked} routes")


@routes_app.command("run")
def routes_run(
    ctx: typer.Context,
    names: Annotated[Optional[list[str]], typer.Argument(help="Routes to run (default: every route).")] = None,
    log_every: Annotated[float, typer.Option(min=0.1, help="Seconds between each route's JSON log line.")] = 10.0,
    idle: Annotated[bool, typer.Option(
        "--idle/--no-idle", help="SCHED_IDLE (the default on Linux): the router runs only on CPU time nothing else "
        "wants, so the collector never waits for it. --no-idle: the normal scheduler, at --nice.")] = True,
    nice: Annotated[Optional[int], typer.Option(
        min=0, max=19, help="With the normal scheduler (implies --no-idle): lower the router's CPU priority by this "
        "much (10 with --no-idle alone; 0 keeps it): for a host that is never idle.")] = None,
) -> None:
    """Deliver collected events to each route's destination as they arrive, until SIGTERM or Ctrl-C."""
    from revetl.routes.router import run_router

    # Only an --idle or --no-idle given counts (else `nice` decides); typer 0.28 runs a click of its own, so its
    # ParameterSource is compared by name.
    source = ctx.get_parameter_source("idle")
    chosen = source is not None and source.name == "COMMANDLINE"
    run_router(current_project(), names, log_every=log_every, nice=nice, idle=idle if chosen else None)


@routes_app.command("status")
def routes_status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the statuses as JSON.")] = False,
) -> None:
    """Each route's counters: delivered, retried, filtered, dead-lettered, backlog, lag p50/p99, state."""
    from revetl.routes.check import print_status, route_statuses

    statuses = route_statuses(current_project())
    if as_json:
        import orjson

        console.print_json(orjson.dumps(statuses).decode())
        return
    print_status(statuses, console)


@routes_app.command("replay")
def routes_replay(
    name: Annotated[str, typer.Argument(help="Route name (routes/NAME.yml).")],
    since: Annotated[Optional[dt.datetime], typer.Option(help="Events from this time on (UTC), by `timestamp`.")] = None,
    until: Annotated[Optional[dt.datetime], typer.Option(help="... and before this time (UTC).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be sent; send nothing.")] = False,
    dead_letters: Annotated[bool, typer.Option("--dead-letters", help="Send the route's dead letters again.")] = False,
) -> None:
    """Send history from the warehouse's `events` model (or the route's dead letters) through a route."""
    from revetl.errors import ConfigError
    from revetl.routes.replay import replay_route

    if (since is None) == (not dead_letters):
        raise ConfigError("give either --since (events from the warehouse) or --dead-letters")
    utc = [t if t is None or t.tzinfo else t.replace(tzinfo=dt.timezone.utc) for t in (since, until)]
    result = replay_route(current_project(), name, utc[0], utc[1], dry_run=dry_run, dead_letters=dead_letters)
    verb = "would send" if dry_run else "sent"
    console.print(f"{name}: read {result.read}, {verb} {result.sent}, filtered out {result.filtered}, "
                  f"unsupported {result.unsupported}"
                  + ("" if dry_run else f", delivered {result.delivered}, dead-lettered {result.dead_lettered}"),
                  highlight=False)
    if result.dead_lettered:
        raise typer.Exit(1)


@routes_app.command("load")
def routes_load() -> None:
    """Copy the routes' dead letters and counters not loaded yet into the warehouse (revetl_state.route_*)."""
    from revetl.routes.loading import load_route_files

    report = load_route_files(current_project())
    console.print(f"loaded {report.dead_letters} dead letters and {report.snapshots} counter snapshots "
                  f"from {report.files} files", highlight=False)


@routes_app.command("dead-letters")
def routes_dead_letters(
    name: Annotated[str, typer.Argument(help="Route name.")],
    limit: Annotated[int, typer.Option(min=0, help="Letters to show.")] = 20,
) -> None:
    """Events a route gave up on, with the reason (replay them with `routes replay NAME --dead-letters`)."""
    from revetl.routes.check import print_dead_letters

    print_dead_letters(current_project(), name, limit, console)
