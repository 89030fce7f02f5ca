"""What `revetl routes check`, `status` and `dead-letters` print."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from revetl.collect.settings import collector_dir
from revetl.config import Project
from revetl.routes.config import check_route, route_names
from revetl.routes.store import RouteStore, read_statuses, routes_state_dir

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["check_routes", "print_dead_letters", "print_status", "route_statuses"]


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def check_routes(project: Project) -> tuple[list[str], int]:
    """Every problem of every route file as `file:line: sentence`, and how many files were checked."""
    names = route_names(project)
    problems = []
    for name in names:
        checked = check_route(project, name)
        for line, message in checked.problems:
            problems.append(f"{_shown(checked.path)}:{line}: {message}" if line else f"{_shown(checked.path)}: {message}")
    return problems, len(names)


def route_statuses(project: Project) -> dict[str, dict[str, Any] | None]:
    """Each route's last status as its router wrote it (None: never run)."""
    return read_statuses(routes_state_dir(collector_dir(project)), route_names(project))


def print_status(statuses: dict[str, dict[str, Any] | None], console: Console) -> None:
    from rich.table import Table

    table = Table(show_edge=False)
    for column in ("route", "state", "delivered", "retried", "filtered", "dead-lettered", "backlog", "lag p50",
                   "lag p99", "updated"):
        table.add_column(column, justify="left" if column in ("route", "state", "updated") else "right")
    for name, status in statuses.items():
        if status is None:
            table.add_row(name, "never run", *[""] * 8)
            continue
        state = status["state"] + (f": {status['error']}" if status.get("error") else "")
        lag = [f"{status[k]:,.0f} ms" if status.get(k) is not None else "" for k in ("lag_p50_ms", "lag_p99_ms")]
        table.add_row(name, state, f"{status['delivered']:,}", f"{status['retried']:,}", f"{status['filtered']:,}",
                      f"{status['dead_lettered']:,}", f"{status['backlog_bytes'] / 1e6:,.1f} MB", *lag,
                      str(status.get("updated_at") or ""))
    console.print(table)


def print_dead_letters(project: Project, name: str, limit: int, console: Console) -> None:
    from revetl.routes.config import load_route

    load_route(project, name)  # an unknown route is named, with the known ones
    letters = list(RouteStore(routes_state_dir(collector_dir(project)), name).dead_letters())
    for letter in letters[-limit:] if limit else []:
        row = letter["row"]
        console.print(f"{letter['dead_at']}  {row.get('message_id')}  {row.get('type')} {row.get('event') or ''}: "
                      f"{letter['reason']}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"{len(letters)} dead letter(s) for route {name}", highlight=False)
