"""The Braze emulator through real sockets: auth, limits, per-object errors, edits, rate limits."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from revetl.emulators import running

KEY = "test-braze-key-5d1e"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def braze_url() -> Iterator[str]:
    with running("braze", {"api_key": KEY, "seed": 1}) as url:
        yield url


@pytest.fixture
def braze(braze_url: str) -> Iterator[httpx.Client]:
    """A client of the module's emulator, reset to its start-up state before each test."""
    with httpx.Client(base_url=braze_url, headers=AUTH, timeout=5) as client:
        client.post("/_emulator/reset").raise_for_status()
        yield client


def track(client: httpx.Client, **arrays: list) -> httpx.Response:
    return client.post("/users/track", json=arrays)


def users(client: httpx.Client, **query: str) -> dict[str, dict]:
    """external_id (or braze_id when it has none) -> the profile, as the emulator holds it."""
    found = client.get("/_emulator/users", params=query).json()["users"]
    return {u["external_id"] or u["braze_id"]: u for u in found}


def test_a_missing_or_wrong_key_is_401_and_applies_nothing(braze: httpx.Client) -> None:
    body = {"attributes": [{"external_id": "u1", "plan": "pro"}]}
    wrong = braze.post("/users/track", json=body, headers={"Authorization": "Bearer nope"})
    missing = httpx.post(f"{braze.base_url}/users/track", json=body)
    assert (wrong.status_code, missing.status_code) == (401, 401)
    assert wrong.json() == {"message": "Invalid API key"}
    assert "nope" not in wrong.text
    assert users(braze) == {}


def test_valid_objects_apply_and_answer_201_with_counts(braze: httpx.Client) -> None:
    response = track(
        braze,
        attributes=[{"external_id": "u1", "email": "ann@example.com", "plan": "pro"}],
        events=[{"external_id": "u1", "name": "entered_audience", "time": "2026-01-01T00:00:00Z"}],
        purchases=[{"external_id": "u2", "product_id": "seat", "currency": "USD", "price": 9.5,
                    "time": "2026-01-01"}],
    )
    assert response.status_code == 201
    assert response.json() == {"message": "success", "attributes_processed": 1, "events_processed": 1,
                               "purchases_processed": 1}
    state = users(braze)
    assert state["u1"]["attributes"] == {"email": "ann@example.com", "plan": "pro"}
    assert state["u1"]["custom_events"]["entered_audience"]["count"] == 1
    assert state["u2"]["purchases"] == {"seat": 1}


def test_more_than_75_objects_in_one_array_is_fatal_and_applies_nothing(braze: httpx.Client) -> None:
    too_many = [{"external_id": f"u{i}", "plan": "pro"} for i in range(76)]
    response = track(braze, attributes=too_many)
    assert response.status_code == 400
    assert response.json()["message"] == "Max Input Length Exceeded"
    assert users(braze) == {}
    # 75 in each array is the documented maximum, not an error.
    full = track(braze, attributes=too_many[:75], events=[
        {"external_id": f"u{i}", "name": "seen", "time": "2026-01-01T00:00:00Z"} for i in range(75)])
    assert full.status_code == 201
    assert full.json()["attributes_processed"] == full.json()["events_processed"] == 75


def test_invalid_objects_come_back_by_index_while_the_valid_ones_apply(braze: httpx.Client) -> None:
    response = track(braze, attributes=[
        {"external_id": "u1", "plan": "pro"},
        {"plan": "pro"},                                   # no identifier
        {"external_id": "u3", "email": "not-an-email"},
        {"external_id": "u4", "$reserved": True},
        {"external_id": "undefined", "plan": "pro"},       # a dummy id Braze refuses
        {"external_id": "u6", "plan": "team"},
    ])
    assert response.status_code == 201
    answer = response.json()
    assert answer["message"] == "success"
    assert answer["attributes_processed"] == 2
    assert [(e["input_array"], e["index"]) for e in answer["errors"]] == [("attributes", i) for i in (1, 2, 3, 4)]
    assert answer["errors"][0]["type"] == "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required"
    assert answer["errors"][1]["type"] == "The value provided for the 'email' field is not a valid email."
    assert answer["errors"][3]["type"] == "provided external_id is blacklisted and disallowed"
    assert set(users(braze)) == {"u1", "u6"}


def test_a_request_without_any_valid_object_is_a_fatal_400(braze: httpx.Client) -> None:
    response = track(braze, attributes=[{"external_id": "u1", "email": "bad"}, {"plan": "x"}])
    assert response.status_code == 400
    assert response.json()["message"].startswith("Valid data must be provided")
    assert [e["index"] for e in response.json()["errors"]] == [0, 1]


def test_add_and_remove_edit_an_array_attribute(braze: httpx.Client) -> None:
    track(braze, attributes=[{"external_id": "u1", "audiences": ["a", "b", "b", "c"]}])
    assert users(braze)["u1"]["attributes"]["audiences"] == ["a", "b", "c"]  # arrays hold unique values
    track(braze, attributes=[{"external_id": "u1", "audiences": {"add": ["a", "d"], "remove": ["b"]}}])
    assert users(braze)["u1"]["attributes"]["audiences"] == ["c", "a", "d"]  # an added value moves to the end
    track(braze, attributes=[{"external_id": "u2", "audiences": {"add": ["x"]}}])  # no array yet: starts one
    assert users(braze)["u2"]["attributes"]["audiences"] == ["x"]


def test_null_unsets_an_attribute(braze: httpx.Client) -> None:
    track(braze, attributes=[{"external_id": "u1", "plan": "pro", "in_churn_risk": True, "email": "a@example.com"}])
    track(braze, attributes=[{"external_id": "u1", "in_churn_risk": None, "email": None}])
    assert users(braze)["u1"]["attributes"] == {"plan": "pro"}
    assert users(braze, email="a@example.com") == {}


def test_an_email_alone_updates_the_profile_that_has_it(braze: httpx.Client) -> None:
    track(braze, attributes=[{"external_id": "u1", "email": "Ann@Example.com"}])
    track(braze, attributes=[{"email": "ann@example.com", "plan": "pro"}])
    track(braze, attributes=[{"email": "new@example.com", "plan": "free"}])  # nobody has it: email-only user
    state = users(braze)
    assert state["u1"]["attributes"]["plan"] == "pro"
    assert [u["attributes"] for u in state.values() if u["external_id"] is None] == [
        {"email": "new@example.com", "plan": "free"}]


def test_the_users_endpoint_filters_by_external_id(braze: httpx.Client) -> None:
    track(braze, attributes=[{"external_id": "u1"}, {"external_id": "u2"}])
    assert set(users(braze, external_id="u2")) == {"u2"}
    assert users(braze, external_id="nobody") == {}


def test_rate_limit_headers_count_down_then_429(braze: httpx.Client) -> None:
    braze.post("/_emulator/faults", json={"rate_limit": 3, "rate_window": 60}).raise_for_status()
    body = [{"external_id": "u1"}]
    answers = [track(braze, attributes=body) for _ in range(4)]
    assert [r.status_code for r in answers] == [201, 201, 201, 429]
    assert [r.headers["X-RateLimit-Remaining"] for r in answers] == ["2", "1", "0", "0"]
    assert {r.headers["X-RateLimit-Limit"] for r in answers} == {"3"}
    reset = int(answers[-1].headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 61
    assert braze.get("/_emulator/stats").json()["faults_injected"]["rate_limited"] == 1


def test_default_rate_limit_is_braze_published_one(braze: httpx.Client) -> None:
    response = track(braze, attributes=[{"external_id": "u1"}])
    assert response.headers["X-RateLimit-Limit"] == "3000"
    assert braze.get("/_emulator/faults").json()["rate_window"] == 3.0


def test_wrong_content_type_and_bad_json_are_refused(braze: httpx.Client) -> None:
    assert braze.post("/users/track", content=b"{}", headers={"Content-Type": "text/plain"}).status_code == 415
    bad = braze.post("/users/track", content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert braze.get("/users/track").status_code == 405


def test_a_body_over_4_mb_is_413(braze: httpx.Client) -> None:
    big = {"attributes": [{"external_id": "u1", "blob": "x" * (4 * 1024 * 1024)}]}
    assert track(braze, **big).status_code == 413
    assert track(braze, attributes=[{"external_id": "u1"}]).status_code == 201  # a new connection works


def test_an_alias_creates_a_profile_only_when_told_to(braze: httpx.Client) -> None:
    alias = {"alias_name": "device-1", "alias_label": "device"}
    track(braze, attributes=[{"user_alias": alias, "plan": "free"}])
    assert users(braze) == {}  # user_alias defaults to update-only
    track(braze, attributes=[{"user_alias": alias, "_update_existing_only": False, "plan": "free"}])
    (profile,) = users(braze).values()
    assert profile["user_aliases"] == [alias] and profile["attributes"] == {"plan": "free"}


def test_the_combined_rule_caps_all_arrays_together() -> None:
    with running("braze", {"api_key": KEY, "batch_rule": "combined", "max_objects": 3}) as url:
        objects = [{"external_id": f"u{i}", "name": "seen", "time": "2026-01-01T00:00:00Z"} for i in range(2)]
        response = httpx.post(f"{url}/users/track", json={"attributes": objects, "events": objects}, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["message"] == "Max Input Length Exceeded"
