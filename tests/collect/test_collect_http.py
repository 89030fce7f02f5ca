"""Segment's HTTP Tracking API as a client sees it: a real `revetl collect` process over a socket.

One collector serves the whole module; every test uses its own message ids and reads back only
those from the landed Parquet.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import time
import uuid
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("collect_http")]


def ids(n: int, tag: str) -> list[str]:
    return [f"{tag}-{uuid.uuid4().hex[:12]}-{i}" for i in range(n)]


def track(message_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": "u-1", "messageId": message_id,
            "properties": {"revenue": 12.5}, **extra}


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def post(collector: Any, path: str, body: Any = None, content: bytes | None = None, **kwargs: Any) -> httpx.Response:
    if content is None:
        content = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
    return httpx.post(collector.url + path, content=content, headers=headers, timeout=30, **kwargs)


def landed_by_id(collector: Any, keys: dict[str, str], message_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
    """Landed copies of these ids, once everything acknowledged before this call has landed.

    A probe event is sent and waited for: rows are logged and rolled in order, so once the probe
    is in Parquet, so is everything acknowledged before it (and nothing more will appear).
    """
    (probe,) = ids(1, "probe")
    assert post(collector, "/v1/track", track(probe), headers=basic(keys["web"])).status_code == 200
    deadline = time.monotonic() + 30
    rows = collector.landed()
    while probe not in {row["message_id"] for row in rows} and time.monotonic() < deadline:
        time.sleep(0.05)
        rows = collector.landed()
    wanted = set(message_ids)
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row["message_id"] in wanted:
            found.setdefault(row["message_id"], []).append(row)
    return found


def test_write_key_in_body_is_accepted(http_collector: Any, keys: dict[str, str]) -> None:
    (mid,) = ids(1, "body")
    response = post(http_collector, "/v1/batch", {"batch": [track(mid)], "writeKey": keys["web"]})
    assert response.status_code == 200
    assert response.json() == {"success": True}
    assert set(landed_by_id(http_collector, keys, [mid])) == {mid}


def test_write_key_as_basic_auth_user_is_accepted(http_collector: Any, keys: dict[str, str]) -> None:
    (mid,) = ids(1, "basic")
    response = post(http_collector, "/v1/track", track(mid), headers=basic(keys["server"]))
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    assert set(landed_by_id(http_collector, keys, [mid])) == {mid}


@pytest.mark.parametrize(
    "headers, body_key",
    [({}, None), ({}, "not-a-key"), ("bad-basic", None), ({"Authorization": "Bearer x"}, None)],
    ids=["no key", "unknown body key", "unknown basic key", "bearer token"],
)
def test_missing_or_unknown_write_key_is_401_and_lands_nothing(
    http_collector: Any, keys: dict[str, str], headers: Any, body_key: str | None
) -> None:
    (mid,) = ids(1, "unauth")
    body: dict[str, Any] = {"batch": [track(mid)]}
    if body_key:
        body["writeKey"] = body_key
    response = post(http_collector, "/v1/batch", body, headers=basic("bad-key") if headers == "bad-basic" else headers)
    assert response.status_code == 401
    assert response.json()["success"] is False
    assert response.json()["code"] == "unauthorized"
    assert landed_by_id(http_collector, keys, [mid]) == {}


def test_write_keys_never_reach_logs_or_landed_data(http_collector: Any, keys: dict[str, str]) -> None:
    (mid,) = ids(1, "secret")
    identify = {"userId": "u-9", "messageId": mid, "writeKey": keys["web"]}
    assert post(http_collector, "/v1/identify", identify).status_code == 200
    assert post(http_collector, "/v1/batch", {"batch": [], "writeKey": "wrong-" + keys["web"]}).status_code == 401
    rows = landed_by_id(http_collector, keys, [mid])
    text = http_collector.log_path.read_text() + json.dumps(rows, default=str)
    for key in keys.values():
        assert key not in text
    requests = [line for line in http_collector.lines() if line["msg"] == "request"]
    assert {"method", "path", "status", "source", "events", "ms"} <= set(requests[-1])
    assert any(line["source"] == "web" for line in requests)


def test_gzip_body_is_accepted(http_collector: Any, keys: dict[str, str]) -> None:
    mids = ids(3, "gzip")
    body = gzip.compress(json.dumps({"batch": [track(m) for m in mids]}).encode())
    headers = {"Content-Encoding": "gzip", **basic(keys["web"])}
    response = post(http_collector, "/v1/batch", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert set(landed_by_id(http_collector, keys, mids)) == set(mids)


def test_corrupt_gzip_is_400(http_collector: Any, keys: dict[str, str]) -> None:
    response = post(http_collector, "/v1/batch", content=b"\x1f\x8b not gzip at all",
                    headers={"Content-Encoding": "gzip", **basic(keys["web"])})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_encoding"


def test_invalid_json_is_400_with_a_reason(http_collector: Any, keys: dict[str, str]) -> None:
    response = post(http_collector, "/v1/batch", content=b'{"batch": [', headers=basic(keys["web"]))
    assert response.status_code == 400
    payload = response.json()
    assert payload["success"] is False and payload["code"] == "invalid_json"
    assert "not valid JSON" in payload["message"]


def test_single_event_over_32_kb_is_400(http_collector: Any, keys: dict[str, str]) -> None:
    (mid,) = ids(1, "big")
    event = track(mid, properties={"blob": "x" * (32 * 1024)})
    response = post(http_collector, "/v1/track", event, headers=basic(keys["web"]))
    assert response.status_code == 400
    assert response.json()["code"] == "too_large"
    assert "32768-byte limit" in response.json()["message"]


def test_event_over_32_kb_in_a_batch_is_rejected_and_the_rest_land(http_collector: Any, keys: dict[str, str]) -> None:
    small, big = ids(2, "mixed")
    events = [track(small), track(big, properties={"blob": "y" * (33 * 1024)})]
    response = post(http_collector, "/v1/batch", {"batch": events}, headers=basic(keys["web"]))
    assert response.status_code == 200
    (rejected,) = response.json()["rejected"]
    assert rejected["index"] == 1 and rejected["messageId"] == big
    assert "over the 32768-byte limit" in rejected["reason"]
    assert set(landed_by_id(http_collector, keys, [small, big])) == {small}


def test_batch_over_500_kb_is_400_and_lands_nothing(http_collector: Any, keys: dict[str, str]) -> None:
    mids = ids(40, "huge")
    events = [track(m, properties={"blob": "z" * 13_000}) for m in mids]  # 40 x 13 KB > 500 KB
    body = json.dumps({"batch": events}).encode()
    assert len(body) > 500 * 1024
    response = post(http_collector, "/v1/batch", content=body, headers=basic(keys["web"]))
    assert response.status_code == 400
    assert response.json()["code"] == "too_large"
    assert "512000-byte limit" in response.json()["message"]
    assert landed_by_id(http_collector, keys, mids) == {}


def test_gzip_body_inflating_over_500_kb_is_400(http_collector: Any, keys: dict[str, str]) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * (2 * 1024 * 1024) + b"]}")
    assert len(bomb) < 10_000
    headers = {"Content-Encoding": "gzip", **basic(keys["web"])}
    response = post(http_collector, "/v1/batch", content=bomb, headers=headers)
    assert response.status_code == 400
    assert response.json()["code"] == "too_large"


def test_batch_of_2500_events_is_accepted_and_2501_is_400(http_collector: Any, keys: dict[str, str]) -> None:
    mids = ids(2501, "count")
    events = [{"type": "track", "event": "e", "userId": "u", "messageId": m} for m in mids]
    too_many = post(http_collector, "/v1/batch", {"batch": events}, headers=basic(keys["web"]))
    assert too_many.status_code == 400
    assert too_many.json()["code"] == "too_many_events"
    assert "2501 events" in too_many.json()["message"]
    just_right = post(http_collector, "/v1/batch", {"batch": events[:2500]}, headers=basic(keys["web"]))
    assert just_right.status_code == 200
    assert len(landed_by_id(http_collector, keys, mids)) == 2500


def test_partly_invalid_batch_lands_the_valid_events_and_reports_the_others(
    http_collector: Any, keys: dict[str, str]
) -> None:
    good1, good2, bad1, bad2, bad3 = ids(5, "partial")
    events = [
        track(good1),
        {"type": "track", "userId": "u", "messageId": bad1},  # no event name
        {"type": "identify", "messageId": bad2, "traits": {"plan": "pro"}},  # no user or anonymous id
        "not an object",
        {"type": "teleport", "userId": "u", "messageId": bad3},
        {"type": "identify", "userId": "u-2", "messageId": good2, "traits": {"plan": "pro"}},
    ]
    response = post(http_collector, "/v1/batch", {"batch": events, "writeKey": keys["web"]})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert [(r["index"], r["messageId"]) for r in body["rejected"]] == [(1, bad1), (2, bad2), (3, None), (4, bad3)]
    assert "event` name" in body["rejected"][0]["reason"]
    assert "neither `userId` nor `anonymousId`" in body["rejected"][1]["reason"]
    assert "JSON object" in body["rejected"][2]["reason"]
    assert "unknown event type 'teleport'" in body["rejected"][3]["reason"]
    landed = landed_by_id(http_collector, keys, [good1, good2, bad1, bad2, bad3])
    assert set(landed) == {good1, good2}
    assert json.loads(landed[good2][0]["traits"]) == {"plan": "pro"}


def test_a_lone_surrogate_in_one_event_is_replaced_and_the_whole_batch_lands(
    http_collector: Any, keys: dict[str, str]
) -> None:
    mids = ids(100, "surrogate")
    # Over 32 KB, so that each event is measured too; json.dumps writes "\ud800" as an escape, as
    # JavaScript does for a string cut in the middle of an emoji.
    events = [track(mid, properties={"pad": "x" * 400}) for mid in mids]
    events[40] = track(mids[40], userId="u-\ud800", properties={"title": "Hi \ud83d", "pad": "x" * 400})
    bad_id = mids[41] + "\udc00"
    events[41] = {"type": "track", "userId": "u-1", "messageId": bad_id}  # no event name: rejected
    response = post(http_collector, "/v1/batch", {"batch": events, "writeKey": keys["web"]})
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == [
        {"index": 41, "messageId": mids[41] + "\ufffd", "reason": "a track event needs a non-empty `event` name"}
    ]
    landed = landed_by_id(http_collector, keys, mids)
    assert set(landed) == set(mids) - {mids[41]}
    (row,) = landed[mids[40]]
    assert row["user_id"] == "u-\ufffd" and json.loads(row["properties"])["title"] == "Hi \ufffd"


def test_batch_whose_events_are_all_invalid_is_400(http_collector: Any, keys: dict[str, str]) -> None:
    response = post(http_collector, "/v1/batch", {"batch": [{"type": "track"}], "writeKey": keys["web"]})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_events"
    assert len(response.json()["rejected"]) == 1


@pytest.mark.parametrize("body", [[1, 2], {"batch": "nope"}, {"no_batch": []}])
def test_malformed_batch_body_is_400(http_collector: Any, keys: dict[str, str], body: Any) -> None:
    response = post(http_collector, "/v1/batch", body, headers=basic(keys["web"]))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_body"


def test_single_event_endpoints_set_the_type(http_collector: Any, keys: dict[str, str]) -> None:
    page, screen, group, alias, imported = ids(5, "single")
    calls = [
        ("/v1/page", {"anonymousId": "a-1", "name": "Pricing", "messageId": page, "properties": {"path": "/pricing"}}),
        ("/v1/screen", {"userId": "u-1", "name": "Home", "messageId": screen}),
        ("/v1/group", {"userId": "u-1", "groupId": "g-1", "messageId": group, "traits": {"name": "Initech"}}),
        ("/v1/alias", {"userId": "u-1", "previousId": "a-1", "messageId": alias}),
        ("/v1/import", {"batch": [track(imported)]}),
    ]
    for path, body in calls:
        response = post(http_collector, path, body, headers=basic(keys["web"]))
        assert response.status_code == 200, (path, response.text)
    found = landed_by_id(http_collector, keys, [page, screen, group, alias, imported])
    landed = {mid: rows[0] for mid, rows in found.items()}
    assert (landed[page]["type"], landed[page]["event"]) == ("page", "Pricing")
    assert (landed[screen]["type"], landed[screen]["event"]) == ("screen", "Home")
    assert (landed[group]["type"], landed[group]["group_id"]) == ("group", "g-1")
    assert (landed[alias]["type"], landed[alias]["previous_id"]) == ("alias", "a-1")
    assert landed[imported]["type"] == "track"


def test_invalid_single_event_is_400_with_the_reason(http_collector: Any, keys: dict[str, str]) -> None:
    response = post(http_collector, "/v1/alias", {"userId": "u-1"}, headers=basic(keys["web"]))
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_event"
    assert "needs a `previousId`" in response.json()["message"]


def test_resent_message_is_acknowledged_but_landed_once(http_collector: Any, keys: dict[str, str]) -> None:
    first, second = ids(2, "dup")
    batch = {"batch": [track(first), track(second), track(first)], "writeKey": keys["web"]}
    assert post(http_collector, "/v1/batch", batch).status_code == 200
    batch["writeKey"] = keys["web"]
    assert post(http_collector, "/v1/batch", batch).json() == {"success": True}
    landed = landed_by_id(http_collector, keys, [first, second])
    assert {mid: len(rows) for mid, rows in landed.items()} == {first: 1, second: 1}


def test_timestamp_is_corrected_for_client_clock_skew_and_received_at_is_the_servers(
    http_collector: Any, keys: dict[str, str]
) -> None:
    skewed, unskewed, untimed = ids(3, "skew")
    now = dt.datetime.now(dt.timezone.utc)
    client_clock = now + dt.timedelta(hours=3)  # the device's clock runs 3 hours ahead
    happened = client_clock - dt.timedelta(minutes=5)  # five minutes before it was sent
    events = [
        track(skewed, timestamp=happened.isoformat(), receivedAt="2001-01-01T00:00:00Z"),
        track(untimed),
    ]
    before = dt.datetime.now(dt.timezone.utc)
    body = {"batch": events, "sentAt": client_clock.isoformat(), "writeKey": keys["web"]}
    assert post(http_collector, "/v1/batch", body).status_code == 200
    explicit = (now - dt.timedelta(days=2)).replace(microsecond=0)  # no sentAt: taken as sent
    event = track(unskewed, timestamp=explicit.isoformat())
    assert post(http_collector, "/v1/track", event, headers=basic(keys["web"])).status_code == 200
    after = dt.datetime.now(dt.timezone.utc)

    landed = {mid: rows[0] for mid, rows in landed_by_id(http_collector, keys, [skewed, unskewed, untimed]).items()}
    row = landed[skewed]
    received = row["received_at"].astimezone(dt.timezone.utc)
    assert before - dt.timedelta(seconds=1) <= received <= after + dt.timedelta(seconds=1)  # not 2001
    # timestamp = receivedAt - (sentAt - timestamp): five minutes before the server received it
    assert row["timestamp"].astimezone(dt.timezone.utc) == received - dt.timedelta(minutes=5)
    assert landed[untimed]["timestamp"] == landed[untimed]["received_at"]
    assert landed[unskewed]["timestamp"].astimezone(dt.timezone.utc) == explicit


def test_batch_context_is_merged_under_each_events_context(http_collector: Any, keys: dict[str, str]) -> None:
    (mid,) = ids(1, "ctx")
    event = track(mid, context={"ip": "198.51.100.1"})
    body = {"batch": [event], "context": {"ip": "203.0.113.9", "library": {"name": "custom"}}, "writeKey": keys["web"]}
    assert post(http_collector, "/v1/batch", body).status_code == 200
    (row,) = landed_by_id(http_collector, keys, [mid])[mid]
    assert json.loads(row["context"]) == {"ip": "198.51.100.1", "library": {"name": "custom"}}


def test_health_unknown_paths_and_methods(http_collector: Any) -> None:
    health = httpx.get(http_collector.url + "/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert httpx.get(http_collector.url + "/v1/batch", timeout=10).status_code == 405
    missing = httpx.post(http_collector.url + "/v2/track", content=b"{}", timeout=10)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    preflight = httpx.options(http_collector.url + "/v1/batch", timeout=10)
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"


def test_startup_line_says_where_events_land(http_collector: Any) -> None:
    (startup,) = [line for line in http_collector.lines() if "url" in line]
    assert str(http_collector.landing_dir) in startup["msg"]
    assert startup["landing_dir"] == str(http_collector.landing_dir)
    assert startup["sources"] == ["server", "web"]
