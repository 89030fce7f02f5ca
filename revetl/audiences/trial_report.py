"""What `revetl audiences test` prints: a line per test, a table of missing and unexpected keys for each
mismatch, one summary line."""

from __future__ import annotations

from itertools import zip_longest
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from revetl.audiences.trial import Outcome

__all__ = ["print_outcome", "print_summary"]

MAX_ROWS = 50  # keys shown per mismatch; the counts are always whole


def _shown(path: Path) -> str:
    """A test file as the project names it: audiences/tests/NAME.yml."""
    return path.relative_to(path.parents[2]).as_posix()


def print_outcome(outcome: Outcome, console: Console) -> None:
    fixture = outcome.fixture
    verdict = Text("PASS", style="bold green") if outcome.ok else Text("FAIL", style="bold red")
    what = f" {fixture.audience} ({_shown(fixture.path)}, as of {fixture.as_of:%Y-%m-%d %H:%M:%S}): "
    if outcome.error:
        console.print(verdict + Text(what + outcome.error), soft_wrap=True)
        return
    counts = f"{_count(len(outcome.members), 'member')}, {len(fixture.members)} expected, {outcome.seconds:.1f}s"
    console.print(verdict + Text(what + counts), soft_wrap=True)
    if outcome.ok:
        return
    table = Table(show_lines=False, box=None, padding=(0, 2), pad_edge=False)
    table.add_column(f"missing ({len(outcome.missing)}): expected, not in the audience", style="red")
    table.add_column(f"unexpected ({len(outcome.unexpected)}): in the audience, not expected", style="yellow")
    for missing, unexpected in list(zip_longest(outcome.missing, outcome.unexpected, fillvalue=""))[:MAX_ROWS]:
        table.add_row(missing, unexpected)
    if max(len(outcome.missing), len(outcome.unexpected)) > MAX_ROWS:
        table.add_row("...", "...")
    console.print(table)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def print_summary(outcomes: list[Outcome], seconds: float, console: Console) -> None:
    failed = sum(not outcome.ok for outcome in outcomes)
    passed = len(outcomes) - failed
    if failed:
        console.print(f"[bold red]{_count(failed, 'audience test')} failed[/], {passed} passed in {seconds:.1f}s",
                      highlight=False)
    else:
        console.print(f"[green]{_count(passed, 'audience test')} passed in {seconds:.1f}s[/]", highlight=False)
