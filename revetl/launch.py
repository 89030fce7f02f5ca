"""The `revetl` command's entry point: a plain `revetl sync NAME...` runs without loading typer.

A cron line that fires every minute runs `revetl sync NAME`, and most minutes there is nothing to send: that
run should cost next to nothing, and typer (with the click inside it, and the app built from every command's
signature) is a fifth of it. So a command line of exactly this shape runs here:

    revetl [--project-dir DIR] [--target NAME] sync [--all] [--force | --no-force] [NAME...]

(options with their value as the next word or after `=`, in any order, each at most what typer allows),
calling what the typer command calls (revetl/sync/batch.py), printing with the same consoles and ending with
the same exit codes and sentences. Anything else, or anything this parser is unsure of (`--help`,
`--debug`: a traceback that typer draws, a word starting with `-` it does not know, shell completion,
nothing to run), goes to the typer app (revetl/cli/), unchanged. tests/test_launch.py runs both ways and
compares them.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

__all__ = ["PlainSync", "main", "plain_sync"]

_GLOBAL = ("--project-dir", "--target")  # the global options that take a value (`--debug` goes to typer)


class PlainSync(NamedTuple):
    """A `revetl sync` command line this module runs itself."""

    project_dir: Path | None = None
    target: str | None = None
    names: tuple[str, ...] = ()
    all_syncs: bool = False
    force: bool = False


def plain_sync(args: Sequence[str], environ: Mapping[str, str] = os.environ) -> PlainSync | None:
    """The command line `args` (without the program) as a PlainSync, or None when typer should parse it."""
    if any(name.startswith("_") and name.endswith("_COMPLETE") for name in environ):
        return None  # shell completion: click's
    values: dict[str, str] = {}
    index = 0
    while index < len(args) and args[index] != "sync":
        option, equals, value = args[index].partition("=")
        if option not in _GLOBAL:
            return None
        if not equals:
            index += 1
            if index == len(args):
                return None
            value = args[index]
        if not value or value.startswith("-"):
            return None
        values[option] = value
        index += 1
    if index == len(args):
        return None
    names: list[str] = []
    all_syncs = force = False
    for arg in args[index + 1:]:
        if arg == "--all":
            all_syncs = True
        elif arg in ("--force", "--no-force"):
            force = arg == "--force"
        elif not arg or arg.startswith("-"):
            return None
        else:
            names.append(arg)
    if not names and not all_syncs:
        return None
    directory = values.get("--project-dir")
    return PlainSync(Path(directory) if directory else None, values.get("--target"), tuple(names), all_syncs, force)


def main() -> None:
    """Run the command line in sys.argv: a plain sync here, anything else through the typer app."""
    command = plain_sync(sys.argv[1:])
    if command is None or not _run(command):
        from revetl.cli import main as typer_main

        typer_main()


def _run(command: PlainSync) -> bool:
    """Run a plain sync and exit as `revetl.cli.main` would; False, having done nothing, when there is none to run
    (`--all` with no sync files: typer's usage error)."""
    from revetl.errors import RevetlError
    from revetl.terminal import console, err_console, print_error, unexpected

    try:
        try:
            from revetl.config import load_project, sync_names
            from revetl.sync.batch import run_syncs

            project = load_project(command.project_dir, command.target)
            names = sync_names(project) if command.all_syncs else list(command.names)
            if not names:
                return False
            ok = run_syncs(project, names, force=command.force, console=console, err_console=err_console)
        except EOFError:  # as click's main: a new line, then typer's Abort
            print(file=sys.stderr, flush=True)
            err_console.print("aborted")
            sys.exit(1)
        except KeyboardInterrupt:
            sys.exit(130)
        except OSError as exc:
            if exc.errno != errno.EPIPE:  # click quiets the streams and exits 1; other OSErrors are errors
                raise
            _pacify()
            sys.exit(1)
    except RevetlError as exc:
        print_error(exc)
        sys.exit(1)
    except Exception as exc:  # a revetl bug: still one sentence, the traceback with --debug (typer's path)
        print_error(unexpected(exc))
        sys.exit(1)
    sys.exit(0 if ok else 1)


def _pacify() -> None:
    """As click after a broken pipe: the streams' last flush at exit raises nothing."""
    try:
        from typer._click.utils import PacifyFlushWrapper
    except ImportError:
        from click.utils import PacifyFlushWrapper
    sys.stdout = PacifyFlushWrapper(sys.stdout)  # type: ignore[assignment]
    sys.stderr = PacifyFlushWrapper(sys.stderr)  # type: ignore[assignment]
