"""The blank rule for identifiers: one set of characters, the same in Python and in the dbt models."""

from __future__ import annotations

import datetime as dt

import pytest
from wh import build, land, partition

from revetl.errors import InvalidEvent
from revetl.landing.events import normalize
from revetl.landing.identifiers import BLANK, is_blank, strip_blank

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
INVISIBLE = "\u180e\u200b\u200c\u200d\u2060\ufeff"
# Characters next to each range of BLANK and other look-alikes that are not blank.
NEIGHBOURS = (
    "\x08\x0e\x1b!\x7f\x84\x86\xa1\xad\u167f\u1681\u180d\u180f\u1fff\u200e\u200f\u2027\u202a\u202e"
    "\u2030\u205e\u2061\u2062\u2fff\u3001\ufefe\uff00"
)


def test_blank_is_python_whitespace_plus_six_invisible_characters() -> None:
    whitespace = {c for c in map(chr, range(0x110000)) if c.isspace()}
    assert len(whitespace) == 29
    assert set(BLANK) == whitespace | set(INVISIBLE) and len(BLANK) == len(set(BLANK)) == 35
    assert not set(NEIGHBOURS) & set(BLANK)


def test_only_the_ends_are_trimmed() -> None:
    assert strip_blank("\u200b\t a\u00a0b \u3000\ufeff") == "a\u00a0b"
    assert is_blank(None) and is_blank("") and is_blank("\u2028\u200b\r\n")
    assert not is_blank("\u00adx")


@pytest.mark.parametrize("blank", list(BLANK), ids=lambda c: f"U+{ord(c):04X}")
def test_an_event_with_only_blank_identifiers_is_rejected(blank: str) -> None:
    with pytest.raises(InvalidEvent, match="neither `userId` nor `anonymousId`"):
        normalize({"type": "page", "userId": blank * 2, "anonymousId": f"{blank} {blank}"}, received_at=NOW)
    with pytest.raises(InvalidEvent, match="needs a `previousId`"):
        normalize({"type": "alias", "userId": "u1", "previousId": blank}, received_at=NOW)
    with pytest.raises(InvalidEvent, match="needs a `groupId`"):
        normalize({"type": "group", "userId": "u1", "groupId": blank}, received_at=NOW)


@pytest.mark.parametrize("other", list(NEIGHBOURS), ids=lambda c: f"U+{ord(c):04X}")
def test_a_character_outside_the_set_is_an_identifier(other: str) -> None:
    row = normalize({"type": "alias", "userId": other, "previousId": other}, received_at=NOW)
    assert row["user_id"] == row["previous_id"] == other


def _events_for(index: int, char: str) -> list[dict]:
    return [
        {"type": "identify", "messageId": f"ws-{index}-1", "anonymousId": f"ws{index}", "userId": char,
         "traits": {"email": f"{char}WS{index}@x.com{char}"}},
        {"type": "page", "messageId": f"ws-{index}-2", "userId": f"wsu{index}",
         "anonymousId": f"{char}undefined{char}"},
    ]


@pytest.mark.slow
def test_sql_and_python_trim_and_block_every_character_alike(project) -> None:
    """Each character of BLANK and each neighbour as a user_id, around an email and around `undefined`:
    the dbt models keep exactly the identifiers the Python rule keeps, trimmed alike."""
    chars = BLANK + NEIGHBOURS
    land(project, [event for i, c in enumerate(chars) for event in _events_for(i, c)])
    build(project, select="+identity_graph")
    profiles, _ = partition(project)
    got = {i: next(p for p in profiles if ("anonymous_id", f"ws{i}") in p) for i in range(len(chars))}
    for i, char in enumerate(chars):
        expected = {("anonymous_id", f"ws{i}"), ("email", strip_blank(f"{char}WS{i}@x.com{char}").lower())}
        if not is_blank(char):
            expected.add(("user_id", char))
        assert got[i] == expected, f"U+{ord(char):04X}"
        padded = f"{char}undefined{char}"
        blocked = strip_blank(padded).lower() == "undefined"
        assert (("anonymous_id", padded) in set().union(*profiles)) is not blocked, f"U+{ord(char):04X}"
