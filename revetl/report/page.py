"""The report's one HTML page: a header, figures at a glance, the charts, and tables of the latest runs and
rejected rows. Self-contained: its style is inline, its charts are inline SVG (svg.py), it loads nothing
(no script, font or image from anywhere), so it opens offline, from a mail attachment or a CI artifact.

Every value from the project or the warehouse goes through `esc`; failure payloads are never shown, and
run messages have URL passwords hidden (history.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from revetl.report.charts import (STATUS_COLORS, audience_charts, build_chart, collector_chart, rejected_chart,
                                  sync_charts, throughput_charts, violations_chart)
from revetl.report.history import History
from revetl.report.route_charts import route_charts
from revetl.report.svg import esc

__all__ = ["render"]

STYLE = """
:root { --ink: #1f2430; --muted: #667085; --line: #e4e7ec; --bg: #f6f7f9; --card: #fff; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { background: #1f2430; color: #fff; padding: 22px 32px; }
header h1 { margin: 0; font-size: 22px; font-weight: 650; letter-spacing: .2px; }
header p { margin: 4px 0 0; color: #c5cad3; }
main { max-width: 1360px; margin: 0 auto; padding: 20px 32px 40px; }
section { margin-top: 28px; }
h2 { font-size: 17px; margin: 0 0 4px; }
section > p.about { margin: 0 0 12px; color: var(--muted); }
.tiles { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
.tile b { display: block; font-size: 22px; font-weight: 650; }
.tile span { color: var(--muted); font-size: 12.5px; }
.tile.bad b { color: #c0392b; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 16px; }
figure { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 12px 14px; }
figcaption { margin-bottom: 4px; }
figcaption b { font-size: 14.5px; }
figcaption span { color: var(--muted); font-size: 12.5px; }
.legend { margin-top: 4px; font-size: 12px; color: #475467; }
.key { margin-right: 12px; white-space: nowrap; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; }
.swatch.line { height: 3px; vertical-align: 2px; width: 14px; }
.swatch.dots { border-radius: 50%; }
svg.chart { width: 100%; height: auto; display: block; font-size: 11px; }
svg .grid { stroke: #eef0f3; }
svg .zero { stroke: #98a2b3; stroke-width: 1; }
svg .frame { fill: none; stroke: #d0d5dd; }
svg .tick { fill: #667085; }
svg .axis-label { fill: #475467; font-weight: 600; }
svg .label { fill: #344054; }
svg .value { fill: #344054; font-weight: 600; }
svg .line { fill: none; stroke-width: 2; }
svg .bar:hover, svg .dot:hover { opacity: .75; }
table { width: 100%; border-collapse: collapse; background: var(--card); border: 1px solid var(--line);
        border-radius: 10px; overflow: hidden; font-size: 13px; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f9fafb; color: #475467; font-weight: 600; }
td.t { white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
td.msg { color: #475467; max-width: 420px; overflow-wrap: anywhere; }
code { background: #eef0f3; padding: 1px 5px; border-radius: 4px; }
.status { display: inline-block; padding: 0 8px; border-radius: 10px; color: #fff; font-size: 12px; }
.empty { background: var(--card); border: 1px dashed #98a2b3; border-radius: 10px; padding: 22px 26px; }
.empty h2 { margin-bottom: 8px; }
.empty ol { margin: 8px 0 0; padding-left: 20px; }
.note { color: var(--muted); }
footer { color: var(--muted); font-size: 12px; margin-top: 36px; }
"""


def _when(moment: dt.datetime | float | None) -> str:
    if moment is None:
        return "-"
    if isinstance(moment, (int, float)):
        moment = dt.datetime.fromtimestamp(moment, dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _status(status: str) -> str:
    color = STATUS_COLORS.get(status, "#8c8c8c")
    return f'<span class="status" style="background:{color}">{esc(status)}</span>'


def _section(title: str, about: str, body: str, anchor: str) -> str:
    return f'<section id="{anchor}"><h2>{esc(title)}</h2><p class="about">{about}</p>{body}</section>'


def _grid(figures: Sequence[str]) -> str:
    return f'<div class="grid">{"".join(figures)}</div>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[tuple[str, str]]]) -> str:
    """Rows of (cell class, HTML already escaped)."""
    head = "".join(f"<th>{esc(header)}</th>" for header in headers)
    body = "".join("<tr>" + "".join(f'<td class="{kind}">{html}</td>' for kind, html in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _tiles(history: History) -> str:
    runs = history.runs
    ok = sum(1 for run in runs if run.status == "succeeded")
    sent = sum(run.sent for run in runs)
    rejected = sum(rows for _, _, rows in history.rejected)
    latest: dict[str, str] = {}
    for run in runs:
        latest[run.sync] = run.status
    failing = sorted(sync for sync, status in latest.items() if status not in ("succeeded", "running"))
    last = runs[-1] if runs else None
    tiles = [
        (f"{len(runs):,}", f"runs since {_when(history.since)[:10]}", False),
        (f"{ok / len(runs):.0%}" if runs else "-", "of runs succeeded", bool(runs) and ok < len(runs)),
        (f"{sent:,}", "rows sent (adds, changes, removes)", False),
        (f"{rejected:,}", "rows rejected by destinations", rejected > 0),
        (f"{len(latest):,}", "syncs" + (f"; failing now: {', '.join(failing)}" if failing else ", none failing now"),
         bool(failing)),
        (_when(last.started)[5:16] if last else "-", f"last run, UTC ({last.sync}: {last.status})" if last else "last run",
         bool(last) and last.status not in ("succeeded", "running")),
    ]
    return '<div class="tiles">' + "".join(
        f'<div class="tile{" bad" if bad else ""}"><b>{esc(value)}</b><span>{esc(label)}</span></div>'
        for value, label, bad in tiles) + "</div>"


def _empty(history: History) -> str:
    why = f"<p>The sync state could not be read: {esc(history.problem)}</p>" if history.problem else ""
    return (f'<section class="empty" id="empty"><h2>No sync runs yet</h2>{why}'
            "<p>This report plots the history revetl records in the warehouse (<code>revetl_state.runs</code> and "
            "<code>revetl_state.failures</code>)"
            f"{'' if history.problem else ', and there is none in this window'} on target "
            f"<code>{esc(history.target)}</code>. To make some:</p>"
            "<ol><li><code>revetl build</code>: build the models from the landed events;</li>"
            "<li><code>revetl sync --all</code> (or one <code>revetl sync NAME</code>): send each audience to its "
            "destination;</li><li><code>revetl report</code> again.</li></ol></section>")


def _runs_table(history: History) -> str:
    rows = []
    for run in list(reversed(history.runs))[:50]:
        rows.append([
            ("t", esc(_when(run.started))), ("", esc(run.sync)), ("", esc(run.audience)), ("", _status(run.status)),
            ("n", "-" if run.members is None else f"{run.members:,}"), ("n", f"{run.adds:,}"),
            ("n", f"{run.changes:,}"), ("n", f"{run.removes:,}"), ("n", f"{run.failed:,}"),
            ("n", "-" if run.seconds is None else f"{run.seconds:,.1f}"), ("msg", esc(run.message)),
        ])
    return _table(("started (UTC)", "sync", "audience", "status", "members", "adds", "changes", "removes",
                   "rejected", "seconds", "message"), rows)


def _failures_table(history: History) -> str:
    if not history.latest_failures:
        return '<p class="note">No rejected rows recorded.</p>'
    rows = [[("t", esc(_when(f.at))), ("", esc(f.sync)), ("", f"<code>{esc(f.run_id)}</code>"), ("", esc(f.key)),
             ("", esc(f.op)), ("msg", esc(f.reason))] for f in history.latest_failures]
    return _table(("at (UTC)", "sync", "run", "key", "operation", "reason"), rows)


def render(history: History, project_name: str) -> str:
    """The whole page for `history`."""
    parts = []
    if history.empty:
        parts.append(_empty(history))
    else:
        parts.append(_tiles(history))
        parts.append(_section("Audiences", "Members at each run (line), and the members who entered (above zero) "
                              "and left (below), as its syncs added and removed them at their destinations.", _grid(audience_charts(history)),
                              "audiences"))
        parts.append(_section("Sync runs", "Rows each run sent, colored by how it ended; dots: how long it took "
                              "(right axis). Hover a mark for its figures.", _grid(sync_charts(history)), "syncs"))
        rejected = rejected_chart(history) if history.rejected else '<p class="note">No rows rejected.</p>'
        parts.append(_section("Rejected rows", "Rows destinations refused, by their reason (retried on the next run; "
                              "<code>revetl failures SYNC</code> lists them).", rejected, "rejected"))
        throughput = throughput_charts(history)
        parts.append(_section("Throughput", "How fast each destination took rows.",
                              _grid(throughput) if throughput else '<p class="note">No run has sent rows yet.</p>',
                              "throughput"))
    parts.append(_build_section(history))
    if history.collector is not None:
        parts.append(_section("Collector", f"Events <code>revetl collect</code> landed in "
                              f"<code>{esc(history.collector.landing_dir)}</code>, by when they arrived.",
                              collector_chart(history.collector) or
                              '<p class="note">Nothing landed in this window; segments wait in the log.</p>',
                              "collector"))
    if history.routes is not None:
        charts = route_charts(history.routes)
        parts.append(_section("Routes", "Each route's events delivered and dead-lettered (bars) and requests retried "
                              "(dots, right axis), and the lag from the collector's receipt to the destination's "
                              "acknowledgement, from the counters the router keeps a minute and "
                              "<code>revetl routes load</code> copies to <code>revetl_state.route_stats</code>.",
                              _grid(charts) if charts else '<p class="note">No route counters in this window.</p>',
                              "routes"))
    if history.violations is not None:
        parts.append(_section("Tracking plans", "Violations of the landed and quarantined events, by the day they "
                              "arrived and their kind (the <code>violations</code> model of the last build; "
                              "<code>revetl violations</code> lists them).", violations_chart(history.violations) or
                              '<p class="note">No violations in this window.</p>', "violations"))
    if not history.empty:
        parts.append(_section("Latest runs", "The 50 most recent runs, newest first.", _runs_table(history), "runs"))
        parts.append(_section("Latest rejected rows", "The 50 most recent rows a destination refused.",
                              _failures_table(history), "failures"))
    title = f"revetl report · {project_name}"
    days = (history.generated - history.since).total_seconds() / 86400
    window = f"the last {days:g} days (since {_when(history.since)[:16]} UTC)"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>"
            f"<header><h1>{esc(title)}</h1><p>target <b>{esc(history.target)}</b> · runs of {esc(window)} · "
            f"generated {esc(_when(history.generated))} UTC</p></header><main>{''.join(parts)}"
            "<footer>Written by <code>revetl report</code>. Times are UTC. Hover a mark for its exact figures."
            "</footer></main></body></html>\n")


def _build_section(history: History) -> str:
    build = history.build
    if build is None:
        body = '<p class="note">No build recorded for this target yet: run <code>revetl build</code>.</p>'
    elif build.problem:
        body = f'<p class="note">{esc(build.problem)}</p>'
    elif not build.nodes:
        body = '<p class="note">The last build ran no node.</p>'
    else:
        body = build_chart(build)
    return _section("Last build", "dbt's own timing of each model and test in the last <code>revetl build</code> "
                    "(its run_results.json).", body, "build")
