"""`revetl demo`: the whole pipeline on generated data, in its own corner of the project.

The demo never touches the project's real landing directory or warehouse: it works in
`data/demo/` (wiped at the start, so every run is the same), generates a realistic event stream
as Segment-style JSON lines, ingests it, builds the models and prints what came out. Then it
starts a local emulator for each destination the project's syncs use (Braze, Salesforce,
Intercom, a webhook receiver, Slack), syncs every audience to them, moves the clock forward a few
days, rebuilds, and syncs again so that the adds and removes can be seen arriving.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
from collections.abc import Iterator

import httpx

from rich.console import Console
from rich.table import Table

from revetl.config import Project, load_project, load_sync, sync_names
from revetl.governance.report import print_violations, violation_report
from revetl.warehouse.dbt import build_project, print_results
from revetl.landing.generate import GenerateOptions, generate_events
from revetl.landing.ingest import ingest_files, print_report
from revetl.warehouse.connection import connect

__all__ = ["run_demo"]

DEMO_SOURCE = "app"
_TRAIT_SAMPLE = """
select p.email, p.plan, t.reports_30d, t.events_30d, t.revenue_total, t.active_days_30d, t.top_dashboard
from profile_traits as t join profiles as p using (profile_id)
where p.email is not null
order by t.reports_30d desc, t.revenue_total desc, p.email
limit 8
"""


def _demo_project(project: Project) -> Project:
    """The same dbt project, with its landing dir, warehouse and target under data/demo/."""
    base = project.root / "data" / "demo"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    os.environ["REVETL_LANDING_DIR"] = str(base / "events")
    os.environ["REVETL_WAREHOUSE"] = str(base / "warehouse.duckdb")
    os.environ["REVETL_QUARANTINE_DIR"] = str(base / "quarantine")
    os.environ.setdefault("REVETL_TARGET_DIR", str(project.root / "target"))
    return load_project(project.root)


def run_demo(project: Project, users: int, console: Console) -> None:
    """Generate -> ingest -> build -> summary. Raises on any failure, so `make demo` fails loudly."""
    demo = _demo_project(project)
    end = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    jsonl = demo.root / "data" / "demo" / "events.jsonl"

    console.rule("[bold]1. generate a realistic event stream (Segment JSON lines)")
    console.print(generate_events(demo, GenerateOptions(users=users, days=90, seed=7, end=end, jsonl=jsonl),
                                  console=console))

    console.rule("[bold]2. ingest it into the landing directory (Parquet)")
    # As the app's events: the shipped tracking plan (tracking_plans/stackwise.yml) governs source `app`.
    print_report(ingest_files(demo, [jsonl], source=DEMO_SOURCE), console)
    print_violations(violation_report(demo.landing_dir), console, since=None)

    console.rule("[bold]3. build the warehouse models with dbt")
    result = build_project(demo, as_of=end, console=console)
    print_results(result, console)
    if not result.ok:
        raise SystemExit(1)

    console.rule("[bold]4. what the warehouse knows now")
    _print_summary(demo, console)

    with _emulators(demo, console) as urls:
        console.rule("[bold]5. sync every audience to the local destination emulators")
        _sync_all(demo, console, urls)

        later = end + dt.timedelta(days=LATER_DAYS)
        console.rule(f"[bold]6. {LATER_DAYS} days later: rebuild as of {later:%Y-%m-%d}, plan and sync again")
        result = build_project(demo, as_of=later, console=None)
        if not result.ok:
            print_results(result, console)
            raise SystemExit(1)
        _sync_all(demo, console, urls, show_plans=True)


LATER_DAYS = 5
# The environment variable each shipped sync file reads its base URL from (syncs/*.yml); Slack's holds the
# whole webhook URL (the emulator's `client_url`).
BASE_URL_VARIABLES = {"braze": "BRAZE_REST_ENDPOINT", "salesforce": "SALESFORCE_URL", "intercom": "INTERCOM_URL",
                      "webhook": "WEBHOOK_URL", "slack": "SLACK_WEBHOOK_URL"}


@contextlib.contextmanager
def _emulators(project: Project, console: Console) -> Iterator[dict[str, str]]:
    """One emulator per destination type the syncs use, each on a free loopback port."""
    from revetl.emulators import EMULATORS, create, running

    kinds = sorted({load_sync(project, name).destination_type for name in sync_names(project)})
    urls: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for kind in kinds:
            if kind not in EMULATORS or kind not in BASE_URL_VARIABLES:
                console.print(f"[yellow]no emulator for destination type {kind}: its syncs are skipped")
                continue
            emulator = create(kind)
            urls[kind] = stack.enter_context(running(emulator))
            client_url = getattr(emulator, "client_url", None)
            os.environ[BASE_URL_VARIABLES[kind]] = client_url(urls[kind]) if client_url else urls[kind]
        yield urls


def _sync_all(project: Project, console: Console, urls: dict[str, str], show_plans: bool = False) -> None:
    from revetl.sync.apply import run_sync
    from revetl.sync.plan import plan_sync, print_plan
    from revetl.sync.report import print_result

    results = []
    for name in sync_names(project):
        sync = load_sync(project, name)
        if sync.destination_type not in urls:
            continue
        if show_plans:
            print_plan(plan_sync(project, sync), console)
        # --force: the demo moves the clock days ahead, which may empty a small audience on purpose.
        results.append(run_sync(project, sync, force=True, console=console))
    print_result(results, console)
    for kind, url in urls.items():
        stats = httpx.get(f"{url}/_emulator/stats", timeout=10).json()
        applied = ", ".join(f"{n:,} {what}" for what, n in stats.get("applied", {}).items()) or "nothing"
        console.print(f"{kind} emulator at {url}: {stats['requests_total']:,} requests, applied {applied}")
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"demo sync failed: {failed[0].sync}: {failed[0].message}")


def _print_summary(project: Project, console: Console) -> None:
    connection = connect(project)
    try:
        counts = Table(title="warehouse", show_header=False)
        for label, sql in [
            ("events landed (with duplicates)",
             f"select count(*) from read_parquet('{project.landing_dir.as_posix()}/**/*.parquet')"),
            ("unique events", "select count(*) from events"),
            ("profiles", "select count(*) from profiles"),
            ("identifiers", "select count(*) from identity_graph"),
            ("conflicting identifiers", "select count(*) from identity_conflicts"),
            ("identity rounds", "select rounds from identity_graph__cc_stats"),
        ]:
            counts.add_row(label, f"{connection.execute(sql).fetchall()[0][0]:,}")
        console.print(counts)

        kinds = Table(title="identifiers by type")
        for column in ("type", "in profiles", "conflicts"):
            kinds.add_column(column, justify="right" if column != "type" else "left")
        for kind, in_graph, conflicts in connection.execute("""
            select identifier_type, count(*) filter (where source = 'graph'), count(*) filter (where source = 'conflict')
            from (select identifier_type, 'graph' as source from identity_graph
                  union all select identifier_type, 'conflict' from identity_conflicts)
            group by 1 order by 1""").fetchall():
            kinds.add_row(kind, f"{in_graph:,}", f"{conflicts:,}")
        console.print(kinds)

        conflicts = Table(title="a few conflicts (left out of merging)")
        conflicts.add_column("identifier")
        conflicts.add_column("reason")
        for kind, value, reason in connection.execute(
            "select identifier_type, identifier_value, reason from identity_conflicts "
            "order by distinct_anonymous_ids desc, distinct_user_ids desc, identifier_value limit 5"
        ).fetchall():
            conflicts.add_row(f"{kind}: {value}", reason)
        console.print(conflicts)

        result = connection.execute(_TRAIT_SAMPLE)
        traits = Table(title="computed traits: the most active profiles")
        for column in result.columns:
            traits.add_column(column, justify="left")
        for row in result.fetchall():
            traits.add_row(*["" if v is None else f"{v:,.2f}" if isinstance(v, float) else str(v) for v in row])
        console.print(traits)
    finally:
        connection.close()
