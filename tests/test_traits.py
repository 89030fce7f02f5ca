"""Computed traits (DESIGN 3): values against numbers worked out by hand, and trait-file errors."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from wh import build, land, query
from identity_reference import wire

from revetl.errors import ConfigError
from revetl.warehouse.traits import load_traits

AS_OF = dt.datetime(2026, 1, 31)

TRAITS = """
traits:
  - {name: reports_30d, kind: count, event: Report Generated, window: 30 days}
  - {name: revenue_total, kind: sum, event: Payment Processed, property: revenue}
  - {name: revenue_30d, kind: sum, event: Payment Processed, property: revenue, window: 30 days}
  - {name: avg_payment, kind: avg, event: Payment Processed, property: revenue}
  - {name: min_payment, kind: min, event: Payment Processed, property: revenue}
  - {name: max_payment, kind: max, event: Payment Processed, property: revenue}
  - {name: first_page, kind: first, event_type: page, property: path}
  - {name: last_page, kind: last, event_type: page, property: path}
  - {name: last_plan, kind: last, event_type: identify, source: traits, property: plan}
  - {name: top_dashboard, kind: most_frequent, event: Dashboard Viewed, property: dashboard}
  - {name: plans_seen, kind: unique_list, event: Subscription Upgraded, property: to_plan}
  - name: big_payments
    kind: count
    event: [Payment Processed]
    where: "try_cast(json_extract_string(properties, '$.revenue') as double) >= 100"
models: [trait_active_days]
"""


def _at(day: str) -> str:
    return f"{day}T12:00:00Z"


def _events() -> list[dict]:
    a = {"userId": "u_a"}
    events = [
        wire("identify", "a-id1", **a, traits={"plan": "pro"}, timestamp=_at("2025-11-01")),
        wire("identify", "a-id2", **a, traits={"plan": "enterprise"}, timestamp=_at("2026-01-10")),
        wire("page", "a-p1", **a, name="Pricing", properties={"path": "/pricing"}, timestamp=_at("2025-11-01")),
        wire("page", "a-p2", **a, name="Home", properties={"path": "/home"}, timestamp=_at("2025-12-01")),
        wire("track", "a-pay1", **a, event="Payment Processed", properties={"revenue": 100}, timestamp=_at("2026-01-30")),
        wire("track", "a-pay2", **a, event="Payment Processed", properties={"revenue": 50}, timestamp=_at("2025-12-15")),
        wire("track", "a-pay3", **a, event="Payment Processed", properties={"revenue": "abc"}, timestamp=_at("2026-01-20")),
        # After as_of: counts for nothing.
        wire("track", "a-pay4", **a, event="Payment Processed", properties={"revenue": 999}, timestamp=_at("2026-02-05")),
        wire("track", "a-old-report", **a, event="Report Generated", timestamp=_at("2025-12-01")),
    ]
    events += [wire("track", f"a-rep{d}", **a, event="Report Generated", timestamp=_at(f"2026-01-{d}"))
               for d in (25, 26, 27)]
    for i, board in enumerate(["sales", "ops", "sales", "ops", "eng"]):
        events.append(wire("track", f"a-dash{i}", **a, event="Dashboard Viewed", properties={"dashboard": board},
                           timestamp=_at("2026-01-05")))
    for i, (plan, day) in enumerate([("pro", "2025-11-02"), ("enterprise", "2025-11-03"), ("pro", "2026-01-10")]):
        events.append(wire("track", f"a-up{i}", **a, event="Subscription Upgraded", properties={"to_plan": plan},
                           timestamp=_at(day)))
    events.append(wire("page", "b-p1", userId="u_b", name="B", properties={"path": "/b"}, timestamp=_at("2026-01-29")))
    return events


@pytest.mark.slow
def test_trait_values_match_hand_computed_numbers(project, tmp_path):
    traits_file = tmp_path / "traits.yml"
    traits_file.write_text(TRAITS)
    project = dataclasses.replace(project, traits_file=traits_file)
    land(project, _events())
    build(project, as_of=AS_OF, select="+profile_traits")
    rows = query(project, """
        select p.user_id, t.* exclude (profile_id)
        from profile_traits t join profiles p using (profile_id) order by p.user_id""")
    columns = [c for (c,) in query(project, "select column_name from information_schema.columns "
                                            "where table_name = 'profile_traits' order by ordinal_position")][1:]
    got = {row[0]: dict(zip(columns, row[1:])) for row in rows}
    assert got["u_a"] == {
        "reports_30d": 3,            # 25th, 26th, 27th of January; 1 December is outside 30 days
        "revenue_total": 150.0,      # 100 + 50; "abc" is not a number; 999 is after as_of
        "revenue_30d": 100.0,
        "avg_payment": 75.0,
        "min_payment": 50.0,
        "max_payment": 100.0,
        "first_page": "/pricing",
        "last_page": "/home",
        "last_plan": "enterprise",
        "top_dashboard": "ops",      # ops and sales twice each: the tie goes to the smaller value
        "plans_seen": ["enterprise", "pro"],
        "big_payments": 1,
        "active_days_30d": 7,        # Jan 5, 10, 20, 25, 26, 27, 30
    }
    assert got["u_b"] == {
        "reports_30d": 0, "revenue_total": 0.0, "revenue_30d": 0.0, "avg_payment": None,
        "min_payment": None, "max_payment": None, "first_page": "/b", "last_page": "/b",
        "last_plan": None, "top_dashboard": None, "plans_seen": [], "big_payments": 0, "active_days_30d": 1,
    }


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "traits.yml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("traits:\n  - {name: x, kind: cnt}\n",
         "traits.yml, line 2: trait `x`: unknown kind 'cnt'; expected one of count, sum"),
        ("traits:\n  - {name: ok, kind: count}\n  - name: rev\n    kind: sum\n",
         "traits.yml, line 3: trait `rev`: kind 'sum' needs a `property`"),
        ("traits:\n  - {name: x, kind: count, evnt: Signed Up}\n",
         "traits.yml, line 2: trait `x`: `evnt` unknown key"),
        ("traits:\n  - {name: x, kind: count, window: a month}\n",
         "traits.yml, line 2: trait `x`: window 'a month' must look like '30 days'"),
        ("traits:\n  - {name: x, kind: count}\n  - {name: x, kind: count}\n",
         "traits.yml, line 3: trait `x`: the name is used twice"),
        ("traits:\n  - {name: Bad Name, kind: count}\n",
         "traits.yml, line 2: trait `Bad Name`: name 'Bad Name' must be a lower-case SQL identifier"),
        ("traits:\n  - {name: x, kind: count\n", "traits.yml, line 3:"),
    ],
)
def test_trait_file_typos_name_the_trait_and_line(tmp_path, body, message):
    with pytest.raises(ConfigError) as caught:
        load_traits(_write(tmp_path, body))
    assert message in str(caught.value)


def test_shipped_traits_file_is_valid():
    from wh import REPO

    specs, models = load_traits(REPO / "traits.yml")
    assert len(specs) >= 8 and models == ["trait_active_days"]


NUMERIC_TRAITS = """
traits:
  - {name: revenue_total, kind: sum, event: Payment Processed, property: revenue}
  - {name: revenue_30d, kind: sum, event: Payment Processed, property: revenue, window: 30 days}
  - {name: avg_payment, kind: avg, event: Payment Processed, property: revenue}
  - {name: min_payment, kind: min, event: Payment Processed, property: revenue}
  - {name: max_payment, kind: max, event: Payment Processed, property: revenue}
  - {name: first_payment, kind: first, event: Payment Processed, property: revenue}
  - {name: last_payment, kind: last, event: Payment Processed, property: revenue}
  - {name: usual_payment, kind: most_frequent, event: Payment Processed, property: revenue, as: number}
  - {name: payments_seen, kind: unique_list, event: Payment Processed, property: revenue, as: number}
"""


def _payments() -> list[dict]:
    """60 profiles (and one more), each paying amounts whose double sum depends on the order they are added in."""
    amounts = [0.1, 0.2, 0.3, 19.99, 0.7, 1e-3, 33.33, 0.01, 12.34, 0.07, 194.06, 2.2]
    events = []
    for user in range(60):
        for i in range(4 + user % 9):
            amount = amounts[(user * 7 + i * 5) % len(amounts)]
            events.append(wire("track", f"pay-{user}-{i}", userId=f"payer{user}", event="Payment Processed",
                               properties={"revenue": amount if i % 3 else str(amount)},
                               timestamp=_at(f"2026-01-{1 + (user + i) % 28:02d}")))
    # 10^18 or more is no amount (as "abc" is not): it neither counts nor overflows the exact sum
    for i, amount in enumerate([1e20, 5, 10**18, -(10**25)]):
        events.append(wire("track", f"pay-huge-{i}", userId="payer_huge", event="Payment Processed",
                           properties={"revenue": amount}, timestamp=_at("2026-01-02")))
    return events


@pytest.mark.slow
def test_numeric_traits_are_byte_identical_whatever_order_the_events_are_summed_in(tmp_path, monkeypatch):
    """The same events, landed in opposite orders, give the same bytes for every trait value; sums are
    the double nearest the exact decimal sum (0.1 + 0.2 + 0.3 is 0.6, not 0.6000000000000001)."""
    from wh import redirect

    traits_file = _write(tmp_path, NUMERIC_TRAITS)
    values = []
    for name, events in (("forward", _payments()), ("reversed", _payments()[::-1])):
        project = dataclasses.replace(redirect(tmp_path / name, monkeypatch), traits_file=traits_file)
        land(project, events)
        build(project, as_of=AS_OF, select="+profile_traits")
        rows = query(project, "select p.user_id, t.* exclude (profile_id) from profile_traits t "
                              "join profiles p using (profile_id) order by p.user_id")
        values.append([repr(row) for row in rows])
    assert len(values[0]) == 61 and values[0] == values[1]
    exact: dict[str, Decimal] = {}
    for event in _payments():
        amount = Decimal(str(event["properties"]["revenue"]))
        exact[event["userId"]] = exact.get(event["userId"], Decimal(0)) + (amount if abs(amount) < 10**18 else 0)
    assert exact["payer_huge"] == 5
    totals = dict(query(project, "select p.user_id, t.revenue_total from profile_traits t join profiles p using (profile_id)"))
    assert totals == {user: float(total) for user, total in exact.items()}
