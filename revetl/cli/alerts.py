"""`revetl alerts`: test the channels, list the alert states (alerts are sent by sync, build and collect)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from revetl.cli.app import app, console, current_project, print_error

alerts_app = typer.Typer(no_args_is_help=True, help="Alerts (`alerts:` in revetl.yml): test the channels, list states.")
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("test")
def alerts_test(
    channels: Annotated[Optional[list[str]], typer.Argument(help="Channel names (default: every channel).")] = None,
) -> None:
    """Send a test message to each channel; exit 1 if any could not take it."""
    from revetl.alerts.manage import test_channels
    from revetl.errors import RevetlError

    failed = 0
    for name, problem in test_channels(current_project(), channels or []):
        if problem is None:
            console.print(f"channel {name}: test message sent", highlight=False)
        else:
            failed += 1
            print_error(RevetlError(f"channel {name}: {problem}"))
    if failed:
        raise typer.Exit(1)


@alerts_app.command("list")
def alerts_list() -> None:
    """What each channel was last told, per rule and subject: failing (since when) or recovered."""
    from rich.table import Table

    from revetl.alerts.manage import states

    found = states(current_project())
    if not found:
        console.print("no alert sent yet")
        return
    table = Table(title="alert states", title_justify="left")
    for column in ("rule", "subject", "channel", "state", "since (UTC)", "told at (UTC)", "last message"):
        table.add_column(column)
    for state in found:
        table.add_row(state.rule, state.subject, state.channel, "failing" if state.failing else "recovered",
                      state.since[:19], state.notified_at[:19], state.message or "")
    console.print(table, soft_wrap=True)
