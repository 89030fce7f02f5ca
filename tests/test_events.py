"""The landing contract: what `events.normalize` accepts, what it lands, and why it rejects."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revetl.collect.log import encode_rows
from revetl.errors import InvalidEvent
from revetl.landing.events import LANDING_SCHEMA, MAX_EVENT_BYTES, normalize

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)
REPO = Path(__file__).resolve().parents[1]


def track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Report Generated", "userId": "u1", **fields}


def reason(payload: Any, **kwargs: Any) -> str:
    kwargs.setdefault("received_at", NOW)
    with pytest.raises(InvalidEvent) as info:
        normalize(payload, **kwargs)
    return info.value.reason


def test_camel_case_payload_lands_every_column() -> None:
    row = normalize(
        {
            "messageId": "m-1", "type": "track", "event": "Payment Processed", "userId": "u1",
            "anonymousId": "a1", "timestamp": "2024-04-30T10:00:00.123Z", "receivedAt": "2024-04-30T10:00:01Z",
            "properties": {"revenue": 49.5, "currency": "EUR"}, "context": {"ip": "10.0.0.1"},
        },
        received_at=NOW,
    )
    assert row == {
        "message_id": "m-1", "type": "track", "event": "Payment Processed", "anonymous_id": "a1",
        "user_id": "u1", "group_id": None, "previous_id": None,
        "timestamp": dt.datetime(2024, 4, 30, 10, 0, 0, 123000, tzinfo=dt.timezone.utc),
        "received_at": dt.datetime(2024, 4, 30, 10, 0, 1, tzinfo=dt.timezone.utc),
        "properties": '{"revenue":49.5,"currency":"EUR"}', "traits": None, "context": '{"ip":"10.0.0.1"}',
    }
    assert set(row) == set(LANDING_SCHEMA.names)


def test_snake_case_names_are_read_when_camel_case_is_absent() -> None:
    row = normalize(
        {"type": "alias", "message_id": "m-2", "user_id": "new", "previous_id": "old", "anonymous_id": "a"},
        received_at=NOW,
    )
    assert (row["message_id"], row["user_id"], row["previous_id"], row["anonymous_id"]) == ("m-2", "new", "old", "a")


def test_page_and_screen_names_go_to_the_event_column() -> None:
    assert normalize({"type": "page", "name": "Pricing", "anonymousId": "a"}, received_at=NOW)["event"] == "Pricing"
    assert normalize({"type": "screen", "name": "Home", "userId": "u"}, received_at=NOW)["event"] == "Home"
    assert normalize({"type": "page", "anonymousId": "a"}, received_at=NOW)["event"] is None


def test_timestamp_falls_back_to_original_timestamp_then_received_at_then_now() -> None:
    original = track(originalTimestamp="2024-04-01T00:00:00Z", receivedAt="2024-04-02T00:00:00Z")
    assert normalize(original, received_at=NOW)["timestamp"].day == 1
    received = track(receivedAt="2024-04-02T00:00:00Z")
    assert normalize(received, received_at=NOW)["timestamp"].day == 2
    assert normalize(track(), received_at=NOW)["timestamp"] == NOW
    assert normalize(track(), received_at=NOW)["received_at"] == NOW


def test_timestamps_are_converted_to_utc_and_naive_ones_taken_as_utc() -> None:
    row = normalize(track(timestamp="2024-04-30T12:00:00+02:00"), received_at=NOW)
    assert row["timestamp"] == dt.datetime(2024, 4, 30, 10, 0, tzinfo=dt.timezone.utc)
    naive = normalize(track(timestamp="2024-04-30T12:00:00"), received_at=NOW)
    assert naive["timestamp"] == dt.datetime(2024, 4, 30, 12, 0, tzinfo=dt.timezone.utc)


def in_hours(hours: float) -> str:
    """A time this many hours from now (the future is judged against the present)."""
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=hours)).isoformat()


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (track(timestamp="0001-01-01T00:00:00Z"), "`timestamp` is 0001-01-01T00:00:00+00:00, before 1970-01-01"),
        (track(originalTimestamp="1969-12-31T23:59:59Z"), "`originalTimestamp` is 1969-12-31T23:59:59+00:00, before"),
        (track(timestamp="9999-12-31T23:59:59Z"), "`timestamp` is 9999-12-31T23:59:59+00:00, more than 24 hours in"),
        (track(timestamp=in_hours(25)), "`timestamp` is "),
        (track(receivedAt="9999-01-01T00:00:00Z"), "`receivedAt` is 9999-01-01T00:00:00+00:00, more than 24 hours"),
        (track(receivedAt="0001-01-01T00:00:00Z"), "`receivedAt` is 0001-01-01T00:00:00+00:00, before 1970-01-01"),
    ],
)
def test_times_before_1970_or_over_a_day_in_the_future_are_rejected(payload: dict[str, Any], expected: str) -> None:
    assert reason(payload, received_at=dt.datetime.now(dt.timezone.utc)).startswith(expected)
    assert reason(payload).startswith(expected)  # a receipt time in the past does not move the future


def test_times_at_the_edges_of_the_range_land() -> None:
    assert normalize(track(timestamp="1970-01-01T00:00:00Z"), received_at=NOW)["timestamp"].year == 1970
    soon = in_hours(23)
    assert normalize(track(timestamp=soon), received_at=NOW)["timestamp"].isoformat() == soon
    assert normalize(track(receivedAt=soon), received_at=NOW)["received_at"].isoformat() == soon


def test_with_sent_at_the_range_holds_for_the_time_corrected_for_clock_skew() -> None:
    now = dt.datetime.now(dt.timezone.utc)
    device = now + dt.timedelta(days=400)  # a device clock set more than a year ahead
    skewed = track(timestamp=(device - dt.timedelta(minutes=5)).isoformat())
    assert normalize(skewed, received_at=now, sent_at=device)["timestamp"] == now - dt.timedelta(minutes=5)
    assert "more than 24 hours in the future" in reason(skewed)  # without sentAt, nothing says the clock was wrong
    early = track(timestamp="2024-05-01T11:00:00Z")  # sent ten thousand years "later": corrected to year -9000
    assert reason(early, sent_at=dt.datetime(9999, 1, 1, tzinfo=dt.timezone.utc)).startswith(
        "`timestamp` is out of range once corrected for clock skew"
    )


def test_the_cli_refuses_to_generate_history_outside_the_range(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "revetl", "--project-dir", str(REPO), "generate", "--users", "5", "--days", "3",
         "--end", "9999-01-01"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "REVETL_LANDING_DIR": str(tmp_path / "events")},
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "`--end` is 9999-01-01T00:00:00+00:00, more than 24 hours in the future" in " ".join(result.stderr.split())
    assert not (tmp_path / "events").exists()


def test_missing_message_id_is_derived_from_content_so_reingesting_makes_duplicates() -> None:
    first = normalize(track(timestamp="2024-04-30T10:00:00Z"), received_at=NOW)["message_id"]
    again = normalize(track(timestamp="2024-04-30T10:00:00Z"), received_at=NOW)["message_id"]
    other = normalize(track(timestamp="2024-04-30T10:00:01Z"), received_at=NOW)["message_id"]
    assert first == again != other


def test_numeric_identifiers_are_kept_as_decimal_text() -> None:
    row = normalize({"type": "identify", "userId": 12345, "anonymousId": 0}, received_at=NOW)
    assert (row["user_id"], row["anonymous_id"]) == ("12345", "0")


def test_json_columns_are_compact_and_keep_non_ascii_text() -> None:
    row = normalize({"type": "identify", "userId": "u", "traits": {"name": "Zoë Müller", "n": [1, 2]}}, received_at=NOW)
    assert row["traits"] == '{"name":"Zoë Müller","n":[1,2]}'


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ([1, 2], "an event must be a JSON object, not list"),
        ({"type": "click", "userId": "u"}, "unknown event type 'click'"),
        ({"userId": "u"}, "unknown event type None"),
        ({"type": ["track"], "userId": "u"}, "unknown event type ['track']"),
        ({"type": {"a": 1}, "userId": "u"}, "unknown event type {'a': 1}"),
        ({"type": "page", "name": "x"}, "event has neither `userId` nor `anonymousId`"),
        ({"type": "page", "userId": " ", "anonymousId": ""}, "event has neither `userId` nor `anonymousId`"),
        ({"type": "track", "userId": "u"}, "a track event needs a non-empty `event` name"),
        ({"type": "track", "event": "  ", "userId": "u"}, "a track event needs a non-empty `event` name"),
        ({"type": "page", "name": 5, "userId": "u"}, "`name` must be a string, not int"),
        ({"type": "identify", "event": 5, "userId": "u"}, "`event` must be a string, not int"),
        ({"type": "alias", "userId": "u"}, "an alias event needs a `previousId`"),
        ({"type": "group", "userId": "u"}, "a group event needs a `groupId`"),
        (track(userId=True), "`userId` must be a string, not bool"),
        (track(userId=1.5), "`userId` must be a string, not float"),
        (track(anonymousId={"id": 1}), "`anonymousId` must be a string, not dict"),
        (track(messageId=""), "`messageId` must be a non-empty string"),
        (track(messageId=7), "`messageId` must be a non-empty string"),
        (track(properties=[1]), "`properties` must be a JSON object, not list"),
        (track(context="ip=1"), "`context` must be a JSON object, not str"),
        (track(timestamp="yesterday"), "`timestamp` is not an ISO-8601 timestamp: 'yesterday'"),
        (track(timestamp=1714550400), "`timestamp` must be an ISO-8601 string, not int"),
        (track(receivedAt="2024-13-01"), "`receivedAt` is not an ISO-8601 timestamp"),
        (track(timestamp="0001-01-01T00:00:00+01:00"), "`timestamp` is out of range once converted to UTC"),
        (track(properties={"revenue": float("nan")}), "`properties` holds NaN or Infinity"),
        (track(properties={"revenue": float("inf")}), "`properties` holds NaN or Infinity"),
    ],
)
def test_invalid_payloads_are_rejected_with_a_reason_naming_the_field(payload: Any, expected: str) -> None:
    assert reason(payload).startswith(expected)


def test_events_over_32_kb_are_rejected() -> None:
    assert reason(track(), raw_size=MAX_EVENT_BYTES + 1) == (
        f"event is {MAX_EVENT_BYTES + 1} bytes, over the {MAX_EVENT_BYTES}-byte limit"
    )
    assert normalize(track(), received_at=NOW, raw_size=MAX_EVENT_BYTES)["user_id"] == "u1"


def test_lone_surrogates_are_replaced_with_u_fffd_in_every_text_column() -> None:
    # What JavaScript writes for a string cut in the middle of an emoji: valid JSON, invalid Unicode.
    payload = json.loads(
        '{"type": "group", "event": "Clicked \\ud83d", "userId": "u\\ud800", "anonymousId": "\\udc00a",'
        ' "groupId": "g\\udfff", "messageId": "m\\ud800-1", "properties": {"title\\ud800": "Hi \\ud83d"},'
        ' "traits": {"name": "\\udc00"}, "context": {"page": {"title": ["\\ud83d\\ude00 ok", "\\ud83d"]}}}'
    )
    row = normalize(payload, received_at=NOW)
    assert (row["event"], row["user_id"], row["anonymous_id"], row["group_id"], row["message_id"]) == (
        "Clicked \ufffd", "u\ufffd", "\ufffda", "g\ufffd", "m\ufffd-1"
    )
    assert json.loads(row["properties"]) == {"title\ufffd": "Hi \ufffd"}
    assert json.loads(row["traits"]) == {"name": "\ufffd"}
    assert json.loads(row["context"]) == {"page": {"title": ["\U0001f600 ok", "\ufffd"]}}  # a pair is kept
    pa.Table.from_pylist([row], schema=LANDING_SCHEMA)  # every column encodes as UTF-8


def test_a_surrogate_pair_split_into_two_code_points_is_joined_back() -> None:
    row = normalize(track(properties={"emoji": "\ud83d\ude00"}), received_at=NOW)
    assert json.loads(row["properties"]) == {"emoji": "\U0001f600"}


def test_a_huge_unknown_type_is_quoted_short() -> None:
    assert len(reason({"type": "x" * 10_000, "userId": "u"})) < 150


# Any code point, lone surrogates often (json.loads reads them from `\\ud800` escapes).
_chars = st.characters() | st.characters(categories=["Cs"])
_texts = st.text(_chars, max_size=20)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_texts, children, max_size=3),
    max_leaves=10,
)
_payloads = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["track", "identify", "page", "screen", "group", "alias", "other"]) | _json_values,
        "event": st.text(_chars, max_size=10) | _json_values,
        "name": st.text(_chars, max_size=10) | _json_values,
        "userId": st.text(_chars, max_size=10) | _json_values,
        "anonymousId": st.text(_chars, max_size=10) | _json_values,
        "previousId": st.text(_chars, max_size=10) | _json_values,
        "groupId": st.text(_chars, max_size=10) | _json_values,
        "messageId": st.text(_chars, max_size=10) | _json_values,
        "timestamp": st.datetimes().map(dt.datetime.isoformat) | st.text(_chars, max_size=25) | _json_values,
        "receivedAt": st.datetimes().map(dt.datetime.isoformat) | _json_values,
        "properties": st.dictionaries(st.text(_chars, max_size=5), _json_values, max_size=3) | _json_values,
        "traits": st.dictionaries(st.text(_chars, max_size=5), _json_values, max_size=3) | _json_values,
        "context": _json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(_payloads)
def test_any_payload_either_lands_as_valid_json_columns_or_raises_invalid_event(payload: dict[str, Any]) -> None:
    try:
        row = normalize(payload, received_at=NOW)
    except InvalidEvent as exc:
        assert exc.reason and "\n" not in exc.reason
        exc.reason.encode("utf-8")  # printable, and fits a JSON answer
        return
    pa.Table.from_pylist([row], schema=LANDING_SCHEMA)  # fits the landing schema (Parquet)
    encode_rows([row])  # and the collector's write-ahead log
    for column in ("properties", "traits", "context"):
        if row[column] is not None:
            json.loads(row[column], parse_constant=lambda name: pytest.fail(f"{column} holds {name}"))


@settings(max_examples=200, deadline=None)
@given(text=_texts, properties=st.dictionaries(_texts, _json_values, max_size=3))
def test_any_text_in_a_valid_event_lands_as_valid_unicode(text: str, properties: dict[str, Any]) -> None:
    payload = track(userId="u" + text, anonymousId=text + "a", event="e" + text, messageId="m" + text,
                    properties=properties, context={text: text})
    try:
        row = normalize(payload, received_at=NOW)
    except InvalidEvent as exc:  # e.g. NaN in the properties: a reason, never a crash
        assert exc.reason and "\n" not in exc.reason
        exc.reason.encode("utf-8")
        return
    pa.Table.from_pylist([row], schema=LANDING_SCHEMA)
    encode_rows([row])
