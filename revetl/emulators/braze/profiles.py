"""The profiles of an emulated Braze workspace, and how each valid /users/track object changes them.

Every object needs one of external_id, braze_id, user_alias, email, phone (precedence in that
order). external_id creates the user; user_alias only updates unless `_update_existing_only` is
false; an email or phone alone updates the most recently updated profile with it, else creates.
Attribute values: `null` unsets, `{"add": [...], "remove": [...]}` edits an array (an added value
moves to the end, arrays hold unique values), `{"inc": n}` increments, arrays are set as unique
values truncated to `max_array_length` (Braze truncates silently).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from revetl.emulators.braze.rules import (
    CONTACTS,
    DIRECTIVES,
    EMAIL,
    INVALID_EMAIL,
    LONGEST_DUMMY,
    edit_problem,
    event_problem,
    identifier_problem,
    purchase_problem,
    unique,
)

__all__ = ["Profiles", "User"]

# Attribute name -> True when plain (not an identifier, directive or contact), for names already
# found valid: a sync repeats the same few names in every object, so one lookup replaces the checks.
_NAMES: dict[str, bool] = {}
_SCALARS = frozenset({str, int, float, bool})


class User:
    """One Braze profile. Aliases, events and purchases stay empty (None) until a request writes them:
    a sync creates a million profiles with attributes only."""

    __slots__ = ("braze_id", "external_id", "aliases", "attributes", "events", "purchases", "updated")

    def __init__(self, braze_id: str, external_id: str | None) -> None:
        self.braze_id, self.external_id = braze_id, external_id
        self.aliases: tuple[tuple[str, str], ...] = ()
        self.attributes: dict[str, Any] = {}
        self.events: dict[str, dict[str, Any]] | None = None
        self.purchases: dict[str, int] | None = None
        self.updated = 0

    def as_dict(self) -> dict[str, Any]:
        return {"braze_id": self.braze_id, "external_id": self.external_id,
                "user_aliases": [{"alias_label": label, "alias_name": name} for label, name in self.aliases],
                "attributes": self.attributes, "custom_events": self.events or {},
                "purchases": self.purchases or {}}


class Profiles:
    """Every profile, indexed by each identifier; `attributes`, `events` and `purchases` check one
    object of their array and apply it, returning its minor error or None."""

    def __init__(self, max_array_length: int) -> None:
        self.max_array_length = max_array_length
        self.users: list[User] = []
        self.by_external: dict[str, User] = {}
        self.by_braze: dict[str, User] = {}
        self.by_alias: dict[tuple[str, str], User] = {}
        self.by_contact: dict[tuple[str, str], list[User]] = {}  # ("email"|"phone", value) -> users
        self._ids = itertools.count(1)
        self._clock_tick = itertools.count(1)

    def attributes(self, obj: dict[str, Any]) -> str | None:
        """Check one attributes object and apply it: its minor error, or None once applied.

        The hot path of a sync (75 objects a request, thousands of requests a second), so it walks
        the object once and lets dict.update copy the plain values; only identifiers, directives,
        contacts, nulls and edits (the `special` keys) are handled one by one.
        """
        external_id = obj.get("external_id")
        if type(external_id) is not str or len(external_id) <= LONGEST_DUMMY:  # else surely valid
            problem = identifier_problem(obj)
            if problem:
                return problem
        email = obj.get("email")
        if email is not None and not (type(email) is str and EMAIL.match(email)):
            return INVALID_EMAIL
        special = []  # (key, value) of identifiers, directives, contacts, nulls and edits
        names = _NAMES
        for key, value in obj.items():
            plain = names.get(key)
            if plain is None:
                if not key or key[0] == "$" or len(key) > 255:  # identifiers and directives always pass
                    return f"'{key[:255]}' is not a valid attribute name: 1 to 255 characters, not starting with '$'"
                plain = key not in DIRECTIVES and key not in CONTACTS
                if len(names) < 10_000:  # a sync repeats a few names; bounded against ever-new ones
                    names[key] = plain
            if not plain or type(value) not in _SCALARS:
                if type(value) is dict and plain:
                    problem = edit_problem(key, value)
                    if problem:
                        return problem
                special.append((key, value))
        user = self.by_external.get(external_id) if external_id is not None else None
        if user is None:
            update_only = obj.get("_update_existing_only")
            user = self._resolve(obj, create_alias=update_only is False, create=update_only is not True)
        if user is None:
            return None  # update-only for a profile that does not exist: Braze drops it silently
        attributes = user.attributes
        before = []
        for key, value in special:  # a loop, not a comprehension: one closure per object is costly
            before.append((key, value, attributes.get(key)))
        attributes.update(obj)  # plain values; the special ones are redone below
        for key, value, old in before:
            if key in DIRECTIVES or value is None:
                if old is None or value is None:
                    attributes.pop(key, None)
                else:
                    attributes[key] = old
            elif type(value) is dict or type(value) is list:
                attributes[key] = self._new_value(old, value, obj.get("_merge_objects") is True)
            if key in CONTACTS and old != attributes.get(key):
                self._reindex(user, key, old)
        user.updated = next(self._clock_tick)
        return None

    def _new_value(self, old: Any, value: Any, merge: bool) -> Any:
        cap = self.max_array_length
        if isinstance(value, list):
            return unique(value)[:cap]  # Braze arrays are sets that keep the first occurrence's order
        if not isinstance(value, dict):
            return value
        if "add" in value or "remove" in value:
            items = list(old) if type(old) is list else []  # stored arrays are already unique
            for added in value.get("add") or ():
                if added in items:
                    items.remove(added)  # an added value already there moves to the end
                items.append(added)
            removed = value.get("remove")
            if removed:
                items = [v for v in items if v not in removed]
            return items[-cap:]  # past the cap, the oldest values go first
        if "inc" in value and len(value) == 1:
            return (old if isinstance(old, int) and not isinstance(old, bool) else 0) + value["inc"]
        return {**old, **value} if merge and isinstance(old, dict) else value

    def events(self, obj: dict[str, Any]) -> str | None:
        problem, user = self._addressed(obj, event_problem)
        if user is not None:
            if user.events is None:
                user.events = {}
            seen = user.events.setdefault(obj["name"], {"count": 0, "first": obj["time"], "last": obj["time"]})
            seen["count"] += 1
            seen["last"] = obj["time"]
        return problem

    def purchases(self, obj: dict[str, Any]) -> str | None:
        problem, user = self._addressed(obj, purchase_problem)
        if user is not None:
            product = obj["product_id"]
            if user.purchases is None:
                user.purchases = {}
            user.purchases[product] = user.purchases.get(product, 0) + int(obj.get("quantity", 1))
        return problem

    def _addressed(self, obj: dict[str, Any], check: Callable[[dict[str, Any]], str | None]
                   ) -> tuple[str | None, User | None]:
        """An events or purchases object's minor error, else the profile it updates (None: none
        exists and the object is update-only), marked as updated now."""
        problem = check(obj)
        if problem:
            return problem, None
        user = self._resolve(obj, create_alias=True, create=obj.get("_update_existing_only") is not True)
        if user is not None:
            user.updated = next(self._clock_tick)
        return None, user

    def _resolve(self, obj: dict[str, Any], create_alias: bool, create: bool) -> User | None:
        """The profile an object addresses (external_id > braze_id > user_alias > email > phone)."""
        external_id = obj.get("external_id")
        if external_id is not None:
            user = self.by_external.get(external_id)
            if user is None and create:
                user = self._new_user(external_id)
            return user
        if obj.get("braze_id") is not None:
            return self.by_braze.get(obj["braze_id"])
        alias = obj.get("user_alias")
        if alias is not None:
            key = (alias["alias_label"], alias["alias_name"])
            user = self.by_alias.get(key)
            if user is None and create_alias:
                user = self.by_alias[key] = self._new_user(None)
                user.aliases += (key,)
            return user
        kind = "email" if obj.get("email") is not None else "phone"
        value = str(obj[kind])
        candidates = self.by_contact.get((kind, value.lower()), [])
        if candidates:
            # Braze: the most recently updated profile, preferring one with an external_id.
            return max(candidates, key=lambda u: (u.external_id is not None, u.updated))
        if not create:
            return None
        user = self._new_user(None)
        user.attributes[kind] = value
        self._reindex(user, kind, None)
        return user

    def _new_user(self, external_id: str | None) -> User:
        user = User(f"{next(self._ids):024x}", external_id)  # shaped like a Braze id, deterministic
        self.users.append(user)
        self.by_braze[user.braze_id] = user
        if external_id is not None:
            self.by_external[external_id] = user
        return user

    def _reindex(self, user: User, kind: str, old: Any) -> None:
        if isinstance(old, str):
            holders = self.by_contact.get((kind, old.lower()), [])
            if user in holders:
                holders.remove(user)
        new = user.attributes.get(kind)
        if isinstance(new, str):
            self.by_contact.setdefault((kind, new.lower()), []).append(user)
