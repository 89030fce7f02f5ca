"""`revetl audiences test [NAME...]`: the audience tests (audiences/tests/*.yml), each in a throwaway
warehouse (revetl/audiences/trial.py)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from revetl.cli.app import console, current_project
from revetl.cli.audiences import audiences_app


@audiences_app.command("test")
def audiences_test(
    names: Annotated[Optional[list[str]], typer.Argument(
        help="Tests to run: a file's NAME (audiences/tests/NAME.yml) or the audience it tests; default all.")] = None,
) -> None:
    """Build each audience test's events in a throwaway DuckDB warehouse and compare the members with the
    expected ones; exit 1 on any mismatch."""
    import tempfile
    import time
    from pathlib import Path

    from revetl.audiences.fixtures import TESTS_DIR, select_fixtures
    from revetl.audiences.trial_report import print_outcome, print_summary
    from revetl.audiences.trial import run_fixtures

    project = current_project()
    fixtures = select_fixtures(project, names or [])
    if not fixtures:
        console.print(f"no audience tests in {project.audiences_dir / TESTS_DIR} (see README, \"Audience tests\")",
                      highlight=False, soft_wrap=True)
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="revetl-audience-tests-") as scratch:
        outcomes = run_fixtures(project, fixtures, Path(scratch), lambda outcome: print_outcome(outcome, console))
    print_summary(outcomes, time.monotonic() - started, console)
    if not all(outcome.ok for outcome in outcomes):
        raise typer.Exit(1)
