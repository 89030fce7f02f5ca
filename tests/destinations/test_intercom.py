"""The Intercom destination through real sockets, against its emulator in a thread.

Every test that talks to the emulator ends by checking each request the destination sent against
Intercom's OpenAPI description (tests/specs/intercom-api-2.16.yaml): the body schema of the
operation, and no property the operation does not declare.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import duckdb
import httpx
import pytest
from openapi_spec import OpenApi

from revetl.sync.apply import RunResult, apply_audience
from revetl.config import Project, SyncConfig
from revetl.destinations import load_destination
from revetl.destinations.base import Row
from revetl.destinations.intercom import Intercom
from revetl.emulators import running
from revetl.errors import ConfigError, FatalDestinationError
from revetl.sync.http import RateLimiter
from revetl.warehouse.connection import connect

TOKEN = "test-intercom-token-9f3a"
SPEC = "intercom-api-2.16.yaml"
AUDIENCE = "select * from audience_rows"
ROWS = [("u1", "ann@example.com", "Ann", "pro"), ("u2", "bob@example.com", "Bob", "free"),
        ("u3", "cy@example.com", "Cy", "pro")]


@pytest.fixture(scope="module")
def intercom_url() -> Iterator[str]:
    with running("intercom", {"token": TOKEN, "seed": 1, "record_requests": 5000}) as url:
        yield url


@pytest.fixture
def intercom(intercom_url: str) -> Iterator[httpx.Client]:
    """A client of the emulator, reset before the test; afterwards every recorded request must fit
    Intercom's OpenAPI description."""
    with httpx.Client(base_url=intercom_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10) as client:
        client.post("/_emulator/reset").raise_for_status()
        yield client
        spec = OpenApi.load(SPEC)
        problems = [f"{r['method']} {r['path']}: {p}" for r in recorded(client)
                    for p in spec.request_problems(r["method"], r["path"], r["body"])]
        assert problems == []


@pytest.fixture
def warehouse(project: Project) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect(project)
    connection.execute("create table audience_rows (user_id varchar, email varchar, name varchar, plan varchar)")
    yield connection
    connection.close()


def recorded(client: httpx.Client) -> list[dict[str, Any]]:
    return client.get("/_emulator/requests").json()["requests"]


def calls(client: httpx.Client) -> list[str]:
    """"METHOD /path" of every request the emulator saw, ids replaced by {id}."""
    out = []
    for r in recorded(client):
        parts = ["{id}" if len(p) == 24 or p.isdigit() else p for p in r["path"].split("/")]
        out.append(f"{r['method']} {'/'.join(parts)}")
    return out


def contacts(client: httpx.Client) -> dict[str, dict[str, Any]]:
    return {c.get("external_id") or c["email"]: c for c in client.get("/_emulator/contacts").json()["contacts"]}


def sync_config(**overrides: Any) -> SyncConfig:
    raw = {"name": "signups_to_intercom", "path": "syncs/signups_to_intercom.yml", "audience": "new_signups",
           "destination": {"type": "intercom", "token": "${INTERCOM_TOKEN}", "create_attributes": True},
           "identity": {"from": "user_id", "to": "external_id"},
           "fields": {"email": "email", "name": "name", "plan": "plan"}}
    return SyncConfig.model_validate({**raw, **overrides})


def destination(url: str, token: str = TOKEN, **settings: Any) -> Intercom:
    base = sync_config()
    sync = sync_config(**{"destination": {**base.destination, "base_url": url, **settings}})
    loaded = load_destination(sync, environ={"INTERCOM_TOKEN": token})
    assert isinstance(loaded, Intercom)
    return loaded


def run(project: Project, warehouse: duckdb.DuckDBPyConnection, rows: list[tuple], dest: Intercom) -> RunResult:
    warehouse.execute("delete from audience_rows")
    if rows:
        warehouse.executemany("insert into audience_rows values (?, ?, ?, ?)", rows)
    return apply_audience(project, dest.sync, dest, AUDIENCE, connection=warehouse)


def dest_refs(warehouse: duckdb.DuckDBPyConnection) -> dict[str, str]:
    return dict(warehouse.execute("select key, dest_ref from revetl_state.acknowledged").fetchall())


async def _send(dest: Intercom, rows: list[Row]) -> list:
    async with dest.connect() as http:
        return await dest.send(http, rows)


# -- configuration ---------------------------------------------------------------------------------


@pytest.mark.parametrize("region, host", [("US", "https://api.intercom.io"), ("eu", "https://api.eu.intercom.io"),
                                          ("AU", "https://api.au.intercom.io")])
def test_region_picks_intercoms_regional_host_unless_base_url_is_given(region: str, host: str) -> None:
    sync = sync_config(destination={"type": "intercom", "token": "t", "region": region})
    assert load_destination(sync, environ={}).config.base_url == host
    given = sync_config(destination={"type": "intercom", "token": "t", "region": region, "base_url": "http://x"})
    assert load_destination(given, environ={}).config.base_url == "http://x"


def test_bad_settings_name_the_sync_file() -> None:
    with pytest.raises(ConfigError, match="signups_to_intercom.yml.*region"):
        load_destination(sync_config(destination={"type": "intercom", "token": "t", "region": "MARS"}), environ={})
    with pytest.raises(ConfigError, match="signups_to_intercom.yml.*intercom_version"):
        load_destination(sync_config(destination={"type": "intercom", "token": "t", "intercom_version": "3"}),
                         environ={})
    with pytest.raises(ConfigError, match="identity.to"):
        load_destination(sync_config(destination={"type": "intercom", "token": "t"},
                                     identity={"from": "user_id", "to": "user_id"}), environ={})


def test_headers_carry_bearer_token_and_version_and_the_token_stays_secret() -> None:
    dest = destination("http://x", intercom_version="2.11")
    headers = dest.http_options().headers
    assert headers["Authorization"] == f"Bearer {TOKEN}" and headers["Intercom-Version"] == "2.11"
    assert TOKEN not in repr(dest.config) and TOKEN not in str(dest.config)


def test_fields_go_to_standard_fields_or_custom_attributes() -> None:
    dest = destination("http://x")
    sync = sync_config(fields={"email": "email", "plan": "plan", "seats": "custom_attributes.seats",
                               "joined": "signed_up_at"})
    dest = Intercom(sync=sync, config=dest.config)
    body = dest.contact_body(Row.of("add", "u1", {"email": "a@x.io", "plan": "pro", "custom_attributes.seats": 3,
                                              "signed_up_at": "2026-01-02T00:00:00"}))
    assert body == {"external_id": "u1", "email": "a@x.io", "signed_up_at": 1767312000,
                    "custom_attributes": {"plan": "pro", "seats": 3}}


# -- syncing ---------------------------------------------------------------------------------------


def test_first_run_creates_contacts_with_fields_and_tags_them(project, warehouse, intercom) -> None:
    result = run(project, warehouse, ROWS, destination(str(intercom.base_url)))
    assert result.ok and result.acked["add"] == 3
    state = contacts(intercom)
    assert {k: (c["email"], c["name"], c["custom_attributes"], c["tags"]) for k, c in state.items()} == {
        "u1": ("ann@example.com", "Ann", {"plan": "pro"}, ["new_signups"]),
        "u2": ("bob@example.com", "Bob", {"plan": "free"}, ["new_signups"]),
        "u3": ("cy@example.com", "Cy", {"plan": "pro"}, ["new_signups"]),
    }
    # The contact ids are kept, so later runs never have to look a contact up.
    assert dest_refs(warehouse) == {k: c["id"] for k, c in state.items()}
    assert sorted(calls(intercom)) == sorted(["GET /data_attributes", "POST /data_attributes", "POST /tags"]
                                             + ["POST /contacts", "POST /contacts/{id}/tags"] * 3)


def test_a_change_updates_the_stored_contact_id_without_any_lookup(project, warehouse, intercom) -> None:
    dest = destination(str(intercom.base_url))
    assert run(project, warehouse, ROWS, dest).ok
    log_start = len(recorded(intercom))
    result = run(project, warehouse, [ROWS[0], ("u2", "bob@example.com", "Bob", "pro"), ROWS[2]], dest)
    assert result.ok and result.acked["change"] == 1
    # One request: the update by the id the first run stored. No create, find or search; the tag
    # the add attached is still there.
    assert calls(intercom)[log_start:] == ["GET /data_attributes", "POST /tags", "PUT /contacts/{id}"]
    assert contacts(intercom)["u2"]["custom_attributes"] == {"plan": "pro"}


def test_an_existing_contact_answers_409_and_is_updated_not_failed(project, warehouse, intercom) -> None:
    existing = intercom.post("/contacts", json={"role": "user", "external_id": "u1", "email": "old@example.com"})  # the 200
    result = run(project, warehouse, ROWS[:1], destination(str(intercom.base_url)))
    assert result.ok and result.failed == 0
    state = contacts(intercom)
    assert len(state) == 1 and state["u1"]["email"] == "ann@example.com" and state["u1"]["tags"] == ["new_signups"]
    assert dest_refs(warehouse) == {"u1": existing.json()["id"]}
    stats = intercom.get("/_emulator/stats").json()["requests"]
    assert stats["POST /contacts"] == {"200": 1, "409": 1} and stats["PUT /contacts/{contact_id}"] == {"200": 1}


def test_lost_answers_to_creates_end_in_one_contact_each(project, warehouse, intercom) -> None:
    intercom.post("/_emulator/faults", json={"lost_response_share": 0.3, "seed": 11})
    rows = [(f"u{i}", f"p{i}@example.com", f"P {i}", "pro") for i in range(30)]
    result = run(project, warehouse, rows, destination(str(intercom.base_url)))
    assert result.ok and result.retries > 0
    state = contacts(intercom)
    assert len(state) == 30 and all(c["tags"] == ["new_signups"] for c in state.values())
    assert intercom.get("/_emulator/stats").json()["requests"]["POST /contacts"].get("409", 0) > 0


def test_email_identity_never_relies_on_search_for_a_contact_created_moments_ago(project, warehouse, intercom) -> None:
    intercom.post("/contacts", json={"role": "user", "email": "ann@example.com"})  # not searchable for minutes
    sync = sync_config(identity={"from": "email", "to": "email"}, fields={"name": "name"})
    dest = Intercom(sync=sync, config=destination(str(intercom.base_url)).config)
    warehouse.execute("insert into audience_rows values ('u1', 'ann@example.com', 'Ann', 'pro')")
    result = apply_audience(project, sync, dest, "select email, name from audience_rows", connection=warehouse)
    assert result.ok
    state = contacts(intercom)
    assert len(state) == 1 and state["ann@example.com"]["name"] == "Ann"
    assert state["ann@example.com"]["tags"] == ["new_signups"]
    assert "POST /contacts/search" not in calls(intercom)  # the 409 named the contact


def test_missing_custom_attribute_stops_before_anything_is_sent(project, warehouse, intercom) -> None:
    with pytest.raises(FatalDestinationError, match="'plan'.*create_attributes"):
        run(project, warehouse, ROWS, destination(str(intercom.base_url), create_attributes=False))
    assert calls(intercom) == ["GET /data_attributes"]
    assert contacts(intercom) == {}


def test_existing_custom_attribute_is_used_and_not_created(project, warehouse, intercom) -> None:
    intercom.post("/data_attributes", json={"name": "plan", "model": "contact", "data_type": "string"})
    log_start = len(recorded(intercom))
    result = run(project, warehouse, ROWS, destination(str(intercom.base_url), create_attributes=False))
    assert result.ok
    assert "POST /data_attributes" not in calls(intercom)[log_start:]


def test_attribute_types_choose_the_created_type(project, warehouse, intercom) -> None:
    dest = destination(str(intercom.base_url), attribute_types={"plan": "string"})
    assert run(project, warehouse, ROWS[:1], dest).ok
    created = [r["body"] for r in recorded(intercom) if r["method"] == "POST" and r["path"] == "/data_attributes"]
    assert created == [{"name": "plan", "model": "contact", "data_type": "string",
                        "description": "Synced by revetl (sync signups_to_intercom)"}]


def test_tag_is_created_once_attached_on_add_and_detached_on_remove(project, warehouse, intercom) -> None:
    dest = destination(str(intercom.base_url))
    assert run(project, warehouse, ROWS, dest).ok
    result = run(project, warehouse, ROWS[:2] + [("u4", "di@example.com", "Di", "free")], dest)
    assert result.ok and (result.acked["add"], result.acked["remove"]) == (1, 1)
    assert [t["name"] for t in intercom.get("/tags").json()["data"]] == ["new_signups"]
    state = contacts(intercom)
    assert {k: c["tags"] for k, c in state.items()} == {"u1": ["new_signups"], "u2": ["new_signups"], "u3": [],
                                                         "u4": ["new_signups"]}
    assert "DELETE /contacts/{id}/tags/{id}" in calls(intercom)


def test_a_contact_deleted_in_intercom_is_created_again_on_change(project, warehouse, intercom) -> None:
    dest = destination(str(intercom.base_url))
    assert run(project, warehouse, ROWS[:1], dest).ok
    old = dest_refs(warehouse)["u1"]
    intercom.delete(f"/contacts/{old}").raise_for_status()
    result = run(project, warehouse, [("u1", "ann@example.com", "Ann", "enterprise")], dest)
    assert result.ok
    assert contacts(intercom)["u1"]["custom_attributes"] == {"plan": "enterprise"}
    assert contacts(intercom)["u1"]["tags"] == ["new_signups"]
    assert dest_refs(warehouse)["u1"] != old


def test_removes_find_contacts_they_have_no_id_for(intercom) -> None:
    url = str(intercom.base_url)
    created = intercom.post("/contacts", json={"role": "user", "external_id": "u9"}).json()
    tag = intercom.post("/tags", json={"name": "new_signups"}).json()
    intercom.post(f"/contacts/{created['id']}/tags", json={"id": tag["id"]})
    dest = destination(url, create_attributes=False)
    dest = Intercom(sync=sync_config(fields={}), config=dest.config)
    results = asyncio.run(_send(dest, [Row.of("remove", "u9", {}), Row.of("remove", "nobody", {})]))
    assert [(r.ok, r.dest_ref) for r in results] == [(True, created["id"]), (True, None)]
    assert contacts(intercom)["u9"]["tags"] == []
    assert "GET /contacts/find_by_external_id/u9" in calls(intercom)


def test_a_rejected_row_fails_alone_with_intercoms_reason(project, warehouse, intercom) -> None:
    rows = [ROWS[0], ("u2", "not-an-email", "Bob", "free"), ROWS[2]]
    result = run(project, warehouse, rows, destination(str(intercom.base_url)))
    assert not result.ok and result.failed == 1 and result.acked["add"] == 2
    reason = warehouse.execute("select reason from revetl_state.failures where key = 'u2'").fetchone()[0]
    assert "400" in reason and "parameter_invalid" in reason


def test_401_is_fatal_at_once_and_no_text_holds_the_token(project, warehouse, intercom) -> None:
    wrong = "wrong-token-5e6f"
    with pytest.raises(FatalDestinationError) as caught:
        run(project, warehouse, ROWS, destination(str(intercom.base_url), token=wrong))
    assert "401" in str(caught.value) and "Access Token Invalid" in str(caught.value)
    assert len(recorded(intercom)) == 1  # the first request; nothing retried, nothing else sent
    stored = " ".join(str(r) for r in warehouse.execute("select * from revetl_state.runs").fetchall())
    logged = str(recorded(intercom))
    for text in (str(caught.value), stored, logged):
        assert wrong not in text and TOKEN not in text


def test_429s_are_waited_out_following_the_rate_limit_headers(project, warehouse, intercom) -> None:
    # The server allows 10 calls a second; the client believes a much higher limit.
    intercom.post("/_emulator/faults", json={"rate_limit": 10, "rate_window": 1})
    rows = [(f"u{i}", f"p{i}@example.com", f"P {i}", "pro") for i in range(12)]
    result = run(project, warehouse, rows, destination(str(intercom.base_url), concurrency=8))
    assert result.ok and result.acked["add"] == 12
    stats = intercom.get("/_emulator/stats").json()
    assert stats["faults_injected"]["rate_limited"] > 0
    assert all(c["tags"] == ["new_signups"] for c in contacts(intercom).values())


def test_a_run_with_nothing_to_send_sends_nothing(project, warehouse, intercom) -> None:
    dest = destination(str(intercom.base_url))
    assert run(project, warehouse, ROWS, dest).ok
    log_start = len(recorded(intercom))
    again = run(project, warehouse, ROWS, dest)
    assert again.ok and again.plan.total == 0 and again.requests == 0
    assert len(recorded(intercom)) == log_start


def test_the_validator_would_catch_a_wrong_body() -> None:
    spec = OpenApi.load(SPEC)
    assert spec.request_problems("POST", "/contacts", {"role": "user", "external_id": "u1", "plan": "pro"})
    assert spec.request_problems("POST", "/contacts/abc/tags", {"tag_id": "1"})
    assert spec.request_problems("POST", "/data_attributes", {"name": "plan", "model": "contact"})
    assert not spec.request_problems("PUT", "/contacts/abc", {"email": "a@x.io", "custom_attributes": {"p": 1}})


def test_the_example_sync_file_loads() -> None:
    from revetl.config import load_project, load_sync

    sync = load_sync(load_project(), "new_signups_to_intercom")
    dest = load_destination(sync, environ={})
    assert dest.type == "intercom" and dest.config.base_url == "http://127.0.0.1:8093"
    assert dest.custom == ["plan"] and dest.tag_name == "new_signups"


def test_concurrency_defaults_keep_the_published_limit_busy() -> None:
    dest = destination("http://x")
    assert dest.rate_limit() == (1667, 10.0)
    # 64 contacts in flight, each with a connection of its own (the engine opens `concurrency`).
    assert dest.concurrency * dest.batch_size == 64
    limiter = RateLimiter(*dest.rate_limit())
    assert limiter.rate * 10 + limiter.burst <= 1667
