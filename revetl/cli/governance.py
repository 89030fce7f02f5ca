"""`revetl tracking-plan` (check, infer) and `revetl violations` (the report, replay): README "Tracking plans"."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Optional

import typer

from revetl.cli.app import app, console, current_project, end_check

plan_app = typer.Typer(no_args_is_help=True, help="Tracking plans (tracking_plans/NAME.yml): check, infer.")
app.add_typer(plan_app, name="tracking-plan")
violations_app = typer.Typer(help="What the tracking plans found: counts by event, property and kind; replay.")
app.add_typer(violations_app, name="violations")


@plan_app.command("check")
def plan_check() -> None:
    """Read every tracking plan; report each problem with its file and line (exit 1 if any)."""
    from revetl.governance.plans import check_plans

    checked = check_plans(current_project())
    problems = 0
    for item in checked:
        for line, message in item.problems:
            where = f"{item.path}, line {line}" if line else str(item.path)
            console.print(f"{where}: {message}", markup=False, highlight=False, soft_wrap=True)
            problems += 1
    summary = ", ".join(
        f"{item.path.stem} ({len(item.plan.events)} events, sources {', '.join(item.plan.sources)})"
        for item in checked if item.plan is not None
    )
    end_check(problems, f"{len(checked)} tracking plan(s)", summary)


@plan_app.command("infer")
def plan_infer(
    since: Annotated[str, typer.Option(help="Events received since: 30d, 12h, or an ISO date.")] = "30d",
    source: Annotated[list[str], typer.Option(help="Source(s) the plan governs (repeat).")] = ["app"],  # noqa: B006
    out: Annotated[Optional[Path], typer.Option(help="Write the plan here (default: print it).")] = None,
) -> None:
    """Write a starting plan from the warehouse's `events`: names, observed types, required when always present."""
    from revetl.governance.infer import infer_plan, plan_yaml
    from revetl.governance.report import parse_since

    project = current_project()
    start = parse_since(since, dt.datetime.now(dt.timezone.utc))
    text = plan_yaml(infer_plan(project, start), source, start)
    if out is None:
        console.print(text, markup=False, highlight=False, soft_wrap=True, end="")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    console.print(f"wrote {out}; edit it, then `revetl tracking-plan check`", highlight=False)


@violations_app.callback(invoke_without_command=True)
def violations(
    ctx: typer.Context,
    since: Annotated[Optional[str], typer.Option(help="Only events received since: 7d, 12h, or an ISO date.")] = None,
) -> None:
    """Counts of violations by event, property and kind, with examples (landed and quarantined events)."""
    if ctx.invoked_subcommand is not None:
        return
    from revetl.governance.report import parse_since, print_violations, violation_report

    start = parse_since(since, dt.datetime.now(dt.timezone.utc)) if since else None
    print_violations(violation_report(current_project().landing_dir, start), console, start)


@violations_app.command("replay")
def violations_replay() -> None:
    """Judge the quarantined events again with the plans as they are now; land those no longer blocked."""
    from revetl.governance import project_gate
    from revetl.governance.quarantine import replay

    project = current_project()
    report = replay(project.landing_dir, project_gate(project))
    console.print(
        f"{report.landed:,} quarantined events landed, {report.still_blocked:,} still blocked "
        f"({report.files:,} quarantine files rewritten)", highlight=False,
    )
