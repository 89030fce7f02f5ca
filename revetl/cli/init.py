"""`revetl init DIR`: scaffold a new project (revetl/scaffold/)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from revetl.cli.app import app, console


@app.command("init")
def init_command(
    directory: Annotated[Path, typer.Argument(help="Where to make the project (new or empty).")],
    warehouse: Annotated[str, typer.Option(
        help="The warehouse profiles.yml targets: duckdb (embedded, the default) or postgres.")] = "duckdb",
    force: Annotated[bool, typer.Option(
        "--force", help="Write into a directory that is not empty (files of the same names are replaced).")] = False,
) -> None:
    """Make a new project: dbt and revetl settings, an example audience with its test, an example sync to the
    local Braze emulator, .gitignore and a CI workflow."""
    from revetl.scaffold import create_project

    made = create_project(directory, warehouse=warehouse, force=force)
    for path in made.files:
        console.print(f"  [green]created[/] {path.as_posix()}", highlight=False)
    load = "revetl build                      # loads the events into PostgreSQL (PG* variables), then dbt" \
        if made.warehouse == "postgres" else "revetl build"
    console.print(
        f"\n[bold]A {made.warehouse} project in {made.root}.[/] Next:\n"
        f"  cd {made.root}\n"
        "  revetl generate --users 500 --days 30   # synthetic events; or `revetl ingest`, `revetl collect`\n"
        f"  {load}\n"
        "  revetl audiences test                   # audiences/tests/*.yml\n"
        "  revetl emulate braze &                  # a local Braze, where syncs/engaged_users_to_braze.yml points\n"
        "  revetl sync engaged_users_to_braze",
        highlight=False, soft_wrap=True,
    )
