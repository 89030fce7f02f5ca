"""Braze REST API emulator: `POST /users/track`, faithful to what Braze documents and answers.

What the emulator relies on (Braze docs "Track users", "API errors and responses", "Rate limits",
"User attributes object", and /users/track responses recorded in public client test suites):

- `Authorization: Bearer <REST API key>`; an unknown or missing key is a fatal `401`.
- A request carries up to 75 attribute objects, 75 event objects and 75 purchase objects (the
  documented per-array rule, "legacy" in the newest docs, which say most customers now get 75
  objects in total across the three arrays; `batch_rule="combined"` emulates that). More is a
  fatal `400 {"message": "Max Input Length Exceeded"}` and nothing is applied. Bodies over 4 MB
  are `413`; a missing JSON content type is `415`.
- Success is `201 {"message": "success", "attributes_processed": n, ...}`; objects that are
  invalid come back as minor errors `{"type", "input_array", "index"}` in the same 201 while the
  valid objects of the request are applied. When no object is valid: `400` with
  `"Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."`.
- Every object needs one of external_id, braze_id, user_alias, email, phone (precedence in that
  order). external_id creates the user; user_alias only updates unless `_update_existing_only` is
  false; an email or phone alone updates the most recently updated profile with it, else creates.
- Attribute values: `null` unsets, `{"add": [...], "remove": [...]}` edits an array (an added
  value moves to the end, arrays hold unique values), `{"inc": n}` increments, arrays are set
  as unique values truncated to `max_array_length` (Braze truncates silently).
- `X-RateLimit-Limit`, `-Remaining`, `-Reset` (epoch seconds) on every response; /users/track
  defaults to 3,000 requests per 3 seconds (the current published limit; it was 50,000/minute).

Texts from real responses: the missing-identifier and invalid-email minor errors and the "no valid
data" message; from the docs: the dummy external_id error, "Max Input Length Exceeded", "Rate
Limited". Ours: the 401 text (the key is never echoed) and the errors for bad attribute names,
edits, events and purchases.
"""

from __future__ import annotations

import hmac
import itertools
import math
import os
import re
from collections.abc import Iterable
from typing import Any

from revetl.emulators.base import Emulator, Request, Response, Route
from revetl.errors import ConfigError

__all__ = ["BrazeEmulator"]

ARRAYS = ("attributes", "events", "purchases")
NO_IDENTIFIER = "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required"
INVALID_EMAIL = "The value provided for the 'email' field is not a valid email."
DUMMY_EXTERNAL_ID = "provided external_id is blacklisted and disallowed"
NO_VALID_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
# Braze's spam blocking refuses placeholder ids that would merge unrelated people into one profile.
DUMMY_IDS = frozenset({"", "null", "undefined", "none", "nil", "n/a", "na", "0", "-1", "unknown", "anonymous"})
_LONGEST_DUMMY = max(map(len, DUMMY_IDS))
# Keys of an attributes object that are directives or identifiers, never profile attributes.
DIRECTIVES = frozenset(
    {"external_id", "braze_id", "user_alias", "_update_existing_only", "push_token_import", "_merge_objects"}
)
CONTACTS = frozenset({"email", "phone"})  # attributes that also identify a profile, so are indexed
ALIAS_KEYS = ("alias_name", "alias_label")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+\Z")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
CURRENCY = re.compile(r"[A-Za-z]{3}\Z")


class _User:
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


class BrazeEmulator(Emulator):
    """`POST /users/track` with Braze's auth, limits, response shapes and per-object errors.

    Options beyond the common ones: `api_key` (default: $BRAZE_API_KEY, else "dev-braze-key"),
    `max_objects` (75), `batch_rule` ("per_array" or "combined"), `max_array_length` (500).
    """

    name = "braze"
    default_port = 8091
    default_rate_limit = 3000
    default_rate_window = 3.0
    max_body_bytes = 4 * 1024 * 1024
    extra_options = {"api_key": None, "max_objects": 75, "batch_rule": "per_array", "max_array_length": 500}

    def __init__(self, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        key = self.config["api_key"] or os.environ.get("BRAZE_API_KEY") or "dev-braze-key"
        self._expected = f"Bearer {key}".encode()  # compared, never logged or echoed
        if self.config["batch_rule"] not in ("per_array", "combined"):
            rule = self.config["batch_rule"]
            raise ConfigError(f"Braze option 'batch_rule' must be 'per_array' or 'combined', not {rule!r}.")
        for name in ("max_objects", "max_array_length"):
            if not isinstance(self.config[name], int) or self.config[name] < 1:
                raise ConfigError(f"Braze option {name!r} must be a positive integer.")

    def routes(self) -> Iterable[Route]:
        return [Route("POST", "/users/track", self.track)]

    def control_routes(self) -> Iterable[Route]:
        return [Route("GET", "/_emulator/users", self.list_users)]

    def reset_state(self) -> None:
        self._users: list[_User] = []
        self._by_external: dict[str, _User] = {}
        self._by_braze: dict[str, _User] = {}
        self._by_alias: dict[tuple[str, str], _User] = {}
        self._by_contact: dict[tuple[str, str], list[_User]] = {}  # ("email"|"phone", value) -> users
        self._ids = itertools.count(1)
        self._clock_tick = itertools.count(1)

    # -- vendor hooks ----------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, self._expected):
            return None
        # Never echo the key back: a client may log this body or store it with a failed row.
        return Response(401, {"message": "Invalid API key"})

    def rate_limit_headers(self, limit: int, remaining: int, reset: float) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(math.ceil(reset))}

    def rate_limited(self, retry_after: float) -> Response:
        # Braze documents no Retry-After on its 429: clients are to wait for X-RateLimit-Reset.
        return Response(429, {"message": "Rate Limited"})

    # -- /users/track ----------------------------------------------------------------------------

    def track(self, request: Request) -> Response:
        """Validate the whole request, reject per object, apply the valid objects, count them."""
        if "application/json" not in request.headers.get("content-type", ""):
            return Response(415, {"message": "Unsupported Media Type"})
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return Response(400, {"message": "Error while parsing request body. Please check your syntax."})
        arrays = {name: body.get(name) for name in ARRAYS if body.get(name) is not None}
        for name, objects in arrays.items():
            if not isinstance(objects, list):
                return Response(400, {"message": f"'{name}' must be an array"})
        fatal = self._too_many(arrays)
        if fatal:
            return fatal
        # One pass: check each object, apply it when valid. When none is valid nothing was applied,
        # which is what Braze's fatal "no valid data" answer promises.
        errors: list[dict[str, Any]] = []
        answer: dict[str, Any] = {"message": "success"}
        for name, objects in arrays.items():  # Braze processes attributes, then events, then purchases
            handle = getattr(self, f"_{name}")
            applied = 0
            for index, obj in enumerate(objects):
                problem = handle(obj) if type(obj) is dict else f"each of '{name}' must be an object"
                if problem:
                    errors.append({"type": problem, "input_array": name, "index": index})
                else:
                    applied += 1
            answer[f"{name}_processed"] = applied
            self.count_applied(name, applied)
        if len(errors) == sum(map(len, arrays.values())):
            return Response(400, {"message": NO_VALID_DATA, "errors": errors})
        if errors:
            answer["errors"] = errors
        return Response(201, answer)

    def _too_many(self, arrays: dict[str, list[Any]]) -> Response | None:
        limit = self.config["max_objects"]
        if self.config["batch_rule"] == "combined":
            over = [f"at most {limit} objects in total"] if sum(map(len, arrays.values())) > limit else []
        else:
            over = [f"at most {limit} objects in '{name}'" for name, objs in arrays.items() if len(objs) > limit]
        if not over:
            return None
        return Response(400, {"message": "Max Input Length Exceeded",
                              "errors": [{"type": f"a request may hold {text}"} for text in over]})

    # -- applying --------------------------------------------------------------------------------

    def _attributes(self, obj: dict[str, Any]) -> str | None:
        """Check one attributes object and apply it: its minor error, or None once applied.

        The hot path of a sync (75 objects a request, thousands of requests a second), so it walks
        the object once and lets dict.update copy the plain values; only identifiers, directives,
        contacts, nulls and edits (the `special` keys) are handled one by one.
        """
        external_id = obj.get("external_id")
        if type(external_id) is not str or len(external_id) <= _LONGEST_DUMMY:  # else surely valid
            problem = _identifier_problem(obj)
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
                    problem = _edit_problem(key, value)
                    if problem:
                        return problem
                special.append((key, value))
        user = self._by_external.get(external_id) if external_id is not None else None
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
        cap = self.config["max_array_length"]
        if isinstance(value, list):
            return _unique(value)[:cap]  # Braze arrays are sets that keep the first occurrence's order
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

    def _events(self, obj: dict[str, Any]) -> str | None:
        problem = _check_event(obj)
        if problem:
            return problem
        user = self._resolve(obj, create_alias=True, create=obj.get("_update_existing_only") is not True)
        if user is not None:
            if user.events is None:
                user.events = {}
            seen = user.events.setdefault(obj["name"], {"count": 0, "first": obj["time"], "last": obj["time"]})
            seen["count"] += 1
            seen["last"] = obj["time"]
            user.updated = next(self._clock_tick)
        return None

    def _purchases(self, obj: dict[str, Any]) -> str | None:
        problem = _check_purchase(obj)
        if problem:
            return problem
        user = self._resolve(obj, create_alias=True, create=obj.get("_update_existing_only") is not True)
        if user is not None:
            product = obj["product_id"]
            if user.purchases is None:
                user.purchases = {}
            user.purchases[product] = user.purchases.get(product, 0) + int(obj.get("quantity", 1))
            user.updated = next(self._clock_tick)
        return None

    def _resolve(self, obj: dict[str, Any], create_alias: bool, create: bool) -> _User | None:
        """The profile an object addresses (external_id > braze_id > user_alias > email > phone)."""
        external_id = obj.get("external_id")
        if external_id is not None:
            user = self._by_external.get(external_id)
            if user is None and create:
                user = self._new_user(external_id)
            return user
        if obj.get("braze_id") is not None:
            return self._by_braze.get(obj["braze_id"])
        alias = obj.get("user_alias")
        if alias is not None:
            key = (alias["alias_label"], alias["alias_name"])
            user = self._by_alias.get(key)
            if user is None and create_alias:
                user = self._by_alias[key] = self._new_user(None)
                user.aliases += (key,)
            return user
        kind = "email" if obj.get("email") is not None else "phone"
        value = str(obj[kind])
        candidates = self._by_contact.get((kind, value.lower()), [])
        if candidates:
            # Braze: the most recently updated profile, preferring one with an external_id.
            return max(candidates, key=lambda u: (u.external_id is not None, u.updated))
        if not create:
            return None
        user = self._new_user(None)
        user.attributes[kind] = value
        self._reindex(user, kind, None)
        return user

    def _new_user(self, external_id: str | None) -> _User:
        user = _User(f"{next(self._ids):024x}", external_id)  # shaped like a Braze id, deterministic
        self._users.append(user)
        self._by_braze[user.braze_id] = user
        if external_id is not None:
            self._by_external[external_id] = user
        return user

    def _reindex(self, user: _User, kind: str, old: Any) -> None:
        if isinstance(old, str):
            holders = self._by_contact.get((kind, old.lower()), [])
            if user in holders:
                holders.remove(user)
        new = user.attributes.get(kind)
        if isinstance(new, str):
            self._by_contact.setdefault((kind, new.lower()), []).append(user)

    # -- /_emulator/users ------------------------------------------------------------------------

    def list_users(self, request: Request) -> Response:
        """Every profile (or those matching ?external_id=, ?braze_id=, ?email=) with its attributes."""
        users: Iterable[_User] = self._users
        if "external_id" in request.query:
            users = [u for u in [self._by_external.get(request.query["external_id"])] if u]
        elif "braze_id" in request.query:
            users = [u for u in [self._by_braze.get(request.query["braze_id"])] if u]
        elif "email" in request.query:
            users = list(self._by_contact.get(("email", request.query["email"].lower()), []))
        rendered = [user.as_dict() for user in users]
        return Response(200, {"count": len(rendered), "users": rendered})


def _unique(values: list[Any]) -> list[Any]:
    """Values in first-seen order without repeats (JSON equality)."""
    try:
        return list(dict.fromkeys(values))
    except TypeError:  # objects or arrays inside the array: unhashable, compare one by one
        unique: list[Any] = []
        for value in values:
            if value not in unique:
                unique.append(value)
        return unique


def _identifier_problem(obj: dict[str, Any]) -> str | None:
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


# Attribute name -> True when plain (not an identifier, directive or contact), for names already
# found valid: a sync repeats the same few names in every object, so one lookup replaces the checks.
_NAMES: dict[str, bool] = {}
_SCALARS = frozenset({str, int, float, bool})


def _edit_problem(key: str, value: dict[str, Any]) -> str | None:
    """What is wrong with an {"add", "remove"} or {"inc"} edit, if anything."""
    if "add" in value or "remove" in value:
        if any(op in value and type(value[op]) is not list for op in ("add", "remove")):
            return f"'{key}': 'add' and 'remove' must be arrays"
    elif "inc" in value and len(value) == 1 and type(value["inc"]) is not int:
        return f"'{key}': 'inc' must be an integer"
    return None


def _check_event(obj: dict[str, Any]) -> str | None:
    problem = _identifier_problem(obj) or _email_problem(obj)
    if problem:
        return problem
    if not isinstance(obj.get("name"), str) or not obj["name"]:
        return "'name' is required and must be a string"
    if not isinstance(obj.get("time"), str) or not ISO_DATE.match(obj["time"]):
        return "'time' is required and must be an ISO 8601 time"
    return None


def _check_purchase(obj: dict[str, Any]) -> str | None:
    problem = _identifier_problem(obj) or _email_problem(obj)
    if problem:
        return problem
    if not isinstance(obj.get("product_id"), str) or not obj["product_id"]:
        return "'product_id' is required and must be a string"
    if not isinstance(obj.get("currency"), str) or not CURRENCY.match(obj["currency"]):
        return "'currency' is required and must be an ISO 4217 code"
    if isinstance(obj.get("price"), bool) or not isinstance(obj.get("price"), (int, float)):
        return "'price' is required and must be a number"
    quantity = obj.get("quantity", 1)
    if isinstance(quantity, bool) or not isinstance(quantity, int) or not 1 <= quantity <= 100:
        return "'quantity' must be an integer from 1 to 100"
    if not isinstance(obj.get("time"), str) or not ISO_DATE.match(obj["time"]):
        return "'time' is required and must be an ISO 8601 time"
    return None
