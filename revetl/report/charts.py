"""The report's charts, from its `History`: audiences, sync runs, rejected rows, throughput, the build, the
collector.

A series of up to `MAX_MARKS` runs is drawn run by run. A longer one is aggregated into equal time
buckets of a round width (5 minutes, an hour, a day...): members at the end of a bucket, rows summed,
the worst status, the longest duration. So 10,000 runs draw as a few hundred marks, and the page's
size depends on the number of syncs, not of runs. Each mark's tooltip says what it aggregates.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from revetl.report.history import MAX_MARKS, Build, Collector, History, Run, bucket_width
from revetl.report.svg import Bar, Mark, Series, bar_chart, time_chart

__all__ = ["STATUS_COLORS", "audience_charts", "build_chart", "collector_chart", "rejected_chart", "sync_charts",
           "throughput_charts"]

WIDE = 1280  # the viewBox width of a chart that spans the page
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#e15759",
           "#bab0ac")
STATUS_COLORS = {"succeeded": "#59a14f", "failed": "#e15759", "crashed": "#b3262b", "refused": "#f1a340",
                 "cancelled": "#edc948", "skipped": "#bab0ac", "running": "#4e79a7"}
_SEVERITY = ("crashed", "failed", "refused", "cancelled", "skipped", "running", "succeeded")
ADDED, REMOVED, MEMBERS, DURATION = "#59a14f", "#e15759", "#4e79a7", "#555b66"


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class _Group:
    """Runs drawn as one mark: a single run, or a time bucket's runs."""

    x: float
    runs: tuple[Run, ...]
    width: float  # seconds: the bucket's, or 0 for a single run

    def label(self) -> str:
        if not self.width:
            return _when(self.runs[0].started)
        return f"{_when(self.x - self.width / 2)} + {_span(self.width)}, {len(self.runs):,} runs"


def _span(seconds: float) -> str:
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = seconds / size
            return f"{count:.0f} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:.0f} s"


def _groups(runs: Sequence[Run], start: float, end: float) -> tuple[list[_Group], float]:
    """The runs (oldest first) as marks, and the width each mark stands for (seconds)."""
    if len(runs) <= MAX_MARKS:
        return [_Group(run.started, (run,), 0.0) for run in runs], (end - start) / max(len(runs), 1)
    width = bucket_width(start, end)
    buckets: dict[int, list[Run]] = defaultdict(list)
    for run in runs:
        buckets[int(run.started // width)].append(run)
    return [_Group(index * width + width / 2, tuple(found), float(width)) for index, found in sorted(buckets.items())], \
        float(width)


def _window(history: History, runs: Iterable[Run]) -> tuple[float, float]:
    times = [run.started for run in runs]
    return (min(times), max(times)) if times else (history.since.timestamp(), history.generated.timestamp())


def _by(runs: Iterable[Run], key: Callable[[Run], str]) -> dict[str, list[Run]]:
    found: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        found[key(run)].append(run)
    return dict(sorted(found.items()))


def audience_charts(history: History) -> list[str]:
    """Per audience: its members at each run (line) and the rows its syncs added and removed (bars)."""
    start, end = _window(history, history.runs)
    charts = []
    for audience, runs in _by(history.runs, lambda run: run.audience).items():
        groups, width = _groups(runs, start, end)
        members, adds, removes = [], [], []
        for group in groups:
            sized = [run for run in group.runs if run.members is not None]
            # Each sync diffs the audience against its own state: the same entry is an add at every
            # destination. Members who entered (left) = the most any one of its syncs added (removed).
            per_sync = _by(group.runs, lambda run: run.sync).values()
            adds_n = max(sum(run.adds for run in found) for found in per_sync)
            removes_n = max(sum(run.removes for run in found) for found in per_sync)
            if sized:
                size = sized[-1].members or 0
                members.append(Mark(group.x, size, f"{group.label()}: {size:,} members"))
            adds.append(Mark(group.x, adds_n, f"{group.label()}: {adds_n:,} entered (added at the destinations)"))
            removes.append(Mark(group.x, -removes_n, f"{group.label()}: {removes_n:,} left (removed at the "
                                                     "destinations)"))
        latest = next((run.members for run in reversed(runs) if run.members is not None), None)
        syncs = sorted({run.sync for run in runs})
        subtitle = (f"{latest:,} members at the last run" if latest is not None else "no size recorded yet") + \
            f" · synced by {', '.join(syncs)}"
        charts.append(time_chart(
            f"audience {audience}", [Series("entered", ADDED, "bars", adds), Series("left", REMOVED, "bars", removes),
                                     Series("members", MEMBERS, "line", members)],
            start=start, end=end, bucket=width, left_label="members · entered (+) / left (−)", subtitle=subtitle))
    return charts


def sync_charts(history: History) -> list[str]:
    """Per sync: rows sent at each run, colored by the run's status (bars), and its duration (dots, right axis)."""
    start, end = _window(history, history.runs)
    charts = []
    for sync, runs in _by(history.runs, lambda run: run.sync).items():
        groups, width = _groups(runs, start, end)
        sent, durations = [], []
        for group in groups:
            rows = sum(run.sent for run in group.runs)
            failed = sum(run.failed for run in group.runs)
            adds, changes, removes = (sum(getattr(run, op) for run in group.runs) for op in ("adds", "changes",
                                                                                              "removes"))
            statuses = ", ".join(f"{count} {status}" for status, count in sorted(_count(group.runs).items()))
            message = f" — {group.runs[-1].message}" if len(group.runs) == 1 and group.runs[0].message else ""
            by_status = _by(group.runs, lambda run: run.status)
            parts = tuple((sum(run.sent for run in by_status[status]), _color(status))
                          for status in sorted(by_status, key=_bottom_first))
            sent.append(Mark(group.x, rows, f"{group.label()}: {statuses}; {rows:,} rows sent ({adds:,} adds, "
                                            f"{changes:,} changes, {removes:,} removes), {failed:,} rejected{message}",
                             parts=parts))
            timed = [run.seconds for run in group.runs if run.seconds is not None]
            if timed:
                durations.append(Mark(group.x, max(timed), f"{group.label()}: {max(timed):,.1f} s"
                                      + (" (longest)" if len(timed) > 1 else "")))
        statuses = _count(runs)
        legend = [(status, _color(status), "bars") for status in sorted(statuses, key=_bottom_first)]
        legend.append(("duration (right axis)", DURATION, "dots"))
        ok = statuses.get("succeeded", 0)
        charts.append(time_chart(
            f"sync {sync}", [Series("rows sent", "#4e79a7", "bars", sent),
                             Series("duration", DURATION, "dots", durations, right=True)],
            start=start, end=end, bucket=width, left_label="rows sent", right_label="seconds",
            subtitle=f"{history.destinations.get(sync, 'unknown')} · {_n(len(runs), 'run')}, {ok:,} succeeded",
            legend=legend))
    return charts


def _color(status: str) -> str:
    return STATUS_COLORS.get(status, "#8c8c8c")


def _bottom_first(status: str) -> tuple[int, str]:
    """Stacking order: succeeded at the bottom, the worst on top; statuses revetl does not know, last."""
    order = _SEVERITY[::-1]
    return (order.index(status) if status in order else len(order), status)


def _count(runs: Iterable[Run]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        counts[run.status] += 1
    return counts


def _sync_colors(history: History) -> dict[str, str]:
    syncs = sorted({run.sync for run in history.runs} | {sync for _, sync, _ in history.rejected})
    return {sync: PALETTE[index % len(PALETTE)] for index, sync in enumerate(syncs)}


def rejected_chart(history: History, top: int = 12) -> str:
    """Rejected rows by reason (the most frequent first), each bar stacked by sync."""
    colors = _sync_colors(history)
    reasons: dict[str, dict[str, int]] = defaultdict(dict)
    for reason, sync, rows in history.rejected:
        reasons[reason][sync] = reasons[reason].get(sync, 0) + rows
    ranked = sorted(reasons.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    shown, rest = ranked[:top], ranked[top:]
    if rest:
        other: dict[str, int] = defaultdict(int)
        for _, per_sync in rest:
            for sync, rows in per_sync.items():
                other[sync] += rows
        shown.append((f"{len(rest):,} other reasons", dict(other)))
    bars = [Bar(reason, [(rows, colors[sync], f"{sync}: {rows:,} rows rejected — {reason}")
                         for sync, rows in sorted(per_sync.items())], tip=reason)
            for reason, per_sync in shown]
    total = sum(rows for _, _, rows in history.rejected)
    used = sorted({sync for _, per_sync in shown for sync in per_sync})
    return bar_chart("rejected rows by reason", bars, unit="rows rejected", legend=[
        (sync, colors[sync], "bars") for sync in used], subtitle=f"{_n(total, 'row')}, {_n(len(reasons), 'reason')}",
        width=WIDE)


def throughput_charts(history: History) -> list[str]:
    """Rows per second of sending, per destination: over the window (bars), and over time (lines)."""
    timed = [run for run in history.runs if run.seconds and run.sent]
    if not timed:
        return []
    by_destination = _by(timed, lambda run: history.destinations.get(run.sync, "unknown"))
    colors = {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(by_destination)}
    bars = []
    for name, runs in by_destination.items():
        rate = sum(run.sent for run in runs) / sum(run.seconds or 0 for run in runs)
        per_sync = "; ".join(f"{sync}: {_per_second(_rate(found))}" for sync, found in _by(runs, lambda r: r.sync).items())
        best = max(run.sent / (run.seconds or 1) for run in runs)
        bars.append(Bar(name, [(rate, colors[name], f"{name}: {_per_second(rate)} over {_n(len(runs), 'run')} that "
                                                    f"sent rows (fastest run {_per_second(best)}); {per_sync}")],
                        note=f"{_per_second(rate)} · {_n(len(runs), 'run')}"))
    start, end = _window(history, timed)
    series = []
    for name, runs in by_destination.items():
        groups, _ = _groups(runs, start, end)
        marks = [Mark(group.x, _rate(group.runs), f"{name}, {group.label()}: {_per_second(_rate(group.runs))}")
                 for group in groups]
        series.append(Series(name, colors[name], "line", marks))
    return [bar_chart("throughput per destination", bars, unit="rows per second of sending", notes=170,
                      subtitle="rows acknowledged ÷ seconds of the runs that sent rows"),
            time_chart("throughput over time", series, start=start, end=end, left_label="rows/s",
                       subtitle="per destination, runs that sent rows")]


def _per_second(rate: float) -> str:
    return f"{rate:,.1f} rows/s" if rate < 10 else f"{rate:,.0f} rows/s"


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _rate(runs: Sequence[Run]) -> float:
    seconds = sum(run.seconds or 0 for run in runs)
    return sum(run.sent for run in runs) / seconds if seconds else 0.0


_KIND_COLORS = {"model": "#4e79a7", "test": "#b07aa1", "seed": "#76b7b2", "snapshot": "#edc948"}
_BAD = {"error", "fail", "runtime error"}


def build_chart(build: Build, top: int = 20) -> str:
    """The last build's slowest nodes, colored by kind; failed ones in red."""
    nodes = sorted(build.nodes, key=lambda node: (-node.seconds, node.name))[:top]
    bars = [Bar(node.name, [(node.seconds, "#e15759" if node.status in _BAD else _KIND_COLORS.get(node.kind, "#9c755f"),
                             f"{node.kind} {node.name}: {node.seconds:,.2f} s, {node.status}")],
                note=f"{node.seconds:,.2f} s", tip=f"{node.kind} {node.name}") for node in nodes]
    kinds = _count_kinds(build)
    failed = sum(1 for node in build.nodes if node.status in _BAD)
    subtitle = f"{build.generated_at[:19].replace('T', ' ') or 'unknown time'} UTC · {build.elapsed:,.1f} s · " + \
        ", ".join(f"{count:,} {kind}s" for kind, count in sorted(kinds.items())) + \
        (f" · {failed:,} failed" if failed else " · all passed")
    legend = [(kind, _KIND_COLORS.get(kind, "#9c755f"), "bars") for kind in sorted(kinds)]
    if failed:
        legend.append(("failed", "#e15759", "bars"))
    return bar_chart(f"last build: the {len(nodes)} slowest of {len(build.nodes):,} nodes", bars, unit="seconds",
                     subtitle=subtitle, legend=legend, width=WIDE)


def _count_kinds(build: Build) -> dict[str, int]:
    kinds: dict[str, int] = defaultdict(int)
    for node in build.nodes:
        kinds[node.kind] += 1
    return kinds


def collector_chart(collector: Collector) -> str:
    """Events the collector landed per time bucket (by when their log segment opened)."""
    if not collector.files:
        return ""
    times = [started for started, _ in collector.files]
    start, end = min(times), max(times)
    width = bucket_width(start, end)
    buckets: dict[int, list[int]] = defaultdict(list)
    for started, rows in collector.files:
        buckets[int(started // width)].append(rows)
    marks = [Mark(index * width + width / 2, sum(rows),
                  f"{_when(index * width)} + {_span(width)}: {'≈ ' if collector.estimated else ''}{sum(rows):,} events "
                  f"in {len(rows):,} files")
             for index, rows in sorted(buckets.items())]
    total = sum(rows for _, rows in collector.files)
    about = "≈ " if collector.estimated else ""
    note = " (most counts estimated from file sizes)" if collector.estimated else ""
    return time_chart("collector: events landed", [Series(f"events per {_span(width)}", "#76b7b2", "bars", marks)],
                      start=start, end=end, bucket=width, left_label=f"events per {_span(width)}", width=WIDE,
                      subtitle=f"{about}{total:,} events in {len(collector.files):,} files{note}"
                               f" · {_n(collector.waiting_segments, 'log segment')} waiting")


_KIND_COLORS = {"unplanned_event": "#e15759", "missing_required": "#f28e2b", "wrong_type": "#b07aa1",
                "value_not_allowed": "#edc948", "unplanned_property": "#76b7b2"}


def violations_chart(violations: Sequence[tuple[float, str, bool, int]]) -> str:
    """Tracking-plan violations per day received, stacked by kind (the `violations` model)."""
    if not violations:
        return ""
    days: dict[float, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    blocked = 0
    for day, kind, was_blocked, count in violations:
        days[day][kind] += count
        blocked += count if was_blocked else 0
    marks = [Mark(day + 43200, sum(kinds.values()),
                  f"{_when(day)[:10]}: " + ", ".join(f"{count:,} {kind}" for kind, count in sorted(kinds.items())),
                  parts=tuple((kinds[kind], _KIND_COLORS.get(kind, "#999")) for kind in _KIND_COLORS if kind in kinds))
             for day, kinds in sorted(days.items())]
    total = sum(count for *_, count in violations)
    legend = [(kind, color, "bars") for kind, color in _KIND_COLORS.items()]
    return time_chart("tracking plans: violations per day", [Series("violations per day", "#e15759", "bars", marks)],
                      start=min(days), end=max(days) + 86400, bucket=86400, left_label="violations per day",
                      width=WIDE, legend=legend,
                      subtitle=f"{total:,} violations, {blocked:,} of them on blocked (quarantined) events")
