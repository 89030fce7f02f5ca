"""The Salesforce emulator through real sockets: OAuth, limits, sObject Collections, SOQL, locks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from revetl.emulators import create, running
from revetl.emulators.salesforce.org import to_18
from revetl.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SECRET = "emu-secret-51c2"
V = "/services/data/v60.0"
UPSERT = f"{V}/composite/sobjects/Contact/Ext__c"


@pytest.fixture(scope="module")
def sf_url() -> Iterator[str]:
    with running("salesforce", {"client_id": "emu-client", "client_secret": SECRET, "seed": 1}) as url:
        yield url


def login(client: httpx.Client, secret: str = SECRET, client_id: str = "emu-client") -> httpx.Response:
    return client.post("/services/oauth2/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                       "client_secret": secret})


@pytest.fixture
def sf(sf_url: str) -> Iterator[httpx.Client]:
    """An authenticated client of the module's emulator, reset before each test."""
    with httpx.Client(base_url=sf_url, timeout=5) as client:
        client.post("/_emulator/reset").raise_for_status()
        client.headers["Authorization"] = f"Bearer {login(client).json()['access_token']}"
        yield client


def contact(ext: str, **values: object) -> dict:
    return {"attributes": {"type": "Contact"}, "Ext__c": ext, **values}


def upsert(client: httpx.Client, *records: dict, all_or_none: bool = False) -> httpx.Response:
    return client.patch(UPSERT, json={"allOrNone": all_or_none, "records": list(records)})


def soql(client: httpx.Client, query: str) -> httpx.Response:
    return client.get(f"{V}/query", params={"q": query})


def test_client_credentials_give_a_session_on_the_instance(sf_url):
    with httpx.Client(base_url=sf_url) as client:
        answer = login(client)
        assert answer.status_code == 200
        body = answer.json()
        assert set(body) == {"access_token", "signature", "scope", "instance_url", "id", "token_type", "issued_at"}
        assert body["token_type"] == "Bearer" and body["instance_url"] == sf_url
        assert body["access_token"].startswith("00D") and "!" in body["access_token"]


@pytest.mark.parametrize(("form", "error", "description"), [
    ({"client_secret": "wrong"}, "invalid_client", "invalid client credentials"),
    ({"client_id": "someone"}, "invalid_client_id", "client identifier invalid"),
    ({"grant_type": "password"}, "unsupported_grant_type", "grant type not supported"),
])
def test_refused_credentials_are_400_with_an_oauth_error(sf_url, form, error, description):
    data = {"grant_type": "client_credentials", "client_id": "emu-client", "client_secret": SECRET, **form}
    answer = httpx.post(f"{sf_url}/services/oauth2/token", data=data)
    assert answer.status_code == 400
    assert answer.json() == {"error": error, "error_description": description}
    assert SECRET not in answer.text


def test_a_missing_unknown_or_expired_session_is_401_invalid_session_id(sf):
    assert sf.get(f"{V}/limits").status_code == 200
    for headers in ({"Authorization": "Bearer nope"}, {"Authorization": ""}):
        answer = sf.get(f"{V}/limits", headers=headers)
        assert answer.status_code == 401
        assert answer.json() == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
    sf.post("/_emulator/expire-tokens")
    assert sf.get(f"{V}/limits").status_code == 401


def test_sessions_expire_after_token_ttl():
    with running("salesforce", {"token_ttl": 0.2}) as url, httpx.Client(base_url=url) as client:
        token = login(client, "dev-secret", "dev-client").json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get(f"{V}/limits", headers=headers).status_code == 200
        time.sleep(0.25)
        assert client.get(f"{V}/limits", headers=headers).status_code == 401


def test_every_rest_answer_counts_the_daily_usage_then_403(sf):
    sf.post("/_emulator/limits", json={"used": 7, "limit": 9})
    first, second = (upsert(sf, contact("a", LastName="A")) for _ in range(2))
    assert [r.headers["Sforce-Limit-Info"] for r in (first, second)] == ["api-usage=8/9", "api-usage=9/9"]
    login(sf)  # OAuth is not a REST API call: not counted
    refused = upsert(sf, contact("b", LastName="B"))
    assert refused.status_code == 403
    assert refused.json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert refused.headers["Sforce-Limit-Info"] == "api-usage=9/9"
    assert "b" not in sf.get("/_emulator/records").text


def test_upsert_creates_then_updates_with_one_result_per_record(sf):
    created = upsert(sf, contact("a", LastName="Ann", Email="ann@example.com"), contact("b", LastName="Bo"))
    assert created.status_code == 200
    first, second = created.json()
    assert first == {"id": first["id"], "success": True, "errors": [], "created": True}
    assert len(first["id"]) == 18 and first["id"].startswith("003") and first["id"] == to_18(first["id"][:15])
    updated = upsert(sf, contact("a", Title="CEO", email="ann@new.example.com"))  # field names ignore case
    assert updated.json() == [{"id": first["id"], "success": True, "errors": [], "created": False}]
    (ann,) = sf.get("/_emulator/records", params={"field": "Ext__c", "value": "a"}).json()["records"]
    assert (ann["LastName"], ann["Title"], ann["Email"]) == ("Ann", "CEO", "ann@new.example.com")


def test_invalid_records_fail_alone_with_status_code_message_and_fields(sf):
    answer = upsert(sf, contact("a", LastName="Ann"), contact("b", Email="x@example.com"),
                    contact("c", LastName="C", Email="nope"), contact("d", LastName="x" * 81),
                    contact("e", LastName="E"))
    results = answer.json()
    assert [r["success"] for r in results] == [True, False, False, False, True]
    assert results[1]["errors"] == [{"statusCode": "REQUIRED_FIELD_MISSING",
                                     "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}]
    assert results[2]["errors"][0]["statusCode"] == "INVALID_EMAIL_ADDRESS"
    assert results[2]["errors"][0]["message"] == "Email: invalid email address: nope"
    assert results[3]["errors"][0]["statusCode"] == "STRING_TOO_LONG"
    assert "id" not in results[1]


def test_all_or_none_writes_nothing_when_one_record_fails(sf):
    results = upsert(sf, contact("a", LastName="Ann"), contact("b"), all_or_none=True).json()
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert sf.get("/_emulator/records").json()["count"] == 0


@pytest.mark.parametrize(("request_body", "url", "status", "code"), [
    ({"records": [contact(f"u{i}", LastName="x") for i in range(201)]}, UPSERT, 400, "EXCEEDED_ID_LIMIT"),
    ({"records": [{"Ext__c": "a", "LastName": "x"}]}, UPSERT, 400, "INVALID_TYPE"),
    ({"records": [contact("a", LastName="x", Compny="y")]}, UPSERT, 400, "INVALID_FIELD"),
    ({"records": [contact("a", LastName="x")]}, f"{V}/composite/sobjects/Contact/Email", 404, "NOT_FOUND"),
    ({"records": [contact("a", LastName="x")]}, UPSERT.replace("v60.0", "v45.0"), 404, "NOT_FOUND"),
    ({"records": [contact("a", LastName="x")]}, f"{V}/composite/sobjects/Nothing/Ext__c", 404, "NOT_FOUND"),
])
def test_malformed_requests_are_refused_whole(sf, request_body, url, status, code):
    answer = sf.patch(url, json=request_body)
    assert answer.status_code == status and answer.json()[0]["errorCode"] == code
    assert sf.get("/_emulator/records").json()["count"] == 0


def test_locked_records_are_not_written(sf):
    sf.post("/_emulator/locks", json={"values": ["b"], "times": 1})
    first = upsert(sf, contact("a", LastName="A"), contact("b", LastName="B")).json()
    assert first[1] == {"success": False, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "fields": [],
                                                      "message": "unable to obtain exclusive access to this record"}]}
    assert upsert(sf, contact("b", LastName="B")).json()[0]["success"]  # the lock was held once


def test_lock_share_locks_that_share_of_records():
    with running("salesforce", {"lock_share": 0.5, "seed": 4}) as url, httpx.Client(base_url=url) as client:
        token = login(client, "dev-secret", "dev-client").json()["access_token"]
        body = {"records": [contact(f"u{i}", LastName="x") for i in range(200)]}
        results = client.patch(UPSERT, json=body, headers={"Authorization": f"Bearer {token}"}).json()
    locked = sum(1 for r in results if not r["success"])
    assert 60 < locked < 140


def test_campaign_members_are_unique_and_leave_with_their_contact(sf):
    (campaign,) = soql(sf, "SELECT Id, Name FROM Campaign WHERE Name = 'power users'").json()["records"]
    assert campaign["Name"] == "Power Users" and campaign["Id"].startswith("701")
    ann = upsert(sf, contact("a", LastName="Ann")).json()[0]["id"]
    member = {"attributes": {"type": "CampaignMember"}, "CampaignId": campaign["Id"], "ContactId": ann}
    bad = {**member, "CampaignId": ann}
    results = sf.post(f"{V}/composite/sobjects", json={"records": [member, member, bad]}).json()
    assert results[0]["success"] and results[0]["id"].startswith("00v")
    assert results[1]["errors"] == [{"statusCode": "DUPLICATE_VALUE", "message": "Already a campaign member.",
                                     "fields": []}]
    assert results[2]["errors"][0]["statusCode"] == "FIELD_INTEGRITY_EXCEPTION"
    found = soql(sf, f"SELECT Id, Contact.Ext__c, Status FROM CampaignMember WHERE CampaignId = '{campaign['Id']}' "
                     "AND Contact.Ext__c IN ('A', 'zz')").json()
    assert found["totalSize"] == 1 and found["done"] is True
    row = found["records"][0]
    assert row["Contact"]["Ext__c"] == "a" and row["Status"] == "Sent"
    assert row["attributes"] == {"type": "CampaignMember", "url": f"{V}/sobjects/CampaignMember/{row['Id']}"}
    deleted = sf.delete(f"{V}/composite/sobjects", params={"ids": ann}).json()
    assert deleted == [{"id": ann, "success": True, "errors": []}]
    assert soql(sf, "SELECT Id FROM CampaignMember").json()["totalSize"] == 0


def test_update_and_delete_by_id_answer_for_deleted_and_malformed_ids(sf):
    ann = upsert(sf, contact("a", LastName="Ann")).json()[0]["id"]
    sf.delete(f"{V}/composite/sobjects", params={"ids": ann})
    again = sf.delete(f"{V}/composite/sobjects", params={"ids": f"{ann},bogus"}).json()
    assert [r["errors"][0]["statusCode"] for r in again] == ["ENTITY_IS_DELETED", "MALFORMED_ID"]
    bo = upsert(sf, contact("b", LastName="Bo")).json()[0]["id"]
    updates = [{"attributes": {"type": "Contact"}, "id": bo, "In_X__c": False},
               {"attributes": {"type": "Contact"}, "id": ann, "In_X__c": False},
               {"attributes": {"type": "Contact"}, "In_X__c": False}]
    results = sf.patch(f"{V}/composite/sobjects", json={"records": updates}).json()
    assert results[0] == {"id": bo, "success": True, "errors": []}
    assert [r["errors"][0]["statusCode"] for r in results[1:]] == ["ENTITY_IS_DELETED", "MISSING_ARGUMENT"]


def test_soql_text_literals_take_backslash_escapes(sf):
    upsert(sf, contact("o'ne\\il", LastName="O'Neil"))
    found = soql(sf, "SELECT Ext__c, LastName FROM Contact WHERE Ext__c IN ('o\\'ne\\\\il') LIMIT 5").json()
    assert [(r["Ext__c"], r["LastName"]) for r in found["records"]] == [("o'ne\\il", "O'Neil")]


@pytest.mark.parametrize(("query", "code"), [
    ("SELECT Id FROM Contact WHERE", "MALFORMED_QUERY"),
    ("SELECT Id, Nme FROM Contact", "INVALID_FIELD"),
    ("SELECT Id FROM Nothing", "INVALID_TYPE"),
    ("DELETE FROM Contact", "MALFORMED_QUERY"),
])
def test_queries_it_cannot_run_are_400_with_salesforces_code(sf, query, code):
    answer = soql(sf, query)
    assert answer.status_code == 400 and answer.json()[0]["errorCode"] == code


def test_the_request_log_hides_the_secret_and_the_token(sf):
    token = sf.headers["Authorization"].split()[1]
    upsert(sf, contact("a", LastName="Ann"))
    log = sf.get("/_emulator/requests").json()["requests"]
    text = json.dumps(log)
    assert SECRET not in text and token not in text
    assert log[0]["body"] == "grant_type=client_credentials&client_id=emu-client&client_secret=%5Bredacted%5D"


def test_ids_carry_salesforces_case_checksum():
    assert to_18("0015000000Gv7qJ") == "0015000000Gv7qJAAR"
    assert to_18("003Rv000000000A") == "003Rv000000000AIAQ"  # R is 4th of its 5: 8 -> I; A is 5th: 16 -> Q


def test_bad_options_raise_config_error():
    with pytest.raises(ConfigError, match="daily_limit"):
        create("salesforce", {"daily_limit": -1})
    with pytest.raises(ConfigError, match="lock_share"):
        create("salesforce", {"lock_share": 2})


@pytest.mark.slow
def test_runs_as_a_process_with_credentials_from_the_environment():
    env = {**os.environ, "SALESFORCE_CLIENT_ID": "proc-client", "SALESFORCE_CLIENT_SECRET": "proc-secret-77",
           "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "revetl.emulators", "salesforce", "--port", "0", "--no-rate-limit"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    try:
        line = json.loads(process.stdout.readline())  # type: ignore[union-attr]
        assert line["emulator"] == "salesforce" and line["rate_limit"] is None
        with httpx.Client(base_url=line["url"]) as client:
            assert login(client, "proc-secret-77", "proc-client").status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert b"proc-secret-77" not in process.stderr.read()  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
