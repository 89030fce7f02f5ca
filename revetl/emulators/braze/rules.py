"""What Braze accepts in a /users/track object: identifiers, emails, edits, events, purchases.

Each check returns the minor error Braze puts in its 201 answer for that object, or None. Texts
from real responses: the missing-identifier and invalid-email errors; from the docs: the dummy
external_id error. Ours: the errors for bad attribute names, edits, events and purchases.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["CONTACTS", "DIRECTIVES", "EMAIL", "INVALID_EMAIL", "LONGEST_DUMMY", "edit_problem", "event_problem",
           "identifier_problem", "purchase_problem", "unique"]

NO_IDENTIFIER = "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required"
INVALID_EMAIL = "The value provided for the 'email' field is not a valid email."
DUMMY_EXTERNAL_ID = "provided external_id is blacklisted and disallowed"
# Braze's spam blocking refuses placeholder ids that would merge unrelated people into one profile.
DUMMY_IDS = frozenset({"", "null", "undefined", "none", "nil", "n/a", "na", "0", "-1", "unknown", "anonymous"})
LONGEST_DUMMY = max(map(len, DUMMY_IDS))
# Keys of an attributes object that are directives or identifiers, never profile attributes.
DIRECTIVES = frozenset(
    {"external_id", "braze_id", "user_alias", "_update_existing_only", "push_token_import", "_merge_objects"}
)
CONTACTS = frozenset({"email", "phone"})  # attributes that also identify a profile, so are indexed
ALIAS_KEYS = ("alias_name", "alias_label")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+\Z")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
CURRENCY = re.compile(r"[A-Za-z]{3}\Z")


def unique(values: list[Any]) -> list[Any]:
    """Values in first-seen order without repeats (JSON equality)."""
    try:
        return list(dict.fromkeys(values))
    except TypeError:  # objects or arrays inside the array: unhashable, compare one by one
        kept: list[Any] = []
        for value in values:
            if value not in kept:
                kept.append(value)
        return kept


def identifier_problem(obj: dict[str, Any]) -> str | None:
    external_id = obj.get("external_id")
    if external_id is not None:
        if type(external_id) is not str:
            return "'external_id' must be a string"
        if external_id.strip().lower() in DUMMY_IDS:
            return DUMMY_EXTERNAL_ID
        return None
    if obj.get("braze_id") is not None:
        return None if isinstance(obj["braze_id"], str) else "'braze_id' must be a string"
    alias = obj.get("user_alias")
    if alias is not None:
        ok = isinstance(alias, dict) and all(isinstance(alias.get(k), str) and alias[k] for k in ALIAS_KEYS)
        return None if ok else "'user_alias' must hold 'alias_name' and 'alias_label' strings"
    if obj.get("email") is None and obj.get("phone") is None:
        return NO_IDENTIFIER
    return None


def _email_problem(obj: dict[str, Any]) -> str | None:
    email = obj.get("email")
    if email is not None and not (type(email) is str and EMAIL.match(email)):
        return INVALID_EMAIL
    return None


def edit_problem(key: str, value: dict[str, Any]) -> str | None:
    """What is wrong with an {"add", "remove"} or {"inc"} edit, if anything."""
    if "add" in value or "remove" in value:
        if any(op in value and type(value[op]) is not list for op in ("add", "remove")):
            return f"'{key}': 'add' and 'remove' must be arrays"
    elif "inc" in value and len(value) == 1 and type(value["inc"]) is not int:
        return f"'{key}': 'inc' must be an integer"
    return None


def event_problem(obj: dict[str, Any]) -> str | None:
    """What is wrong with an events object, if anything."""
    return identifier_problem(obj) or _email_problem(obj) or _event_fields(obj) or _time_problem(obj)


def purchase_problem(obj: dict[str, Any]) -> str | None:
    """What is wrong with a purchases object, if anything."""
    return identifier_problem(obj) or _email_problem(obj) or _purchase_fields(obj) or _time_problem(obj)


def _event_fields(obj: dict[str, Any]) -> str | None:
    if not isinstance(obj.get("name"), str) or not obj["name"]:
        return "'name' is required and must be a string"
    return None


def _purchase_fields(obj: dict[str, Any]) -> str | None:
    if not isinstance(obj.get("product_id"), str) or not obj["product_id"]:
        return "'product_id' is required and must be a string"
    if not isinstance(obj.get("currency"), str) or not CURRENCY.match(obj["currency"]):
        return "'currency' is required and must be an ISO 4217 code"
    if isinstance(obj.get("price"), bool) or not isinstance(obj.get("price"), (int, float)):
        return "'price' is required and must be a number"
    quantity = obj.get("quantity", 1)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 100:
        return "'quantity' must be an integer from 1 to 100"
    return None


def _time_problem(obj: dict[str, Any]) -> str | None:
    if not isinstance(obj.get("time"), str) or not ISO_DATE.match(obj["time"]):
        return "'time' is required and must be an ISO 8601 time"
    return None
