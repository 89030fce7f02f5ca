"""The `revetl` app: global options, the current project, and the one error handler (`main`).

Commands live in the modules beside this one, grouped by what they act on; each loads what it needs
when it runs, so that `revetl --help` loads none of it. The consoles and the error sentence are
revetl/terminal.py's, shared with the launcher (revetl/launch.py) that runs a plain `revetl sync` without typer.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from revetl.errors import RevetlError
from revetl.terminal import console, err_console, print_error, unexpected

if TYPE_CHECKING:  # each command loads what it needs: `revetl --help` loads none of it
    from revetl.config import Project

__all__ = ["app", "console", "current_project", "err_console", "main", "print_error"]

HELP = "The `revetl` command line: each command parses arguments and calls the library."
app = typer.Typer(add_completion=False, no_args_is_help=True, help=HELP)

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


def current_project() -> Project:
    from revetl.config import load_project

    return load_project(_state["project_dir"], _state["target"])


def end_check(problems: int, checked: str, summary: str = "") -> None:
    """The last line of a `check` command: its problems in red (exit 1), or "no problems" in green."""
    if problems:
        console.print(f"[bold red]{problems} problem(s)[/] in {checked}", highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]{checked}: no problems[/] {summary}".rstrip(), highlight=False)


def _click_exception() -> type[Exception]:
    """The usage errors' base class of the click that typer runs on: typer 0.28 carries a click of its own
    (`typer._click`), whose errors are not the `click` package's."""
    try:
        from typer._click.exceptions import ClickException
    except ImportError:
        from click import ClickException
    return ClickException


def main() -> None:
    """Entry point: run the app, turning revetl errors into one red sentence."""
    try:
        code = app(standalone_mode=False)  # returns, not raises, a typer.Exit's code
        sys.exit(code if isinstance(code, int) else 0)
    except RevetlError as exc:
        if _state["debug"]:
            raise
        print_error(exc)
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(1)
    except Exception as exc:  # click usage errors come here with standalone_mode=False
        if isinstance(exc, _click_exception()):
            exc.show()
            sys.exit(exc.exit_code)
        if _state["debug"]:
            raise
        print_error(unexpected(exc))  # a revetl bug: still one sentence, the traceback with --debug
        sys.exit(1)
