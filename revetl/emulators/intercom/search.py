"""`POST /contacts/search` for the Intercom emulator: Intercom's query language and cursor pages.

A query is one filter `{field, operator, value}` or a group `{operator: AND|OR, value: [...]}`
nested at most two levels, at most 15 filters a group (Intercom's "Nesting & Limitations").
Supported fields are the identifying ones a sync searches on (id, external_id, email, name,
role, phone, tag_id, custom_attributes.NAME); operators are those Intercom lists for strings.
Pages hold `per_page` contacts (default 50, at most 150) and continue with an opaque cursor.

What a contact must be to be found — already indexed (created at least `search_lag` seconds
ago) — is the caller's business: `search` only receives the contacts that are visible.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["SearchError", "search"]

FIELDS = frozenset({"id", "external_id", "email", "name", "role", "phone", "tag_id"})
STRING_OPERATORS = frozenset({"=", "!=", "IN", "NIN", "~", "!~", "^", "$"})
MAX_DEPTH = 2
MAX_FILTERS = 15
DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 150

Getter = Callable[[Any, str], Any]  # (contact, field) -> value, or a set of values (tag ids)


class SearchError(ValueError):
    """A query Intercom would refuse: `code` and `message` go into the error list."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _compile(query: Any, depth: int) -> Callable[[Any, Getter], bool]:
    if not isinstance(query, dict):
        raise SearchError("parameter_invalid", "query must be an object")
    operator = query.get("operator")
    if operator in ("AND", "OR"):
        parts = query.get("value")
        if not isinstance(parts, list) or not parts:
            raise SearchError("parameter_invalid", f"{operator} needs a non-empty array of filters")
        if depth >= MAX_DEPTH:
            raise SearchError("parameter_invalid", "a query nests at most 2 filter groups")
        if len(parts) > MAX_FILTERS:
            raise SearchError("parameter_invalid", f"a filter group holds at most {MAX_FILTERS} filters")
        tests = [_compile(part, depth + 1) for part in parts]
        if operator == "AND":
            return lambda contact, get: all(test(contact, get) for test in tests)
        return lambda contact, get: any(test(contact, get) for test in tests)
    return _filter(query)


def _filter(query: dict[str, Any]) -> Callable[[Any, Getter], bool]:
    field, operator, value = query.get("field"), query.get("operator"), query.get("value")
    if not isinstance(field, str) or not (field in FIELDS or field.startswith("custom_attributes.")):
        raise SearchError("parameter_invalid", f"{field!r} is not a searchable field")
    if operator not in STRING_OPERATORS:
        raise SearchError("parameter_invalid", f"operator {operator!r} is not supported for {field}")
    if field == "tag_id" and operator not in ("=", "!="):
        raise SearchError("parameter_invalid", "tag_id supports only the = and != operators")
    many = operator in ("IN", "NIN")
    if many != isinstance(value, list):
        raise SearchError("parameter_invalid", f"operator {operator} needs {'an array' if many else 'a single value'}")

    def test(contact: Any, get: Getter) -> bool:
        have = get(contact, field)
        if isinstance(have, (set, frozenset)):  # tag ids: = means "has this tag"
            return (value in have) == (operator == "=")
        return _compare(have, operator, value)

    return test


def _compare(have: Any, operator: str, value: Any) -> bool:
    if operator == "=":
        return have == value
    if operator == "!=":
        return have != value
    if operator == "IN":
        return have in value
    if operator == "NIN":
        return have not in value
    if not isinstance(have, str) or not isinstance(value, str):
        return False
    if operator == "~":
        return value in have
    if operator == "!~":
        return value not in have
    if operator == "^":
        return have.startswith(value)
    return have.endswith(value)  # "$"


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset(cursor: Any) -> int:
    if cursor in (None, ""):
        return 0
    try:
        text = base64.urlsafe_b64decode(str(cursor).encode()).decode()
        return int(text.split(":", 1)[1])
    except (ValueError, IndexError):
        raise SearchError("parameter_invalid", "starting_after is not a cursor this search returned") from None


def search(body: Any, contacts: Sequence[Any], get: Getter, render: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    """The `contact_list` page answering `body` over `contacts` (already restricted to visible ones)."""
    if not isinstance(body, dict) or "query" not in body:
        raise SearchError("parameter_invalid", "query is required")
    sort = body.get("sort")
    if isinstance(sort, dict) and sort.get("order") not in (None, "ascending", "descending"):
        raise SearchError("invalid_sort_order",
                          f"Invalid sort order '{sort.get('order')}'. Must be one of: ascending, descending")
    test = _compile(body["query"], 0)
    pagination = body.get("pagination") or {}
    per_page = pagination.get("per_page", DEFAULT_PER_PAGE) if isinstance(pagination, dict) else DEFAULT_PER_PAGE
    if isinstance(per_page, bool) or not isinstance(per_page, int) or not 1 <= per_page <= MAX_PER_PAGE:
        raise SearchError("parameter_invalid", f"per_page must be an integer from 1 to {MAX_PER_PAGE}")
    start = _offset(pagination.get("starting_after") if isinstance(pagination, dict) else None)
    found = [contact for contact in contacts if test(contact, get)]
    page = found[start : start + per_page]
    total_pages = max(1, -(-len(found) // per_page)) if found else 0
    pages: dict[str, Any] = {"type": "pages", "page": start // per_page + 1, "per_page": per_page,
                             "total_pages": total_pages}
    if start + per_page < len(found):
        pages["next"] = {"per_page": per_page, "starting_after": _cursor(start + per_page)}
    return {"type": "list", "data": [render(contact) for contact in page], "total_count": len(found), "pages": pages}
