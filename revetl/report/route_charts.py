"""The report's routes charts, from `History.routes` (the routes' counters by time bucket, history.py).

Per route, two charts over the window: what it did (events delivered and dead-lettered per bucket, stacked
bars; requests retried, dots on the right axis) and how late (lag from the collector's receipt to the
destination's acknowledgement: the mean of the bucket's p50 readings and its worst p99 reading, lines).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from revetl.report.charts import _span, _when
from revetl.report.history import RouteBucket
from revetl.report.svg import Mark, Series, time_chart

__all__ = ["route_charts"]

DELIVERED, DEAD, RETRIED, P50, P99 = "#59a14f", "#e15759", "#f28e2b", "#4e79a7", "#b07aa1"


def _label(bucket: RouteBucket) -> str:
    return f"{_when(bucket.start)} + {_span(bucket.width)}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def route_charts(buckets: Sequence[RouteBucket]) -> list[str]:
    """Two charts per route (events, lag), routes by name."""
    by_route: dict[str, list[RouteBucket]] = defaultdict(list)
    for bucket in buckets:
        by_route[bucket.route].append(bucket)
    if not by_route:
        return []
    start = min(bucket.start for bucket in buckets)
    end = max(bucket.start + bucket.width for bucket in buckets)
    width = buckets[0].width
    charts = []
    for route, found in sorted(by_route.items()):
        events, retries, p50, p99 = [], [], [], []
        for bucket in found:
            x, when = bucket.start + bucket.width / 2, _label(bucket)
            parts = tuple((value, color) for value, color in ((bucket.delivered, DELIVERED),
                                                              (bucket.dead_lettered, DEAD)) if value)
            events.append(Mark(x, bucket.delivered + bucket.dead_lettered,
                               f"{when}: {bucket.delivered:,} delivered, {bucket.dead_lettered:,} dead-lettered, "
                               f"{bucket.retried:,} requests retried; backlog up to "
                               f"{bucket.backlog_bytes / 1e6:,.1f} MB ({bucket.readings:,} readings)", parts=parts))
            if bucket.retried:  # a dot where requests were retried (not a row of dots on the axis)
                retries.append(Mark(x, bucket.retried, f"{when}: {bucket.retried:,} requests retried"))
            tip = f"{when}: lag p50 {_ms(bucket.lag_p50_ms)} (mean of readings), p99 {_ms(bucket.lag_p99_ms)} (worst)"
            if bucket.lag_p50_ms is not None:
                p50.append(Mark(x, bucket.lag_p50_ms, tip))
            if bucket.lag_p99_ms is not None:
                p99.append(Mark(x, bucket.lag_p99_ms, tip))
        delivered = sum(bucket.delivered for bucket in found)
        dead = sum(bucket.dead_lettered for bucket in found)
        retried = sum(bucket.retried for bucket in found)
        charts.append(time_chart(
            f"route {route}: events", [Series("events", DELIVERED, "bars", events),
                                       Series("retried", RETRIED, "dots", retries, right=True)],
            start=start, end=end, bucket=width, left_label="events", right_label="requests retried",
            subtitle=f"{delivered:,} delivered, {dead:,} dead-lettered, {retried:,} requests retried",
            legend=[("delivered", DELIVERED, "bars"), ("dead-lettered", DEAD, "bars"),
                    ("retried (right axis)", RETRIED, "dots")]))
        if p99:  # a route that acknowledged nothing yet has no lag to draw
            worst = max(mark.y for mark in p99)
            charts.append(time_chart(
                f"route {route}: lag", [Series("p99 (worst reading)", P99, "line", p99),
                                        Series("p50 (mean of readings)", P50, "line", p50)],
                start=start, end=end, bucket=width, left_label="ms, receipt to acknowledgement",
                subtitle=f"worst p99 {_ms(worst)}"))
    return charts
