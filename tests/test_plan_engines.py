"""The same audience rows give the same plan on DuckDB and on PostgreSQL: the same adds, changes and removes,
the same payload text and row hashes (so that a sync moved from one warehouse to the other resends nothing)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from test_plan import acknowledge_all, server, sync_config

from revetl.sync.plan import make_plan
from revetl.warehouse.base import Connection
from revetl.warehouse.embedded import DuckDBConnection
from revetl.warehouse.postgres import open_server

COLUMNS = ("user_id varchar, email varchar, revenue double precision, score real, seats integer, visits bigint, "
           "active boolean, signed_up timestamp, seen_at timestamptz, renewal date, price decimal(10, 2), total decimal(20, 2)")
# One row per line, as SQL both engines read alike: doubles where the last digits are noise or where the
# notation changes (1e-7, 1e21), text with control characters, quotes, backslashes and emoji.
ROWS = [
    "('u01', 'plain@x.io', 194.06000000000003, 0.1, 3, 9007199254740993, true, '2026-01-05 10:00:00', "
    "'2026-01-05 10:00:00+02', '2026-02-01', 12.50, 7.10)",
    "('u02', 'tab' || chr(9) || 'and' || chr(31) || 'unit' || chr(11) || 'vt', 1e-7, 2.5, null, 0, false, "
    "'2026-01-05 10:00:00.5', '2026-01-05 23:59:59.123456+00', '2024-02-29', 0.05, 7.10)",
    "('u03', 'quote\"back\\slash \\u001f 😀 é', 1e21, '-0', -7, -1, null, null, null, null, null, 7.10)",
    "('u04', null, 123456789012345680000, 1e-5, 0, 42, true, '1999-12-31 23:59:59', '1970-01-01 00:00:00+00', "
    "'1999-12-31', -3.10, 7.10)",
    "('u05', 'e@x.io', 0.30000000000000004, 100, 1, 2, true, '2026-01-05', '2026-01-05 00:00:00-05', '2026-01-05', 1, 7.10)",
    "('u06', 'nan@x.io', 'NaN', 'Infinity', 1, 1, true, '2026-01-05', '2026-01-05 00:00:00+00', '2026-01-05', 1, 7.10)",
    "('u07', 'tiny@x.io', 1.5e-6, 3.4e-7, 1, 1, true, '2026-01-05', '2026-01-05 00:00:00+00', '2026-01-05', 1, 7.10)",
    "('u08', 'big@x.io', 1e100, 1.5e20, 1, 1, true, '2026-01-05', '2026-01-05 00:00:00+00', '2026-01-05', 1, 7.10)",
]
FIELDS = {name: name for name in ("email", "revenue", "score", "seats", "visits", "active", "signed_up", "seen_at",
                                  "renewal", "price", "total")}


@pytest.fixture
def engines(tmp_path: Path, postgres_database) -> dict[str, Connection]:
    connections = {"duckdb": DuckDBConnection(duckdb.connect(str(tmp_path / "warehouse.duckdb"))),
                   "postgres": open_server(server(postgres_database))}
    connections["duckdb"].execute("set TimeZone = 'UTC'")
    for name, connection in connections.items():
        (tmp_path / name).mkdir()
        connection.execute(f"create table audience_rows ({COLUMNS})")
    yield connections
    for connection in connections.values():
        connection.close()


def on_both(engines: dict[str, Connection], *statements: str) -> None:
    for connection in engines.values():
        for statement in statements:
            connection.execute(statement)


def planned(engines: dict[str, Connection], sync) -> dict[str, tuple]:
    """Per engine: (the plan's counts and samples, its rows: op, key, payload, row_hash, previous)."""
    found = {}
    for name, connection in engines.items():
        plan = make_plan(connection, sync, "select * from audience_rows")
        rows = connection.fetchall("select op, key, payload, row_hash, previous from revetl_diff")
        counts = (plan.members, plan.previous, plan.adds, plan.changes, plan.removes, plan.null_keys)
        found[name] = (counts, plan.samples, sorted(rows, key=lambda row: row[1]))
    return found


def test_the_same_rows_plan_the_same_payloads_and_hashes_on_both_engines(engines, tmp_path):
    sync = sync_config(fields=FIELDS)
    on_both(engines, f"insert into audience_rows values {', '.join(ROWS)}")

    first = planned(engines, sync)

    assert first["postgres"] == first["duckdb"]
    counts, samples, rows = first["duckdb"]
    assert counts == (8, 0, 8, 0, 0, 0) and len(rows) == 8
    payloads = {key: payload for _, key, payload, _, _ in rows}
    assert payloads["u01"] == ('{"active":true,"email":"plain@x.io","price":12.5,"renewal":"2026-02-01","revenue":194.06,'
                               '"score":0.1,"seats":3,"seen_at":"2026-01-05 08:00:00+00","signed_up":"2026-01-05 10:00:00",'
                               '"total":7.10,"visits":9007199254740993}')  # a wide DECIMAL keeps its scale
    assert '"revenue":1e-7' in payloads["u02"] and "\\u001F" in payloads["u02"] and '"seats":null' in payloads["u02"]
    assert '"revenue":1e21' in payloads["u03"] and '"score":-0.0' in payloads["u03"]
    assert '"revenue":null,"score":null' in payloads["u06"]  # NaN and infinities: JSON has neither

    for name, connection in engines.items():
        acknowledge_all(connection, sync, tmp_path / name)
    on_both(engines,
            "update audience_rows set revenue = 194.07 where user_id = 'u01'",
            "update audience_rows set revenue = 1.0000000000000002e-7 where user_id = 'u02'",  # noise: no change
            "update audience_rows set email = email || chr(27) where user_id = 'u03'",
            "delete from audience_rows where user_id in ('u04', 'u05')",
            "insert into audience_rows values ('u09', 'new@x.io', 1, 1, 1, 1, true, null, null, null, 9.99, 0)")

    second = planned(engines, sync)

    assert second["postgres"] == second["duckdb"]
    counts, samples, rows = second["duckdb"]
    assert counts == (7, 8, 1, 2, 2, 0)
    assert {(op, key) for op, key, *_ in rows} == {("change", "u01"), ("change", "u03"), ("remove", "u04"),
                                                  ("remove", "u05"), ("add", "u09")}
    assert [row["key"] for row in samples["remove"]] == ["u04", "u05"]
