"""The Intercom emulator through real sockets: auth, limits, error lists, contacts, search lag, tags,
data attributes. Answers are checked against the response schemas of Intercom's OpenAPI
description where it documents one for the status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec import OpenApi

from revetl.emulators import create, running
from revetl.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-intercom-token-77c1"
AUTH = {"Authorization": f"Bearer {TOKEN}", "Intercom-Version": "2.16"}
SPEC = "intercom-api-2.16.yaml"


@pytest.fixture(scope="module")
def intercom_url() -> Iterator[str]:
    with running("intercom", {"token": TOKEN, "seed": 1}) as url:
        yield url


@pytest.fixture
def intercom(intercom_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=intercom_url, headers=AUTH, timeout=5) as client:
        client.post("/_emulator/reset").raise_for_status()
        yield client


def fits(response: httpx.Response) -> httpx.Response:
    """The response, after checking it against the schema Intercom documents for its status."""
    request = response.request
    assert OpenApi.load(SPEC).response_problems(request.method, request.url.path, response.status_code,
                                                response.json()) == []
    return response


def error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert body["type"] == "error.list" and body["request_id"]
    return response.status_code, body["errors"][0]["code"], body["errors"][0]["message"]


def new_contact(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    response = fits(client.post("/contacts", json={"role": "user", **fields}))
    assert response.status_code == 200, response.text
    return response.json()


def test_a_wrong_or_missing_token_is_401_without_rate_limit_headers_or_echo(intercom: httpx.Client) -> None:
    wrong = intercom.get("/tags", headers={"Authorization": "Bearer nope-123"})
    missing = httpx.get(f"{intercom.base_url}/tags")
    assert error(fits(wrong)) == error(missing)[:1] + ("unauthorized", "Access Token Invalid")
    assert "nope-123" not in wrong.text and TOKEN not in wrong.text
    assert not any(h.lower().startswith("x-ratelimit") for h in wrong.headers)
    recorded = intercom.get("/_emulator/requests").json()["requests"]
    assert all(r["headers"]["authorization"] == "[redacted]" for r in recorded if "authorization" in r["headers"])


def test_authenticated_answers_count_down_the_10_second_window(intercom: httpx.Client) -> None:
    first, second = intercom.get("/tags"), intercom.get("/tags")
    assert first.headers["X-RateLimit-Limit"] == "1667"
    assert int(first.headers["X-RateLimit-Remaining"]) - int(second.headers["X-RateLimit-Remaining"]) == 1
    reset = int(first.headers["X-RateLimit-Reset"])
    assert reset % 10 == 0 and 0 < reset - time.time() <= 10


def test_over_the_limit_is_429_rate_limit_exceeded_and_applies_nothing(intercom: httpx.Client) -> None:
    intercom.post("/_emulator/faults", json={"rate_limit": 2, "rate_window": 10}).raise_for_status()
    intercom.get("/tags"), intercom.get("/tags")
    limited = intercom.post("/contacts", json={"role": "user", "external_id": "u1"})
    assert error(limited) == (429, "rate_limit_exceeded", "Exceeded rate limit of 2 in 10_seconds")
    assert limited.headers["X-RateLimit-Remaining"] == "0" and "Retry-After" not in limited.headers
    assert intercom.get("/_emulator/contacts").json()["count"] == 0


def test_an_unknown_intercom_version_is_refused(intercom: httpx.Client) -> None:
    assert error(intercom.get("/tags", headers={"Intercom-Version": "9.9"}))[:2] == (400, "intercom_version_invalid")
    assert intercom.get("/tags", headers={"Intercom-Version": "2.11"}).status_code == 200


def test_create_needs_an_identifier_and_answers_the_contact(intercom: httpx.Client) -> None:
    assert error(intercom.post("/contacts", json={"name": "Ann"}))[:2] == (400, "parameter_invalid")
    contact = new_contact(intercom, external_id="u1", email="ann@example.com", name="Ann")
    assert (contact["type"], contact["role"], contact["external_id"], contact["email_domain"]) == \
        ("contact", "user", "u1", "example.com")
    assert len(contact["id"]) == 24 and contact["tags"]["total_count"] == 0


def test_a_taken_external_id_is_409_naming_the_existing_contact(intercom: httpx.Client) -> None:
    first = new_contact(intercom, external_id="u1", email="ann@example.com")
    conflict = intercom.post("/contacts", json={"role": "user", "external_id": "u1", "email": "other@example.com"})
    assert error(conflict) == (409, "conflict", f"A contact matching those details already exists with id={first['id']}")
    assert intercom.get("/_emulator/contacts").json()["contacts"][0]["email"] == "ann@example.com"
    # Without an external_id, a user's email is what conflicts; with a new one, emails may repeat.
    assert intercom.post("/contacts", json={"email": "ann@example.com"}).status_code == 409
    assert intercom.post("/contacts", json={"external_id": "u2", "email": "ann@example.com"}).status_code == 200


def test_bad_values_are_400_parameter_invalid(intercom: httpx.Client) -> None:
    for body in ({"external_id": "u1", "email": "not-an-email"}, {"external_id": 5}, {"role": "admin"},
                 {"external_id": "u1", "signed_up_at": "yesterday"}, {"external_id": "u1", "custom_attributes": []}):
        assert error(intercom.post("/contacts", json=body))[:2] == (400, "parameter_invalid"), body
    assert intercom.get("/_emulator/contacts").json()["count"] == 0


def test_update_find_and_delete(intercom: httpx.Client) -> None:
    contact = new_contact(intercom, external_id="u1")
    updated = fits(intercom.put(f"/contacts/{contact['id']}", json={"name": "Ann", "email": "ann@example.com"}))
    assert updated.json()["name"] == "Ann"
    assert fits(intercom.get("/contacts/find_by_external_id/u1")).json()["id"] == contact["id"]
    assert error(intercom.get("/contacts/find_by_external_id/u2")) == (404, "not_found", "User Not Found")
    assert error(intercom.put("/contacts/" + "0" * 24, json={"name": "x"})) == (404, "not_found", "User Not Found")
    assert intercom.delete(f"/contacts/{contact['id']}").json()["deleted"] is True
    assert intercom.get(f"/contacts/{contact['id']}").status_code == 404


def test_search_does_not_see_a_contact_created_moments_ago() -> None:
    with running("intercom", {"token": TOKEN, "search_lag": 0.5}) as url, \
            httpx.Client(base_url=url, headers=AUTH, timeout=5) as client:
        contact = new_contact(client, external_id="u1", email="ann@example.com")
        query = {"query": {"field": "external_id", "operator": "=", "value": "u1"}}
        assert fits(client.post("/contacts/search", json=query)).json()["total_count"] == 0
        assert client.get("/contacts/find_by_external_id/u1").json()["id"] == contact["id"]  # no lag there
        time.sleep(0.6)
        found = fits(client.post("/contacts/search", json=query)).json()
        assert [c["id"] for c in found["data"]] == [contact["id"]]


def test_search_filters_groups_and_pages() -> None:
    with running("intercom", {"token": TOKEN, "search_lag": 0}) as url, \
            httpx.Client(base_url=url, headers=AUTH, timeout=5) as client:
        for i in range(5):
            new_contact(client, external_id=f"u{i}", email=f"p{i}@{'a' if i % 2 else 'b'}.io")
        query = {"operator": "AND", "value": [{"field": "email", "operator": "$", "value": "b.io"},
                                              {"field": "external_id", "operator": "IN", "value": ["u0", "u2", "u3"]}]}
        page = fits(client.post("/contacts/search", json={"query": query, "pagination": {"per_page": 1}})).json()
        assert page["total_count"] == 2 and page["pages"]["total_pages"] == 2
        cursor = page["pages"]["next"]["starting_after"]
        rest = client.post("/contacts/search", json={"query": query, "pagination": {"per_page": 1,
                                                                                      "starting_after": cursor}})
        assert [c["external_id"] for c in page["data"] + rest.json()["data"]] == ["u0", "u2"]
        too_deep = {"operator": "OR", "value": [{"operator": "AND", "value": [{"operator": "OR", "value": [
            {"field": "id", "operator": "=", "value": "x"}]}]}]}
        assert error(client.post("/contacts/search", json={"query": too_deep}))[:2] == (400, "parameter_invalid")
        bad_sort = {"query": {"field": "id", "operator": "=", "value": "x"}, "sort": {"field": "id", "order": "desc"}}
        assert error(client.post("/contacts/search", json=bad_sort))[:2] == (400, "invalid_sort_order")


def test_custom_attributes_must_exist_and_hold_their_type(intercom: httpx.Client) -> None:
    missing = intercom.post("/contacts", json={"external_id": "u1", "custom_attributes": {"plan": "pro"}})
    assert error(missing) == (400, "parameter_invalid", "Custom attribute 'plan' does not exist")
    created = fits(intercom.post("/data_attributes", json={"name": "plan", "model": "contact", "data_type": "string"}))
    assert created.json()["full_name"] == "custom_attributes.plan"
    again = intercom.post("/data_attributes", json={"name": "plan", "model": "contact", "data_type": "string"})
    assert error(again)[:2] == (400, "parameter_invalid") and "already have 'plan'" in error(again)[2]
    assert intercom.post("/data_attributes", json={"name": "b@d!", "model": "contact",
                                                   "data_type": "string"}).status_code == 400
    assert intercom.post("/data_attributes", json={"name": "x", "model": "user", "data_type": "string"}).status_code == 400
    contact = new_contact(intercom, external_id="u1", custom_attributes={"plan": "pro"})
    assert contact["custom_attributes"] == {"plan": "pro"}
    assert intercom.put(f"/contacts/{contact['id']}", json={"custom_attributes": {"plan": 3}}).status_code == 400
    listed = fits(intercom.get("/data_attributes", params={"model": "contact"})).json()["data"]
    assert [a["name"] for a in listed if a["custom"]] == ["plan"]


def test_tags_are_created_once_by_name_attached_and_detached(intercom: httpx.Client) -> None:
    tag = fits(intercom.post("/tags", json={"name": "new_signups"})).json()
    assert intercom.post("/tags", json={"name": "NEW_SIGNUPS"}).json()["id"] == tag["id"]  # names ignore case
    assert error(intercom.post("/tags", json={"test": "invalid"})) == (400, "parameter_invalid", "invalid tag parameters")
    contact = new_contact(intercom, external_id="u1")
    attached = fits(intercom.post(f"/contacts/{contact['id']}/tags", json={"id": tag["id"]})).json()
    assert attached["id"] == tag["id"] and attached["applied_by"]["type"] == "admin"
    assert intercom.get(f"/contacts/{contact['id']}").json()["tags"]["data"][0]["id"] == tag["id"]
    assert error(intercom.post(f"/contacts/{contact['id']}/tags", json={"id": "999"}))[2] == "Resource Not Found"
    assert error(intercom.post("/contacts/" + "0" * 24 + "/tags", json={"id": tag["id"]}))[2] == "User Not Found"
    fits(intercom.delete(f"/contacts/{contact['id']}/tags/{tag['id']}"))
    assert intercom.get("/_emulator/contacts").json()["contacts"][0]["tags"] == []
    assert [t["name"] for t in fits(intercom.get("/tags")).json()["data"]] == ["new_signups"]


def test_injected_faults_keep_intercoms_shapes(intercom: httpx.Client) -> None:
    intercom.post("/_emulator/faults", json={"error_share": 1.0, "seed": 2}).raise_for_status()
    answers = [intercom.get("/tags") for _ in range(12)]
    assert {a.status_code for a in answers} <= {500, 502, 503}
    for answer in answers:
        if answer.status_code == 500:
            assert error(answer)[:2] == (500, "server_error") and "X-RateLimit-Limit" in answer.headers
        else:  # a load balancer's page: never reached the application that counts requests
            assert answer.headers["content-type"] == "text/html" and "X-RateLimit-Limit" not in answer.headers


def test_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="search_lag"):
        create("intercom", {"search_lag": -1})
    with pytest.raises(ConfigError, match="custom_attributes"):
        create("intercom", {"custom_attributes": {"plan": "text"}})
    emulator = create("intercom", {"custom_attributes": {"plan": "string"}, "token": "t"})
    assert emulator.limiter.limit == 1667 and emulator.limiter.window == 10.0 and emulator.default_port == 8093


@pytest.mark.slow
def test_revetl_emulate_intercom_prints_its_url_and_stops_on_sigterm() -> None:
    env = {**os.environ, "INTERCOM_TOKEN": "process-token-3b9d", "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-c", "from revetl.cli import main; main()", "emulate", "intercom", "--port", "0",
            "--rate-limit", "1667", "--rate-window", "10"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    try:
        line = json.loads(process.stdout.readline())  # type: ignore[union-attr]
        assert (line["emulator"], line["rate_limit"], line["rate_window"]) == ("intercom", 1667, 10.0)
        response = httpx.post(f"{line['url']}/tags", json={"name": "x"},
                              headers={"Authorization": "Bearer process-token-3b9d"})
        assert response.status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert b"process-token-3b9d" not in process.stderr.read()  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
