"""The condition language of a route's `where:`: small, documented, evaluated in-process.

    where: event = 'Payment Processed' and properties.revenue >= 100 and context.library.name != 'analytics.js'

Grammar (keywords are case-insensitive):

    condition  := or
    or         := and ('or' and)*
    and        := not ('and' not)*
    not        := 'not' not | comparison
    comparison := value [op value | 'in' list | 'not' 'in' list | 'contains' value | 'is' ['not'] 'null']
    op         := '=' | '==' | '!=' | '<>' | '<' | '<=' | '>' | '>='
    value      := path | 'text' | "text" | number | true | false | null | '(' condition ')'
    list       := '[' value (',' value)* ']'
    path       := name ('.' name)*      (a name with other characters: `properties.\"first name\"`)

A path starts at one of the event's fields: `type`, `event`, `source`, `message_id`, `user_id`,
`anonymous_id`, `group_id`, `previous_id`, `properties`, `traits`, `context` (dotted into the
JSON). A path that is missing is null. As in SQL, a comparison with null is false (`is null`
asks for it), `!=` included; comparing a number with text is false rather than an error, so a
sender's stray type never stops a route. `contains` is true when a text holds a text, or a list
holds a value. There are no functions and no loops: a condition costs a few dictionary lookups.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Condition", "ExpressionError", "ROOTS", "compile_condition"]

ROOTS = frozenset({"type", "event", "source", "message_id", "user_id", "anonymous_id", "group_id", "previous_id",
                   "properties", "traits", "context", "timestamp", "received_at"})

Test = Callable[[Mapping[str, Any]], Any]

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
    | (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<op>==|!=|<>|<=|>=|=|<|>|\(|\)|\[|\]|,|\.)
    | (?P<name>[A-Za-z_$][A-Za-z0-9_$-]*)
    )""", re.X)
_KEYWORDS = {"and", "or", "not", "in", "contains", "is", "null", "true", "false"}
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "==": operator.eq, "!=": operator.ne, "<>": operator.ne,
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


class ExpressionError(ValueError):
    """A condition that does not parse; `column` is where (1-based)."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"{message} (at column {column})")
        self.column = column


@dataclass(frozen=True)
class _Token:
    kind: str  # number, string, op, name, keyword, end
    text: str
    column: int
    value: Any = None


def _tokens(text: str) -> list[_Token]:
    found, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            column = position + len(text[position:]) - len(text[position:].lstrip()) + 1
            raise ExpressionError(f"unexpected character {text[column - 1]!r}", column)
        kind = match.lastgroup or ""
        raw = match.group(kind)
        column = match.start(kind) + 1
        if kind == "number":
            found.append(_Token(kind, raw, column, float(raw) if any(c in raw for c in ".eE") else int(raw)))
        elif kind == "string":
            found.append(_Token(kind, raw, column, re.sub(r"\\(.)", r"\1", raw[1:-1])))
        elif kind == "name" and raw.lower() in _KEYWORDS:
            found.append(_Token("keyword", raw.lower(), column))
        else:
            found.append(_Token(kind, raw, column))
        position = match.end()
    found.append(_Token("end", "", len(text) + 1))
    return found


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.index = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.index]

    def take(self, kind: str, text: str | None = None) -> _Token | None:
        token = self.token
        if token.kind == kind and (text is None or token.text == text):
            self.index += 1
            return token
        return None

    def expect(self, kind: str, text: str, what: str) -> None:
        if self.take(kind, text) is None:
            raise ExpressionError(f"expected {what}, found {self._shown()}", self.token.column)

    def _shown(self) -> str:
        return "the end" if self.token.kind == "end" else f"`{self.token.text}`"

    def parse(self) -> Test:
        test = self.disjunction()
        if self.token.kind != "end":
            raise ExpressionError(f"unexpected {self._shown()}; join conditions with `and` / `or`", self.token.column)
        return test

    def disjunction(self) -> Test:
        parts = [self.conjunction()]
        while self.take("keyword", "or"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else (lambda e: any(_true(p(e)) for p in parts))

    def conjunction(self) -> Test:
        parts = [self.negation()]
        while self.take("keyword", "and"):
            parts.append(self.negation())
        return parts[0] if len(parts) == 1 else (lambda e: all(_true(p(e)) for p in parts))

    def negation(self) -> Test:
        if self.take("keyword", "not"):
            inner = self.negation()
            return lambda e: not _true(inner(e))
        return self.comparison()

    def comparison(self) -> Test:
        left = self.value()
        token = self.token
        if token.kind == "op" and token.text in _COMPARE:
            self.index += 1
            return _compare(_COMPARE[token.text], left, self.value())
        if self.take("keyword", "in"):
            return _member(left, self.listing())
        if token.kind == "keyword" and token.text == "not" and self.tokens[self.index + 1].text == "in":
            self.index += 2
            inside = _member(left, self.listing())
            return lambda e: (None if left(e) is None else not inside(e))
        if self.take("keyword", "contains"):
            return _contains(left, self.value())
        if self.take("keyword", "is"):
            negated = self.take("keyword", "not") is not None
            self.expect("keyword", "null", "`null` after `is`")
            return (lambda e: left(e) is not None) if negated else (lambda e: left(e) is None)
        return left

    def listing(self) -> list[Test]:
        self.expect("op", "[", "a list such as ['a', 'b']")
        items = [self.value()]
        while self.take("op", ","):
            items.append(self.value())
        self.expect("op", "]", "`]` to close the list")
        return items

    def value(self) -> Test:
        token = self.token
        if token.kind in ("number", "string"):
            self.index += 1
            constant = token.value
            return lambda e: constant
        if token.kind == "keyword" and token.text in ("true", "false", "null"):
            self.index += 1
            constant = {"true": True, "false": False, "null": None}[token.text]
            return lambda e: constant
        if self.take("op", "("):
            inner = self.disjunction()
            self.expect("op", ")", "`)`")
            return inner
        if token.kind == "name":
            return self.path()
        raise ExpressionError(f"expected a value or a field, found {self._shown()}", token.column)

    def path(self) -> Test:
        root = self.token
        self.index += 1
        if root.text not in ROOTS:
            raise ExpressionError(f"unknown field `{root.text}`; a path starts at one of {', '.join(sorted(ROOTS))}",
                                  root.column)
        keys = [root.text]
        while self.take("op", "."):
            part = self.token
            if part.kind in ("name", "keyword", "number") or part.kind == "string":
                self.index += 1
                keys.append(str(part.value) if part.kind == "string" else part.text)
            else:
                raise ExpressionError(f"expected a key after `.`, found {self._shown()}", part.column)
        return _getter(tuple(keys))


def _getter(keys: tuple[str, ...]) -> Test:
    def get(event: Mapping[str, Any]) -> Any:
        value: Any = event
        for key in keys:
            if isinstance(value, Mapping):
                value = value.get(key)
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                return None
        return value
    return get


def _comparable(left: Any, right: Any) -> bool:
    """Numbers with numbers (not booleans), text with text, booleans with booleans."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool)
    numbers = (int, float)
    return (isinstance(left, numbers) and isinstance(right, numbers)) or (isinstance(left, str) and isinstance(right, str))


def _compare(compare: Callable[[Any, Any], bool], left: Test, right: Test) -> Test:
    def test(event: Mapping[str, Any]) -> bool | None:
        a, b = left(event), right(event)
        if a is None or b is None:
            return None  # SQL's unknown: neither this nor its negation holds
        if not _comparable(a, b):
            return compare is operator.ne  # a number is never equal to a text, nor less or more
        return compare(a, b)
    return test


def _member(left: Test, items: list[Test]) -> Test:
    def test(event: Mapping[str, Any]) -> bool | None:
        value = left(event)
        if value is None:
            return None
        return any(_comparable(value, item(event)) and value == item(event) for item in items)
    return test


def _contains(left: Test, right: Test) -> Test:
    def test(event: Mapping[str, Any]) -> bool:
        whole, part = left(event), right(event)
        if isinstance(whole, str) and isinstance(part, str):
            return part in whole
        return isinstance(whole, list) and any(_comparable(item, part) and item == part for item in whole)
    return test


def _true(value: Any) -> bool:
    """A condition's verdict: unknown (null) is false; a bare field holds when it is a true value."""
    return value is not None and bool(value)


@dataclass(frozen=True)
class Condition:
    """A compiled `where:`; call it on an event (a mapping of the fields in ROOTS)."""

    text: str
    test: Test

    def __call__(self, event: Mapping[str, Any]) -> bool:
        return _true(self.test(event))


def compile_condition(text: str) -> Condition:
    """Parse `text`; ExpressionError (with the column) when it is not a condition."""
    if not text.strip():
        raise ExpressionError("the condition is empty", 1)
    return Condition(text, _Parser(text).parse())
