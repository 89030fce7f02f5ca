"""`revetl sync NAME... | --all`: the named syncs run one after the other, each watched by its alerts.

One sync failing does not stop the others (cron runs them all); its error is printed after the summary
table of every run that got as far as a result. Shared by the typer command (revetl/cli/syncs.py) and the
launcher's plain path (revetl/launch.py), so that both print and end alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from revetl.errors import RevetlError

if TYPE_CHECKING:
    from rich.console import Console

    from revetl.config import Project

__all__ = ["run_syncs"]


def run_syncs(project: Project, names: list[str], *, force: bool, console: Console, err_console: Console) -> bool:
    """Run each sync in `names`; True only if every row of every run was acknowledged. The error of a single
    sync, and a cancellation, are raised (after the summary); with several, the others still run."""
    from revetl.alerts.hooks import watch_sync
    from revetl.errors import SyncCancelled
    from revetl.config import load_sync
    from revetl.sync.apply import run_sync
    from revetl.sync.report import print_result
    from revetl.terminal import print_error

    results, errors = [], []
    try:
        for name in names:
            try:
                with watch_sync(project, name, err_console) as run:  # alerts once the run ended (revetl/alerts/)
                    run.result = run_sync(project, load_sync(project, name), force=force, console=console)
                results.append(run.result)
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
            print_error(exc)
    return not errors and all(result.ok for result in results)
