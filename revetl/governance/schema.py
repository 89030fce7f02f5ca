"""The JSON Schema a tracking plan writes for properties and traits, checked once and compiled once.

A plan's schemas use the part of JSON Schema that tracking plans need (Segment's and RudderStack's
plans use the same): `type` (one or a list), `enum`, `const`, `pattern`, `format` (date-time, date,
email, uri, uuid, ipv4), `minimum`/`maximum` (and their exclusive forms), `minLength`/`maxLength`,
`properties`/`required`/`additionalProperties`, `items`/`minItems`/`maxItems`, and the annotations
`description`, `title`, `examples`, `default`. Any other keyword is refused when the plan is read,
naming it, rather than silently not checked.

One difference from plain JSON Schema, as in Segment's Protocols: a key that an object's
`properties` does not list is an *unplanned property*, unless the object says
`additionalProperties: true` (or gives a schema for such keys).

`compile_schema` turns a schema into a function `check(value, found)` that appends each violation
as (kind, property path, sentence); the paths are fixed when it compiles, so a valid value costs one
type look-up (and a set look-up for an enum) per property, formats no text and appends nothing. Why not fastjsonschema: it stops at the first error, and
a plan must report every violation of an event with its kind (bench/tracking_plan_bench.py measured
both: RESULTS.md, "Tracking plans").
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable
from typing import Any

__all__ = ["KINDS", "Check", "Found", "compile_schema", "json_type", "schema_problems"]

# The kinds of violation, as Segment classifies them (README "Tracking plans").
KINDS = ("unplanned_event", "missing_required", "wrong_type", "value_not_allowed", "unplanned_property")

Found = list[tuple[str, str, str]]  # (kind, property path, sentence)
Check = Callable[[Any, Found], None]

_ANNOTATIONS = frozenset({"description", "title", "examples", "default", "$comment"})
_KEYWORDS = frozenset({
    "type", "enum", "const", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
}) | _ANNOTATIONS
_TYPES = ("string", "integer", "number", "boolean", "object", "array", "null")
_NUMBERS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_COUNTS = ("minLength", "maxLength", "minItems", "maxItems")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_IPV4 = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]*$")


def _date_time(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        return False
    return "T" in text or " " in text


def _date(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36


FORMATS: dict[str, Callable[[str], bool]] = {
    "date-time": _date_time,
    "date": _date,
    "email": lambda text: _EMAIL.match(text) is not None,
    "uri": lambda text: _URI.match(text) is not None,
    "uuid": _uuid,
    "ipv4": lambda text: _IPV4.match(text) is not None,
}


def schema_problems(schema: Any, loc: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """Every reason `schema` cannot be compiled: (key path inside it, sentence)."""
    if not isinstance(schema, dict):
        return [(loc, f"a schema is a mapping of JSON Schema keywords, not {_name(schema)}")]
    problems: list[tuple[tuple[str, ...], str]] = []
    for key, value in schema.items():
        here = (*loc, str(key))
        if key not in _KEYWORDS:
            problems.append((here, f"`{key}` is not a keyword revetl checks; use type, enum, const, pattern, "
                                   "format, minimum/maximum, minLength/maxLength, properties, required, "
                                   "additionalProperties, items, minItems/maxItems"))
        elif key == "type":
            types = value if isinstance(value, list) else [value]
            unknown = [t for t in types if t not in _TYPES]
            if unknown or not types:
                problems.append((here, f"`type` must be one of {', '.join(_TYPES)} (or a list of them), not {unknown or value!r}"))
        elif key == "enum" and not (isinstance(value, list) and value):
            problems.append((here, "`enum` must be a non-empty list of the allowed values"))
        elif key == "pattern":
            try:
                re.compile(value if isinstance(value, str) else "(")
            except re.error as exc:
                problems.append((here, f"`pattern` is not a valid regular expression: {exc}"))
        elif key == "format" and value not in FORMATS:
            problems.append((here, f"`format` must be one of {', '.join(FORMATS)}, not {value!r}"))
        elif key in _NUMBERS and (isinstance(value, bool) or not isinstance(value, (int, float))):
            problems.append((here, f"`{key}` must be a number"))
        elif key in _COUNTS and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            problems.append((here, f"`{key}` must be a whole number, 0 or more"))
        elif key == "required" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            problems.append((here, "`required` must be a list of property names"))
        elif key == "properties":
            if not isinstance(value, dict):
                problems.append((here, "`properties` must map each property name to its schema"))
            else:
                for name, sub in value.items():
                    problems += schema_problems(sub, (*here, str(name)))
        elif key == "additionalProperties" and not isinstance(value, bool):
            problems += schema_problems(value, here)
        elif key == "items":
            problems += schema_problems(value, here)
    return problems


def _name(value: Any) -> str:
    return {list: "a list", str: "a string", bool: "a boolean", type(None): "nothing"}.get(type(value), type(value).__name__)


def json_type(value: Any) -> str:
    """The JSON type name of a parsed value (`integer` for a Python int, `number` for a float)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else type(value).__name__


def _python_types(types: list[str]) -> frozenset[type]:
    python: list[type] = []
    for name in types:
        python += {"string": [str], "boolean": [bool], "object": [dict], "array": [list],
                   "null": [type(None)], "number": [int, float], "integer": [int]}[name]
    return frozenset(python)


def compile_schema(schema: dict[str, Any], path: str) -> Check:
    """A function `check(value, found)` appending every violation of `schema` by a value found at `path`
    (schema_problems found none). Paths are fixed here, once: a valid value formats no text."""
    tests: list[Check] = []
    types = schema.get("type")
    type_list = types if isinstance(types, list) else [types] if types else []
    if "properties" in schema or "required" in schema or type_list == ["object"]:
        tests.append(_object_check(schema, path))
    if "items" in schema:
        tests.append(_items_check(compile_schema(schema["items"], f"{path}[]")))
    tests += _value_checks(schema, path)
    if not type_list:
        return _all(tests) if tests else _anything
    exact = _python_types(type_list)
    # JSON Schema: 3.0 is an integer; bool is never a number (Python says it is an int: `exact` is by type).
    loose = "integer" in type_list and "number" not in type_list
    wanted = type_list[0] if len(type_list) == 1 else " or ".join(type_list)
    rest = _all(tests) if tests else None

    def check(value: Any, found: Found) -> None:
        kind = type(value)
        if kind not in exact and not (loose and kind is float and value.is_integer()):
            found.append(("wrong_type", path, f"`{path}` is {json_type(value)}, the plan says {wanted}"))
        elif rest is not None:
            rest(value, found)

    return check


def _all(tests: list[Check]) -> Check:
    if len(tests) == 1:
        return tests[0]

    def check(value: Any, found: Found) -> None:
        for test in tests:
            test(value, found)

    return check


def _anything(value: Any, found: Found) -> None:
    return None


def _object_check(schema: dict[str, Any], path: str) -> Check:
    planned = {name: compile_schema(sub, f"{path}.{name}") for name, sub in (schema.get("properties") or {}).items()}
    required = tuple(schema.get("required") or ())
    extra = schema.get("additionalProperties", False)
    extra_check = compile_schema(extra, f"{path}.*") if isinstance(extra, dict) else None
    extra_allowed = extra is True

    def check(value: Any, found: Found) -> None:
        if type(value) is not dict:
            return  # the type test reports a non-object when `type: object` is given
        for name in required:
            if name not in value:
                found.append(("missing_required", f"{path}.{name}", f"`{path}.{name}` is required and missing"))
        get = planned.get
        for name, item in value.items():
            test = get(name)
            if test is not None:
                test(item, found)
            elif extra_check is not None:
                extra_check(item, found)
            elif not extra_allowed:
                found.append(("unplanned_property", f"{path}.{name}", f"`{path}.{name}` is not in the plan"))

    return check


def _items_check(item_check: Check) -> Check:
    def check(value: Any, found: Found) -> None:
        if type(value) is list:
            for item in value:
                item_check(item, found)

    return check


def _value_checks(schema: dict[str, Any], path: str) -> list[Check]:
    """enum, const, pattern, format, bounds: each a `value_not_allowed` when broken."""
    checks: list[Check] = []

    def add(applies: Callable[[Any], bool], allowed: Callable[[Any], bool], says: str) -> None:
        def check(value: Any, found: Found) -> None:
            if applies(value) and not allowed(value):
                found.append(("value_not_allowed", path, f"`{path}` is {_shown(value)}, the plan allows {says}"))

        checks.append(check)

    def is_text(value: Any) -> bool:
        return type(value) is str

    def is_number(value: Any) -> bool:
        return type(value) in (int, float)

    if "enum" in schema:
        checks.append(_enum_check(schema["enum"], path))
    if "const" in schema:
        const = schema["const"]
        add(lambda v: True, lambda v: _same(v, const), f"only {_shown(const)}")
    if "pattern" in schema:
        pattern, text = re.compile(schema["pattern"]).search, schema["pattern"]

        def matches(value: Any, found: Found) -> None:
            if type(value) is str and pattern(value) is None:
                found.append(("value_not_allowed", path, f"`{path}` is {_shown(value)}, the plan allows text "
                                                         f"matching /{text}/"))

        checks.append(matches)
    if "format" in schema:
        valid = FORMATS[schema["format"]]
        add(is_text, valid, f"a {schema['format']}")
    bounds = {
        "minimum": (lambda v, b: v >= b, "{} or more"), "maximum": (lambda v, b: v <= b, "{} or less"),
        "exclusiveMinimum": (lambda v, b: v > b, "more than {}"), "exclusiveMaximum": (lambda v, b: v < b, "less than {}"),
    }
    for key, (holds, says) in bounds.items():
        if key in schema:
            bound = schema[key]
            add(is_number, lambda v, b=bound, h=holds: h(v, b), says.format(bound))
    lengths = {"minLength": (is_text, min, "at least {} characters"), "maxLength": (is_text, max, "at most {} characters"),
               "minItems": (lambda v: type(v) is list, min, "at least {} items"),
               "maxItems": (lambda v: type(v) is list, max, "at most {} items")}
    for key, (applies, side, says) in lengths.items():
        if key in schema:
            limit = schema[key]
            if side is min:
                add(applies, lambda v, n=limit: len(v) >= n, says.format(limit))
            else:
                add(applies, lambda v, n=limit: len(v) <= n, says.format(limit))
    return checks


def _enum_check(options: list[Any], path: str) -> Check:
    """`enum`: a set look-up when every option is text (most plans), else a comparison by JSON type."""
    says = "one of " + ", ".join(_shown(o) for o in options[:8]) + (", ..." if len(options) > 8 else "")

    def refuse(value: Any, found: Found) -> None:
        found.append(("value_not_allowed", path, f"`{path}` is {_shown(value)}, the plan allows {says}"))

    if all(type(o) is str for o in options):
        texts = frozenset(options)

        def check(value: Any, found: Found) -> None:
            if type(value) is not str or value not in texts:
                refuse(value, found)

        return check

    def check_any(value: Any, found: Found) -> None:
        if not any(_same(value, option) for option in options):
            refuse(value, found)

    return check_any


def _same(value: Any, other: Any) -> bool:
    return type(value) is type(other) and value == other or (
        type(value) in (int, float) and type(other) in (int, float) and value == other)


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 40 else text[:37] + "..."
