"""The public models' shape (DESIGN 3, models/schema.yml): names, columns, types, kinds.

Audiences, syncs and trait models read these relations by column name and type, so a change of
either is a change of contract; the internal models (stg_, int_) are free to change.
"""

from __future__ import annotations

import pytest
from wh import build, empty_project, land, query
from identity_reference import wire

from revetl.warehouse.dbt import build_project

pytestmark = pytest.mark.slow

EVENT_COLUMNS = [
    ("message_id", "VARCHAR"), ("type", "VARCHAR"), ("event", "VARCHAR"), ("anonymous_id", "VARCHAR"),
    ("user_id", "VARCHAR"), ("group_id", "VARCHAR"), ("previous_id", "VARCHAR"), ("timestamp", "TIMESTAMP"),
    ("received_at", "TIMESTAMP"), ("properties", "VARCHAR"), ("traits", "VARCHAR"), ("context", "VARCHAR"),
    ("violations", "VARCHAR"),
]

# Relation -> (kind, [(column, DuckDB type)]) in the shipped project (its traits.yml and dbt vars).
PUBLIC = {
    "events": ("BASE TABLE", EVENT_COLUMNS),
    "identity_graph": ("BASE TABLE", [
        ("identifier_type", "VARCHAR"), ("identifier_value", "VARCHAR"), ("profile_id", "VARCHAR")]),
    "identity_conflicts": ("BASE TABLE", [
        ("identifier_type", "VARCHAR"), ("identifier_value", "VARCHAR"), ("reason", "VARCHAR"),
        ("distinct_user_ids", "BIGINT"), ("distinct_anonymous_ids", "BIGINT")]),
    "profiles": ("BASE TABLE", [
        ("profile_id", "VARCHAR"), ("user_id", "VARCHAR"), ("email", "VARCHAR"), ("first_seen_at", "TIMESTAMP"),
        ("last_seen_at", "TIMESTAMP"), ("event_count", "BIGINT"), ("traits", "JSON"), ("name", "VARCHAR"),
        ("plan", "VARCHAR"), ("company", "VARCHAR"), ("created_at", "VARCHAR")]),
    "profile_traits": ("BASE TABLE", [
        ("profile_id", "VARCHAR"), ("reports_30d", "BIGINT"), ("events_30d", "BIGINT"), ("events_60d", "BIGINT"),
        ("revenue_total", "DOUBLE"), ("revenue_90d", "DOUBLE"), ("avg_payment", "DOUBLE"),
        ("largest_payment", "DOUBLE"), ("first_page", "VARCHAR"), ("last_plan", "VARCHAR"),
        ("plans_seen", "VARCHAR[]"), ("top_dashboard", "VARCHAR"), ("active_days_30d", "BIGINT")]),
    "profile_events": ("VIEW", [("message_id", "VARCHAR"), ("profile_id", "VARCHAR")]),
    "profiled_events": ("VIEW", [*EVENT_COLUMNS, ("profile_id", "VARCHAR")]),
    "build_info": ("BASE TABLE", [("as_of", "TIMESTAMP"), ("built_at", "TIMESTAMP")]),
    "violations": ("BASE TABLE", [
        ("message_id", "VARCHAR"), ("type", "VARCHAR"), ("event", "VARCHAR"), ("received_at", "TIMESTAMP"),
        ("tracking_plan", "VARCHAR"), ("source", "VARCHAR"), ("kind", "VARCHAR"), ("property", "VARCHAR"),
        ("message", "VARCHAR"), ("omitted", "BOOLEAN"), ("blocked", "BOOLEAN")]),
    "quarantined_events": ("BASE TABLE", EVENT_COLUMNS),
    "trait_active_days": ("BASE TABLE", [("profile_id", "VARCHAR"), ("active_days_30d", "BIGINT")]),
}


def _events() -> list[dict]:
    return [
        wire("identify", "m1", userId="u1", anonymousId="a1", traits={"email": "A@x.io", "plan": "pro"}),
        wire("track", "m2", userId="u1", event="Report Generated", properties={"n": 1}),
        wire("page", "m3", anonymousId="a2", name="Home", properties={"path": "/"}),
        wire("alias", "m4", userId="u2", previousId="a2"),
        wire("group", "m5", userId="u2", groupId="g1", traits={"name": "Acme"}),
        wire("screen", "m6", anonymousId="a3", name="Main"),
    ]


def test_public_models_keep_their_columns_types_and_kinds(project):
    land(project, _events())
    build(project)
    found: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    for name, kind in query(project, "select table_name, table_type from information_schema.tables "
                                     "where table_schema = 'main'"):
        if name in PUBLIC:
            columns = query(project, f"select column_name, data_type from information_schema.columns where "
                                     f"table_schema = 'main' and table_name = '{name}' order by ordinal_position")
            found[name] = (kind, columns)
    assert found == PUBLIC
    # Every identifier's profile is a profile (the relationships test in the schema file).
    assert query(project, "select count(*) from identity_graph where profile_id not in "
                          "(select profile_id from profiles)") == [(0,)]


def test_a_public_model_that_changes_a_column_type_fails_its_contract(tmp_path, monkeypatch):
    project = empty_project(tmp_path, monkeypatch)
    events = project.root / "models" / "events.sql"
    events.write_text(events.read_text().replace("    received_at,", "    cast(received_at as varchar) as received_at,"))
    land(project, _events()[:1])

    result = build_project(project, select="events")
    [failure] = result.failures
    assert (failure.kind, failure.name) == ("model", "events")
    assert "This model has an enforced contract that failed" in failure.message
    assert result.published == 0
