"""`revetl audiences`: list, preview, check."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from revetl.cli.app import app, console, current_project


audiences_app = typer.Typer(no_args_is_help=True, help="Audiences (audiences/NAME.sql): list, preview, check.")
app.add_typer(audiences_app, name="audiences")


@audiences_app.command("list")
def audiences_list() -> None:
    """Every audience: description, output columns, last known size."""
    from revetl.audiences.preview import audience_summaries, print_audiences

    print_audiences(audience_summaries(current_project()), console)


@audiences_app.command("preview")
def audiences_preview(
    name: Annotated[str, typer.Argument(help="Audience name (audiences/NAME.sql).")],
    limit: Annotated[int, typer.Option(min=0, help="Sample rows to show.")] = 10,
) -> None:
    """Run an audience on the warehouse: its size and sample rows."""
    from revetl.audiences.preview import preview_audience, print_preview

    print_preview(preview_audience(current_project(), name, limit=limit), console)


@audiences_app.command("check")
def audiences_check() -> None:
    """Compile and check every audience and sync file; report every problem (exit 1 if any; warnings alone: 0)."""
    from revetl.audiences.check import check_project
    from revetl.audiences.compile import audience_names
    from revetl.config import sync_names

    project = current_project()
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


