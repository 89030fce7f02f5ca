"""`revetl report`'s Routes section: each route's delivered, retried and dead-lettered events over time and its
lag, from the counters `revetl routes load` copies into `revetl_state.route_stats`.

One test runs real routers (twice: counters restart with each run) against the webhook and Amplitude
emulators, then the real CLI (`routes load`, `report`) and Chromium; one writes a known history of snapshots
as the router writes them, on DuckDB and PostgreSQL, and checks the sums per bucket exactly."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from test_report import NOW, report
from test_report_browser import assert_drawn
from test_routes_delivery import deliver_until, events, rows, write_log
from wh import TARGETS, audience_project, on_target

from revetl.collect.lines import LogLines
from revetl.config import load_project
from revetl.emulators import running
from revetl.report.browser import render
from revetl.routes.loading import load_route_files
from revetl.routes.router import Router, load_routes

SECRET = "report-route-secret-0123456789"
HOOK = """\
    types: [track]
    backlog: {max_age_hours: 0.0002}
    destination: {type: webhook, base_url: "${HOOK_URL}", secret: "%s", unlimited: true, attempts: 2, timeout: 2}
""" % SECRET
AMP = """\
    destination: {type: amplitude, base_url: "${AMP_URL}", api_key: "k-amp-test", batch_size: 50, unlimited: true}
"""


def revetl(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(root), *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})


def snapshots(log_dir: Path, route: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in (log_dir / "routes" / route / "stats.jsonl").read_bytes().splitlines()]


@pytest.mark.slow
def test_the_report_plots_what_real_routers_did(tmp_path: Path, route_project: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    root = route_project(hook=HOOK, amp=AMP)
    log_dir = tmp_path / "log"
    monkeypatch.setenv("REVETL_COLLECTOR_DIR", str(log_dir))
    monkeypatch.setenv("REVETL_WAREHOUSE", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("REVETL_LANDING_DIR", str(tmp_path / "events"))
    monkeypatch.setenv("REVETL_TARGET_DIR", str(tmp_path / "target"))
    project = load_project(root)
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)  # past the hook's 0.72 s of retrying
    write_log(log_dir, rows("first", 120, received=old))
    with running("webhook", {"secret": SECRET, "error_share": 1.0}) as hook, \
            running("amplitude", {"api_key": "k-amp-test", "eps_threshold": 10_000}) as amp:
        monkeypatch.setenv("HOOK_URL", f"{hook}/webhook")
        monkeypatch.setenv("AMP_URL", amp)
        # Run 1: the webhook fails, its 120 events are dead-lettered after retries; Amplitude takes them.
        router = Router(log_dir, load_routes(project), LogLines())
        deliver_until(router, lambda: all(w.counters.dead_lettered + w.counters.delivered >= 120
                                          for w in router.workers))
        httpx.post(f"{hook}/_emulator/faults", json={"error_share": 0.0})
        # Run 2, a new router (its counters start again): 200 more, every destination up.
        write_log(log_dir, rows("second", 200))
        router = Router(log_dir, load_routes(project), LogLines())
        deliver_until(router, lambda: len(events(hook)) >= 200 and len(events(amp)) >= 320)
    hook_runs, amp_runs = snapshots(log_dir, "hook"), snapshots(log_dir, "amp")
    assert [(s["delivered"], s["dead_lettered"]) for s in hook_runs] == [(0, 120), (200, 0)]
    assert [s["delivered"] for s in amp_runs] == [120, 200]  # the second run's count is above the first's
    retried = sum(s["retried"] for s in hook_runs)
    assert retried > 0

    done = revetl(root, "routes", "load")
    assert done.returncode == 0 and "4 counter snapshots" in done.stdout, done.stdout + done.stderr
    out = tmp_path / "report.html"
    done = revetl(root, "report", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    html = out.read_text(encoding="utf-8")
    assert '<section id="routes">' in html
    assert f"320 delivered, 0 dead-lettered, {sum(s['retried'] for s in amp_runs):,} requests retried" in html
    assert f"200 delivered, 120 dead-lettered, {retried:,} requests retried" in html
    assert re.search(r"route hook: lag</b> <span>worst p99 [\d,]+ ms", html)
    rendered = render(out)
    assert rendered.errors == []
    routes = [chart for chart in rendered.charts if chart["title"].startswith("route ")]
    assert sorted(chart["title"] for chart in routes) == ["route amp: events", "route amp: lag",
                                                          "route hook: events", "route hook: lag"]
    assert all(chart["marks"] > 0 and chart["width"] > 300 for chart in routes), routes


def reading(at: dt.datetime, since: dt.datetime | None, delivered: int, retried: int = 0, dead: int = 0,
            p50: float | None = 30.0, p99: float | None = 90.0) -> dict[str, Any]:
    """One line of a route's stats.jsonl, as `Router.snapshot` writes it."""
    def text(moment: dt.datetime | None) -> str | None:
        return None if moment is None else moment.isoformat().replace("+00:00", "Z")

    return {"delivered": delivered, "retried": retried, "filtered": 0, "unsupported": 0, "dead_lettered": dead,
            "batches": 1, "backlog_bytes": 1000, "lag_p50_ms": p50, "lag_p99_ms": p99, "state": "running",
            "error": None, "since": text(since), "updated_at": text(at)}


@pytest.fixture(params=TARGETS)
def warehouse_project(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    return on_target(audience_project(tmp_path, monkeypatch, {}), request.param, request, monkeypatch)


@pytest.mark.slow
def test_counters_restarting_with_each_router_run_are_summed_per_bucket(warehouse_project: Any, tmp_path: Path) -> None:
    project = warehouse_project
    html = report(project, tmp_path)
    assert 'id="routes"' not in html  # no routes: nothing drawn
    load_route_files(project)  # the tables exist, empty: still nothing
    assert 'id="routes"' not in report(project, tmp_path)

    def minutes(n: float) -> dt.datetime:
        return NOW - dt.timedelta(hours=3) + dt.timedelta(minutes=n)

    crm = [reading(minutes(1), minutes(0), 10), reading(minutes(2), minutes(0), 30, retried=2),
           reading(minutes(2.5), minutes(0), 50, retried=3, p99=400.0),  # run 1 stops
           reading(minutes(61), minutes(60), 100, p50=20.0),  # run 2: 100 in its first minute, above run 1's 50
           reading(minutes(62), minutes(60), 150, dead=4, p50=40.0, p99=120.0),
           reading(minutes(121), None, 7),  # a reading without its run's start (loaded before it was kept)
           reading(minutes(122), None, 5)]  # ... below the one before: a new run, counted from zero
    amp = [reading(minutes(1), minutes(0), 0, p50=None, p99=None)]
    # A run begun before the 90 days: its reading there is left out, and the next counts from it.
    begun = NOW - dt.timedelta(days=91)
    old = [reading(begun + dt.timedelta(minutes=1), begun, 1000), reading(minutes(1), begun, 1010)]
    state = project.root.parent / "collector" / "routes"
    for name, lines in (("crm", crm), ("amp", amp), ("old", old)):
        (state / name).mkdir(parents=True)
        (state / name / "stats.jsonl").write_bytes(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    assert load_route_files(project).snapshots == 10
    html = report(project, tmp_path)
    assert "route crm: events" in html and "route amp: events" in html
    assert "route amp: lag" not in html  # nothing acknowledged: no lag to draw
    assert "212 delivered, 4 dead-lettered, 3 requests retried" in html  # 50 + 150 + 7 + 5
    assert "10 delivered, 0 dead-lettered, 0 requests retried" in html  # route old: 1010 - 1000
    start = (NOW - dt.timedelta(hours=3)).strftime("%Y-%m-%d %H:%M")
    # two hours: 5-minute buckets
    assert f"<title>{start} UTC + 5 minutes: 50 delivered, 0 dead-lettered, 3 requests retried; backlog up to " \
           f"0.0 MB (3 readings)</title>" in html
    assert "lag p50 30 ms (mean of readings), p99 400 ms (worst)" in html
    second = (NOW - dt.timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")
    assert f"<title>{second} UTC + 5 minutes: 150 delivered, 4 dead-lettered, 0 requests retried" in html
    assert "lag p50 30 ms (mean of readings), p99 120 ms (worst)" in html
    quiet = report(project, tmp_path, days=0.02)  # the last 29 minutes: no counters, the section says so
    assert "No route counters in this window." in quiet
