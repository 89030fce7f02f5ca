"""The Salesforce destination through real sockets against its emulator, mostly via the engine.

Auth and token refresh, per-record results, rejects with Salesforce's code and message, record
locks, checkbox and Campaign membership, the daily-limit stop and REQUEST_LIMIT_EXCEEDED.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from revetl.sync import state
from revetl.sync.apply import RunResult, apply_audience
from revetl.config import Project, SyncConfig
from revetl.destinations import Row, load_destination
from revetl.destinations import salesforce as salesforce_module
from revetl.emulators import running
from revetl.errors import ConfigError, FatalDestinationError
from revetl.sync.http import Http
from revetl.warehouse.connection import connect

SECRET = "sf-secret-9f3a7c"
PEOPLE = "select * from people"


def people(n: int, start: int = 0, plan: str = "pro") -> list[tuple]:
    return [(f"u{i:04d}", f"p{i}@example.com", f"Person {i}", plan) for i in range(start, start + n)]


def set_people(project: Project, rows: list[tuple]) -> None:
    connection = connect(project)
    try:
        connection.execute(
            "create or replace table people (user_id varchar, email varchar, name varchar, plan varchar)")
        if rows:
            connection.executemany("insert into people values (?, ?, ?, ?)", rows)
    finally:
        connection.close()


@pytest.fixture(autouse=True)
def quick_lock_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(salesforce_module, "LOCK_BACKOFF", 0.01)


@pytest.fixture
def sf() -> Iterator[str]:
    with running("salesforce", {"client_secret": SECRET, "seed": 1}) as url:
        yield url


def sync_for(url: str, secret: str = SECRET, membership: dict | None = None, **destination: Any) -> SyncConfig:
    return SyncConfig.model_validate({
        "name": "sf", "path": Path("syncs/sf.yml"), "audience": "power_users",
        "destination": {"type": "salesforce", "base_url": url, "client_id": "dev-client", "client_secret": secret,
                        **destination},
        "identity": {"from": "user_id", "to": "Revetl_User_Id__c"},
        "fields": {"email": "Email", "name": "LastName", "plan": "Plan__c"},
        "membership": membership if membership is not None else {"checkbox": "In_Power_Users__c"},
    })


def run(project: Project, sync: SyncConfig) -> RunResult:
    return apply_audience(project, sync, load_destination(sync), PEOPLE)


def records(url: str, kind: str = "Contact") -> dict[str, dict]:
    found = httpx.get(f"{url}/_emulator/records", params={"object": kind}).json()["records"]
    return {r.get("Revetl_User_Id__c") or r["Id"]: r for r in found}


def requests(url: str) -> dict[str, dict[str, int]]:
    return httpx.get(f"{url}/_emulator/stats").json()["requests"]


def usage(url: str, **values: int) -> dict:
    return httpx.post(f"{url}/_emulator/limits", json=values).json()


def stored(project: Project) -> tuple[dict[str, str], list[tuple]]:
    """(key -> dest_ref acknowledged, failures of the latest run with any)."""
    connection = connect(project, read_only=True)
    try:
        refs = {row[0]: row[3] for row in state.acknowledged_rows(connection, "sf")}
        return refs, state.failures(connection, "sf")
    finally:
        connection.close()


UPSERT = "PATCH /services/data/{version}/composite/sobjects/{object}/{field}"
TOKEN = "POST /services/oauth2/token"


def test_first_run_upserts_in_200s_and_keeps_each_record_id(project, sf):
    set_people(project, people(450))
    result = run(project, sync_for(sf))
    assert result.ok and result.acked["add"] == 450
    assert result.requests == 1 + 3  # one token, ceil(450 / 200) upserts
    contacts = records(sf)
    assert contacts["u0007"]["LastName"] == "Person 7" and contacts["u0007"]["In_Power_Users__c"] is True
    refs, _ = stored(project)
    assert refs == {key: contact["Id"] for key, contact in contacts.items()}
    assert all(len(ref) == 18 and ref.startswith("003") for ref in refs.values())


def test_changes_update_the_same_records(project, sf):
    set_people(project, people(10))
    run(project, sync_for(sf))
    before = {key: c["Id"] for key, c in records(sf).items()}
    set_people(project, people(5) + people(5, start=5, plan="enterprise"))
    result = run(project, sync_for(sf))
    assert result.ok and result.acked["change"] == 5 and result.requests == 2
    after = records(sf)
    assert {key: c["Id"] for key, c in after.items()} == before
    assert after["u0009"]["Plan__c"] == "enterprise"


def test_rejected_records_keep_salesforces_code_and_message(project, sf):
    rows = people(6)
    rows[1] = ("u0001", "not-an-email", "Person 1", "pro")
    rows[4] = ("u0004", "p4@example.com", None, "pro")  # a new Contact without LastName
    set_people(project, rows)
    result = run(project, sync_for(sf))
    assert not result.ok and result.failed == 2 and result.acked["add"] == 4
    _, failures = stored(project)
    reasons = {key: reason for _, key, _, reason, _ in failures}
    assert reasons == {
        "u0001": "INVALID_EMAIL_ADDRESS: Email: invalid email address: not-an-email (fields: Email)",
        "u0004": "REQUIRED_FIELD_MISSING: Required fields are missing: [LastName] (fields: LastName)",
    }
    assert set(records(sf)) == {"u0000", "u0002", "u0003", "u0005"}


def test_unable_to_lock_row_is_retried_then_rejected(project, sf):
    set_people(project, people(5))
    httpx.post(f"{sf}/_emulator/locks", json={"values": ["u0001"], "times": 2})
    httpx.post(f"{sf}/_emulator/locks", json={"values": ["u0003"], "times": 10})
    result = run(project, sync_for(sf))
    assert result.acked["add"] == 4 and result.failed == 1
    assert requests(sf)[UPSERT] == {"200": 4}  # the batch, then the locked records alone, 3 times
    _, failures = stored(project)
    assert [(key, reason) for _, key, _, reason, _ in failures] == [
        ("u0003", "UNABLE_TO_LOCK_ROW: unable to obtain exclusive access to this record")]
    assert "u0001" in records(sf)


def test_an_expired_session_is_refreshed_once_and_the_batch_resent(project, sf):
    sync = sync_for(sf)
    destination = load_destination(sync)
    rows = [Row.of("add", f"u{i}", {"Email": f"p{i}@example.com", "LastName": f"P{i}"}) for i in range(6)]

    async def send_before_and_after_expiry() -> list:
        async with Http(sf, **destination.http_options()) as http:
            await destination.open(http)
            first = await destination.send(http, rows[:3])
            await asyncio.to_thread(httpx.post, f"{sf}/_emulator/expire-tokens")
            return first + await destination.send(http, rows[3:])

    results = asyncio.run(send_before_and_after_expiry())
    assert all(r.ok and r.dest_ref for r in results)
    seen = requests(sf)
    assert seen[TOKEN] == {"200": 2} and seen[UPSERT] == {"401": 1, "200": 2}


def test_sessions_expiring_during_a_run_are_renewed_without_losing_rows(project):
    set_people(project, people(1200))
    # 6 batches (the first alone, then 2 at a time) answered in 50-70 ms: 4 rounds, 200 ms at least, so a
    # session of 120 ms expires at least once; a resent batch still reaches the emulator (another 50-70 ms)
    # well within its new session's 120 ms even when the machine is busy.
    options = {"client_secret": SECRET, "token_ttl": 0.12, "latency_ms": [50, 70], "seed": 2}
    with running("salesforce", options) as url:
        result = run(project, sync_for(url, concurrency=2))
        assert result.ok and result.acked["add"] == 1200
        seen = requests(url)
    assert 2 <= seen[TOKEN]["200"] <= 6  # requests failing together share one new token
    assert seen[UPSERT]["200"] == 6


def test_bad_credentials_stop_with_salesforces_reason_and_no_secret(project, sf):
    set_people(project, people(5))
    wrong = "sf-wrong-secret-1234"
    with pytest.raises(FatalDestinationError) as caught:
        run(project, sync_for(sf, secret=wrong))
    message = str(caught.value)
    assert "invalid client credentials (invalid_client)" in message
    assert wrong not in message and SECRET not in message
    connection = connect(project, read_only=True)
    (status, stored_message), = connection.execute("select status, message from revetl_state.runs").fetchall()
    connection.close()
    assert status == "failed" and wrong not in stored_message
    log = httpx.get(f"{sf}/_emulator/requests").text
    assert wrong not in log and requests(sf) == {TOKEN: {"400": 1}}


def test_campaign_membership_adds_and_removes_members(project, sf):
    set_people(project, people(5))
    sync = sync_for(sf, membership={"campaign": "Power Users"})
    first = run(project, sync)
    assert first.ok
    members = records(sf, "CampaignMember")
    contacts = records(sf)
    assert sorted(m["ContactId"] for m in members.values()) == sorted(c["Id"] for c in contacts.values())
    assert {m["Status"] for m in members.values()} == {"Sent"}
    set_people(project, people(3))
    second = run(project, sync)
    assert second.ok and second.acked["remove"] == 2
    assert second.requests == 1 + 1 + 2  # token, campaign lookup, member query, delete
    left = {m["ContactId"] for m in records(sf, "CampaignMember").values()}
    assert left == {contacts[key]["Id"] for key in ("u0000", "u0001", "u0002")}
    assert len(records(sf)) == 5  # leaving the campaign never deletes the Contact


def test_already_a_member_counts_as_done(project, sf):
    set_people(project, people(2))
    sync = sync_for(sf, membership={"campaign": "Power Users", "status": "Responded"})
    run(project, sync)
    connection = connect(project)
    state.reset(connection, "sf")  # forget everything: the adds are sent again
    connection.close()
    again = run(project, sync)
    assert again.ok and again.acked["add"] == 2
    assert len(records(sf, "CampaignMember")) == 2
    assert {m["Status"] for m in records(sf, "CampaignMember").values()} == {"Responded"}


def test_an_unknown_campaign_name_stops_the_run(project, sf):
    set_people(project, people(2))
    with pytest.raises(FatalDestinationError, match="no Campaign is named 'Nope'"):
        run(project, sync_for(sf, membership={"campaign": "Nope"}))


def test_a_checkbox_remove_clears_it_by_id_and_does_not_recreate_deleted_records(project, sf):
    set_people(project, people(4))
    run(project, sync_for(sf))
    gone = records(sf)["u0003"]["Id"]
    token = httpx.post(f"{sf}/services/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": "dev-client", "client_secret": SECRET}).json()
    httpx.delete(f"{token['instance_url']}/services/data/v60.0/composite/sobjects", params={"ids": gone},
                 headers={"Authorization": f"Bearer {token['access_token']}"}).raise_for_status()
    set_people(project, people(2))
    result = run(project, sync_for(sf))
    assert result.ok and result.acked["remove"] == 2
    contacts = records(sf)
    assert set(contacts) == {"u0000", "u0001", "u0002"}
    assert contacts["u0002"]["In_Power_Users__c"] is False and contacts["u0000"]["In_Power_Users__c"] is True


def test_the_run_stops_before_the_configured_share_of_the_daily_limit(project, sf):
    set_people(project, people(2000))  # 10 batches
    usage(sf, used=0, limit=10)
    with pytest.raises(FatalDestinationError) as caught:
        run(project, sync_for(sf, max_api_usage=0.5, concurrency=3))
    assert "used 5 of its 10 daily API requests" in str(caught.value)
    assert usage(sf)["used"] == 5  # never past the share, even with 3 requests in flight
    refs, _ = stored(project)
    assert len(refs) == 1000  # the acknowledged batches are kept
    usage(sf, limit=1000)
    resumed = run(project, sync_for(sf, max_api_usage=0.5))
    assert resumed.ok and resumed.acked["add"] == 1000
    assert len(records(sf)) == 2000


def test_request_limit_exceeded_ends_the_run_with_a_clear_sentence(project, sf):
    set_people(project, people(3))
    usage(sf, used=100, limit=100)
    with pytest.raises(FatalDestinationError) as caught:
        run(project, sync_for(sf, max_api_usage=1.0))
    assert "403" in str(caught.value) and "daily API request limit is used up" in str(caught.value)
    assert "REQUEST_LIMIT_EXCEEDED: TotalRequests Limit exceeded." in str(caught.value)
    assert stored(project)[0] == {}


def test_a_field_the_object_lacks_stops_the_run(project, sf):
    set_people(project, people(3))
    sync = sync_for(sf)
    sync = sync.model_copy(update={"fields": {"email": "Email", "name": "LastName", "plan": "Plan"}})
    with pytest.raises(FatalDestinationError, match="INVALID_FIELD: No such column 'Plan' on sobject of type Contact"):
        run(project, sync)


@pytest.mark.parametrize(("change", "words"), [
    ({"identity": {"from": "user_id", "to": "Email"}}, "custom External ID field"),
    ({"membership": {"checkbox": "In_X__c", "campaign": "Power Users"}}, "either `checkbox"),
    ({"membership": {"campaign": "Power Users"}, "destination": {"object": "Account"}}, "Contact or Lead"),
    ({"fields": {"email": "Email", "plan": "In_Power_Users__c"}}, "membership.checkbox"),
])
def test_settings_a_sync_cannot_work_with_are_config_errors(change, words):
    raw = sync_for("http://127.0.0.1:1").model_dump(by_alias=True)
    destination = {**raw["destination"], **change.pop("destination", {})}
    with pytest.raises(ConfigError, match=words):
        load_destination(SyncConfig.model_validate({**raw, **change, "destination": destination}))


def test_check_warns_about_fields_salesforce_requires_on_create():
    sync = sync_for("http://127.0.0.1:1")
    assert load_destination(sync).check() == []
    no_last = sync.model_copy(update={"fields": {"email": "Email"}})
    assert "without LastName" in load_destination(no_last).check()[0]
    lead = sync_for("http://127.0.0.1:1", object="Lead")
    assert "without Company (REQUIRED_FIELD_MISSING)" in load_destination(lead).check()[0]


SYNC_FILE = """\
audience: members
destination:
  type: salesforce
  base_url: http://127.0.0.1:8092
  client_id: dev-client
  client_secret: ${SF_TEST_SECRET:-dev-secret}
  object: Contact
identity: {from: user_id, to: Revetl_User_Id__c}
fields:
  email: Email
membership: {checkbox: In_Members__c}
"""


@pytest.fixture
def checked_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A project with one audience (no warehouse: columns from sqlglot) and one Salesforce sync."""
    from wh import empty_project

    project = empty_project(tmp_path, monkeypatch)
    (project.audiences_dir / "members.sql").write_text(
        "-- description: Test audience.\n-- key: user_id\nselect user_id, email, name from {{ ref('profiles') }}\n")
    (project.syncs_dir / "members_to_salesforce.yml").write_text(SYNC_FILE)
    return project


def test_audiences_check_reports_the_mapping_warning_without_failing(checked_project):
    from typer.testing import CliRunner

    from revetl.audiences.check import check_project
    from revetl.cli import app

    (problem,) = check_project(checked_project)
    assert problem.warning and problem.line == 9 and "without LastName" in problem.message
    assert str(problem).split(": ", 1)[1].startswith("warning: salesforce creates a Contact")
    outcome = CliRunner().invoke(app, ["--project-dir", str(checked_project.root), "audiences", "check"])
    assert outcome.exit_code == 0, outcome.output
    assert "1 warning(s)" in outcome.output


def test_audiences_check_reports_destination_settings_with_their_line(checked_project):
    from revetl.audiences.check import check_project

    path = checked_project.syncs_dir / "members_to_salesforce.yml"
    path.write_text(SYNC_FILE.replace("  object: Contact\n", "  object: Contact\n  api_verison: '60.0'\n"))
    problems = check_project(checked_project)
    errors = [p for p in problems if not p.warning]
    assert [(p.line, p.message) for p in errors] == [
        (8, "`destination.api_verison` unknown key; did you mean `api_version`?")
    ]


def test_keys_are_quoted_as_soql_text_literals():
    assert salesforce_module._quote("o'ne\\il") == "'o\\'ne\\\\il'"
