"""The `where:` language: what holds, what does not, and where a broken condition breaks."""

from __future__ import annotations

import pytest

from revetl.routes.expression import ExpressionError, compile_condition

EVENT = {
    "type": "track", "event": "Payment Processed", "source": "web", "user_id": "u-1", "anonymous_id": None,
    "properties": {"revenue": 120.5, "currency": "EUR", "tags": ["vip", "eu"], "first name": "Ann", "coupon": None},
    "context": {"library": {"name": "analytics-python"}}, "traits": None,
}


@pytest.mark.parametrize("text, expected", [
    ("event = 'Payment Processed'", True),
    ("event == \"Payment Processed\" and properties.revenue >= 100", True),
    ("properties.revenue > 200 or properties.currency in ['EUR', 'USD']", True),
    ("not (properties.revenue < 100)", True),
    ("properties.currency not in ['USD']", True),
    ("properties.tags contains 'vip'", True),
    ("context.library.name contains 'python'", True),
    ("properties.\"first name\" = 'Ann'", True),
    ("properties.coupon is null and properties.missing is null", True),
    ("user_id is not null", True),
    ("source = 'server'", False),
    # SQL's null: a missing field is neither equal nor unequal to anything.
    ("properties.missing = 1", False),
    ("properties.missing != 1", False),
    ("anonymous_id != 'x'", False),
    # A number never equals a text (no error either): a stray type does not stop a route.
    ("properties.revenue = '120.5'", False),
    ("properties.revenue != '120.5'", True),
    ("properties.currency > 3", False),
    ("TYPE = 'track' AND Event IN ['Payment Processed']".replace("Event", "event").replace("TYPE", "type"), True),
    ("properties.tags.0 = 'vip'", True),
])
def test_conditions_evaluate_as_documented(text: str, expected: bool) -> None:
    assert compile_condition(text)(EVENT) is expected


@pytest.mark.parametrize("text, message, column", [
    ("event = ", "expected a value or a field, found the end", 9),
    ("evnt = 'x'", "unknown field `evnt`", 1),
    ("event = 'x' properties.a = 1", "unexpected `properties`", 13),
    ("event in 'x'", "expected a list", 10),
    ("event = 'x' & 1", "unexpected character '&'", 13),
    ("properties.a is 3", "expected `null` after `is`", 17),
    ("(event = 'x'", "expected `)`", 13),
    ("   ", "the condition is empty", 1),
])
def test_a_broken_condition_names_what_and_where(text: str, message: str, column: int) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_condition(text)
    assert message in str(caught.value)
    assert caught.value.column == column
