"""Unit tests of the Tracking API rules (no server): bodies, auth, limits, skew, request parsing."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import zlib

import orjson
import pytest

from revetl.collect.protocol import (
    MAX_BATCH_BYTES,
    accept,
    authenticate,
    basic_user,
    decode_body,
    parse_json,
    parse_request,
)
from revetl.collect.roller import payloads_to_table
from revetl.errors import CollectError

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


def test_gzip_and_deflate_bodies_are_inflated() -> None:
    body = b'{"batch": []}'
    assert decode_body(gzip.compress(body), "gzip", 100) == body
    assert decode_body(zlib.compress(body), "deflate", 100) == body
    assert decode_body(body, "", 100) == body


@pytest.mark.parametrize(
    "raw, encoding, status, code",
    [
        (gzip.compress(b"x" * 1000), "gzip", 400, "too_large"),
        (gzip.compress(b"{}")[:-6], "gzip", 400, "invalid_encoding"),
        (b"plain", "gzip", 400, "invalid_encoding"),
        (b"{}", "br", 415, "unsupported_encoding"),
        (b"x" * 101, "", 400, "too_large"),
    ],
    ids=["inflates over the limit", "truncated", "not gzip", "brotli", "plain over the limit"],
)
def test_bad_or_oversized_bodies_are_refused(raw: bytes, encoding: str, status: int, code: str) -> None:
    with pytest.raises(CollectError) as caught:
        decode_body(raw, encoding, 100)
    assert (caught.value.status, caught.value.code) == (status, code)


def test_json_that_only_pythons_parser_reads_is_still_json() -> None:
    parsed = parse_json(b'{"n": NaN, "big": 123456789012345678901234567890}')
    assert parsed["n"] != parsed["n"]  # NaN: normalize then rejects it with a reason
    assert parsed["big"] == pytest.approx(1.2345678901234568e29)  # beyond 64 bits: a float, as in Segment
    with pytest.raises(CollectError, match="not valid JSON"):
        parse_json(b"{'single': 'quotes'}")


def test_basic_auth_user_is_the_write_key() -> None:
    header = "Basic " + base64.b64encode(b"my-key:").decode()
    assert basic_user(header) == "my-key"
    assert basic_user("basic " + base64.b64encode(b"k2:ignored").decode()) == "k2"
    assert basic_user("Bearer abc") is None
    assert basic_user("Basic !!!") is None
    assert basic_user(None) is None


def test_authentication_picks_the_first_known_key_and_never_echoes_keys() -> None:
    sources = {"key-web": "web", "key-ios": "ios"}
    assert authenticate(sources, [None, "key-ios"]) == "ios"
    assert authenticate(sources, ["wrong", "key-web"]) == "web"
    with pytest.raises(CollectError) as caught:
        authenticate(sources, ["key-webX", 42, None])
    assert caught.value.status == 401
    assert "key-web" not in str(caught.value)


def test_skew_uses_the_events_own_sent_at_before_the_batchs() -> None:
    payload = {
        "sentAt": "2026-05-01T13:00:00Z",  # batch clock one hour ahead
        "batch": [
            {"type": "track", "event": "a", "userId": "u", "messageId": "m1", "timestamp": "2026-05-01T12:59:00Z"},
            {"type": "track", "event": "b", "userId": "u", "messageId": "m2", "timestamp": "2026-05-01T11:59:30Z",
             "sentAt": "2026-05-01T12:00:00Z"},
        ],
    }
    rows = accept("batch", payload, 500, NOW).rows
    assert [row["timestamp"] for row in rows] == [NOW - dt.timedelta(minutes=1), NOW - dt.timedelta(seconds=30)]
    assert all(row["received_at"] == NOW for row in rows)


def test_invalid_batch_sent_at_refuses_the_batch() -> None:
    with pytest.raises(CollectError, match="`sentAt` is not an ISO-8601 timestamp") as caught:
        accept("batch", {"sentAt": "yesterday", "batch": []}, 50, NOW)
    assert caught.value.status == 400


def test_a_message_id_derived_from_content_survives_a_retry_with_a_new_sent_at() -> None:
    def first_id(sent_at: str) -> str:
        event = {"type": "identify", "userId": "u", "traits": {"a": 1}, "sentAt": sent_at, "writeKey": "k"}
        return accept("identify", event, 100, NOW).rows[0]["message_id"]

    assert first_id("2026-05-01T11:00:00Z") == first_id("2026-05-01T11:05:00Z")


def test_parse_request_reports_refusals_as_data_and_drops_the_body_key() -> None:
    parsed = parse_request("batch", b"{nope", "", NOW)
    assert parsed.error is not None and parsed.error[:2] == (400, "invalid_json")
    with pytest.raises(CollectError):
        parsed.raise_error()
    event = {"type": "track", "event": "e", "userId": "u", "messageId": "m"}
    body = orjson.dumps({"writeKey": "secret", "batch": [event]})
    parsed = parse_request("batch", body, "", NOW)
    assert parsed.body_key == "secret" and parsed.message_ids == ["m"]
    assert b"secret" not in parsed.payload


def test_batch_body_limit_is_500_kb() -> None:
    assert MAX_BATCH_BYTES == 512_000
    body = b'{"batch": [' + b" " * MAX_BATCH_BYTES + b"]}"
    parsed = parse_request("batch", body, "", NOW)
    assert parsed.error is not None and parsed.error[1] == "too_large"


def test_log_payloads_become_rows_even_when_strings_look_like_row_boundaries() -> None:
    tricky = 'a"},{"message_id":"forged","type":"x'
    events = [
        {"type": "track", "event": tricky, "userId": "u", "messageId": "m1", "properties": {"k": tricky, "n": "é\n"}},
        {"type": "track", "event": "plain", "userId": "u", "messageId": "m2"},
    ]
    parsed = parse_request("batch", orjson.dumps({"batch": events}), "", NOW)
    table = payloads_to_table([parsed.payload, b"[]"])
    rows = table.to_pylist()
    assert [row["message_id"] for row in rows] == ["m1", "m2"]
    assert rows[0]["event"] == tricky
    assert json.loads(rows[0]["properties"]) == {"k": tricky, "n": "é\n"}
    assert rows[1]["received_at"] == NOW
