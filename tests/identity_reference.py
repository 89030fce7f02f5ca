"""A plain-Python union-find of the identity rules (DESIGN 3), to check the dbt models against.

Deliberately written from the rules, not from the SQL: same inputs (wire payloads), same outputs
(partition of identifiers, set of conflicts).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

BLOCKED = {"", "null", "undefined", "none", "nil", "0", "anonymous", "00000000-0000-0000-0000-000000000000"}
# Trimmed from both ends before the blocked check: what Python calls whitespace (Unicode White_Space
# and U+001C-U+001F) and the invisible U+180E, U+200B-U+200D, U+2060, U+FEFF (README, rule 2).
BLANK = "".join(c for c in map(chr, range(0x110000)) if c.isspace()) + "\u180e\u200b\u200c\u200d\u2060\ufeff"

Identifier = tuple[str, str]


def _clean(value: Any, blocked: set[str]) -> str | None:
    if value is None:
        return None
    text = str(value)
    return None if text.strip(BLANK).lower() in blocked else text


def _clean_lower(value: Any, blocked: set[str]) -> str | None:
    """Emails and extra identifiers: JSON strings only (false, 42, objects, lists are not identifiers)."""
    if not isinstance(value, str):
        return None
    return _clean(value.strip(BLANK).lower(), blocked)


def resolve(
    payloads: list[dict[str, Any]],
    max_user_ids: int = 1,
    max_anonymous_ids: int = 50,
    extra_identifiers: tuple[str, ...] = (),
    blocked_values: tuple[str, ...] = (),
) -> tuple[set[frozenset[Identifier]], set[Identifier]]:
    """(profiles as sets of identifiers, conflicting identifiers) for events in arrival order."""
    blocked = BLOCKED | {v.strip(BLANK).lower() for v in blocked_values}
    seen: set[str] = set()
    events = []
    for payload in payloads:  # the first copy of a message_id wins
        if payload["messageId"] not in seen:
            seen.add(payload["messageId"])
            events.append(payload)

    known_user_ids = {u for e in events if (u := _clean(e.get("userId"), blocked))}
    per_event: list[tuple[str | None, str | None, set[Identifier]]] = []
    for e in events:
        user_id = _clean(e.get("userId"), blocked)
        anonymous_id = _clean(e.get("anonymousId"), blocked)
        ids: set[Identifier] = set()
        if user_id:
            ids.add(("user_id", user_id))
        if anonymous_id:
            ids.add(("anonymous_id", anonymous_id))
        traits = (e.get("traits") or {}) if e["type"] != "group" else {}
        context_traits = (e.get("context") or {}).get("traits") or {}
        for key in ("email", *extra_identifiers):
            for source in (traits, context_traits):
                value = _clean_lower(source.get(key), blocked)
                if value:
                    ids.add((key, value))
        if e["type"] == "alias":
            previous = _clean(e.get("previousId"), blocked)
            if previous:
                ids.add(("user_id" if previous in known_user_ids else "anonymous_id", previous))
        per_event.append((user_id, anonymous_id, ids))

    users_of: dict[Identifier, set[str]] = defaultdict(set)
    anons_of: dict[Identifier, set[str]] = defaultdict(set)
    for user_id, anonymous_id, ids in per_event:
        for identifier in ids:
            if user_id:
                users_of[identifier].add(user_id)
            if anonymous_id:
                anons_of[identifier].add(anonymous_id)
    conflicts = set()
    for user_id, anonymous_id, ids in per_event:
        for identifier in ids:
            kind = identifier[0]
            if kind == "user_id":
                continue
            if len(users_of[identifier]) > max_user_ids:
                conflicts.add(identifier)
            elif kind != "anonymous_id" and len(anons_of[identifier]) > max_anonymous_ids:
                conflicts.add(identifier)

    parent: dict[Identifier, Identifier] = {}

    def find(x: Identifier) -> Identifier:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for _, _, ids in per_event:
        usable = sorted(ids - conflicts)
        for identifier in usable:
            find(identifier)
        for other in usable[1:]:
            parent[find(other)] = find(usable[0])
    groups: dict[Identifier, set[Identifier]] = defaultdict(set)
    for identifier in list(parent):
        groups[find(identifier)].add(identifier)
    return {frozenset(g) for g in groups.values()}, conflicts


def wire(kind: str, message_id: str, **fields: Any) -> dict[str, Any]:
    """A wire payload with a fixed timestamp unless given."""
    payload = {"type": kind, "messageId": message_id, "timestamp": "2026-01-01T00:00:00Z", **fields}
    if isinstance(payload["timestamp"], dt.datetime):
        payload["timestamp"] = payload["timestamp"].isoformat()
    return payload
