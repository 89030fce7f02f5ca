"""Where the `revetl` command writes: its two consoles and its one-sentence errors.

Loaded by both ways into the command line (revetl/launch.py, revetl/cli/), so that a plain `revetl sync`
prints exactly what the typer app prints without loading typer.
"""

from __future__ import annotations

from rich.console import Console

__all__ = ["console", "err_console", "print_error", "unexpected"]

console = Console(emoji=False)
err_console = Console(stderr=True, emoji=False)


def print_error(exc: BaseException) -> None:
    """One red sentence on stderr."""
    # soft_wrap: a long path must not be broken by the terminal width (the sentence is greppable).
    # Text: the sentence quotes user data, which may contain rich [markup]; URL passwords are hidden.
    from rich.text import Text

    from revetl.errors import scrub_urls

    # Notes added on the way up (how far a sync run got) end the same sentence.
    sentence = "; ".join([str(exc), *getattr(exc, "__notes__", ())])
    err_console.print(Text("error: ", style="bold red") + Text(scrub_urls(sentence)), highlight=False,
                      soft_wrap=True)


def unexpected(exc: Exception) -> RuntimeError:
    """A revetl bug as the one sentence the user sees (secrets scrubbed by `print_error`); --debug shows where."""
    return RuntimeError(f"unexpected {type(exc).__name__}: {exc} (a revetl bug; --debug shows where)")
