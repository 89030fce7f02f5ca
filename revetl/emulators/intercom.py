"""Intercom REST API emulator: contacts, tags and data attributes as Intercom documents them.

What it relies on (Intercom's OpenAPI description 2.16 in tests/specs/intercom-api-2.16.yaml, its "Rate Limiting"
reference page and the search description; texts marked "ours" are not documented):

- `Authorization: Bearer <access token>`; a wrong or missing token is `401` with the error list
  `unauthorized` / "Access Token Invalid", and without rate-limit headers ("not sent when the
  request has no valid credentials"). The token is never echoed.
- `Intercom-Version` is optional; a value that is not a published version is a `400`
  `intercom_version_invalid` (ours).
- Every error is `{"type": "error.list", "request_id", "errors": [{"code", "message"}]}`.
- Limits: 10,000 calls a minute per app, enforced as 1,667 per 10-second window. Every
  authenticated answer carries `X-RateLimit-Limit` (per window), `-Remaining` and `-Reset` (epoch
  seconds); over the limit: `429` `rate_limit_exceeded` "Exceeded rate limit of 1667 in
  10_seconds", with no Retry-After (clients wait for the reset).
- `POST /contacts` needs `email`, `external_id` or `role`; a user whose `external_id` is taken (or,
  without one, whose email a user already has) is `409` `conflict` "A contact matching those
  details already exists with id=<id>" (the text reported from production) and nothing changes.
- Search lags creation: a contact is found by `POST /contacts/search` only `search_lag` seconds
  (default 120; Intercom: "can take a few minutes") after it was created. Reads by id and
  `GET /contacts/find_by_external_id/{external_id}` (users only) see it at once.
- Custom attributes must exist (`POST /data_attributes`, model `contact`) before a contact holds
  them: else `400` `parameter_invalid` "Custom attribute 'x' does not exist" (ours, after
  Intercom's conversation-attribute error); a value of the wrong type is a `400` too.
- Tags: `POST /tags {name}` creates the tag or returns the one with that name (names are case
  insensitive); `POST /contacts/{id}/tags {id}` attaches, `DELETE /contacts/{id}/tags/{tag_id}`
  detaches; unknown contact `404` "User Not Found", unknown tag `404` "Resource Not Found".

Control: GET /_emulator/contacts (?external_id=, ?email=) lists contacts with their tag names.
"""

from __future__ import annotations

import hmac
import itertools
import math
import os
import re
import uuid
from collections.abc import Iterable
from typing import Any

from revetl.emulators.base import Emulator, Outcome, Request, Response, Route
from revetl.emulators.intercom_search import SearchError, search
from revetl.errors import ConfigError

__all__ = ["IntercomEmulator"]

VERSIONS = frozenset({"1.0", "1.1", "1.2", "1.3", "1.4", *(f"2.{n}" for n in range(17))})
WRITABLE = ("role", "external_id", "email", "phone", "name", "avatar", "signed_up_at", "last_seen_at", "owner_id",
            "unsubscribed_from_emails", "email_verified")
TIMES = ("signed_up_at", "last_seen_at")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+\Z")
ATTRIBUTE_NAME = re.compile(r"[\w \-$€£¥]+\Z")
DATA_TYPES = ("string", "integer", "float", "boolean", "date", "datetime")
_CHECK = {"string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
          "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          "date": lambda v: isinstance(v, (int, str)) and not isinstance(v, bool)}
STANDARD_ATTRIBUTES = ("name", "email", "phone", "external_id", "signed_up_at", "last_seen_at", "owner_id",
                       "unsubscribed_from_emails")
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


class _Contact:
    __slots__ = ("id", "fields", "custom", "tags", "created", "created_at", "updated_at")

    def __init__(self, contact_id: str, now: float) -> None:
        self.id = contact_id
        self.fields: dict[str, Any] = {"role": "user"}
        self.custom: dict[str, Any] = {}
        self.tags: dict[str, int] = {}  # tag id -> applied_at
        self.created = now  # to the microsecond, for the search lag
        self.created_at = self.updated_at = int(now)


class IntercomEmulator(Emulator):
    """Contacts (create, update, find, search, delete), tags and data attributes.

    Options beyond the common ones: `token` (default: $INTERCOM_TOKEN, else
    "dev-intercom-token"), `search_lag` (seconds, 120), `custom_attributes` (name -> data type of
    contact attributes that exist from the start), `admin_id` (who applies tags).
    """

    name = "intercom"
    default_port = 8093
    default_rate_limit = 1667
    default_rate_window = 10.0
    max_body_bytes = 2 * 1024 * 1024
    extra_options = {"token": None, "search_lag": 120.0, "custom_attributes": {}, "admin_id": "991267459"}

    def __init__(self, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        token = self.config["token"] or os.environ.get("INTERCOM_TOKEN") or "dev-intercom-token"
        self._expected = f"Bearer {token}".encode()  # compared, never logged or echoed
        lag = self.config["search_lag"]
        if isinstance(lag, bool) or not isinstance(lag, (int, float)) or lag < 0:
            raise ConfigError(f"Intercom option 'search_lag' must be a number of seconds >= 0, not {lag!r}.")
        attributes = self.config["custom_attributes"]
        if not isinstance(attributes, dict) or any(t not in DATA_TYPES for t in attributes.values()):
            raise ConfigError(f"Intercom option 'custom_attributes' maps names to one of {', '.join(DATA_TYPES)}.")

    def routes(self) -> Iterable[Route]:
        return [
            Route("POST", "/contacts", self.create_contact),
            Route("POST", "/contacts/search", self.search_contacts),
            Route("GET", "/contacts/find_by_external_id/{external_id}", self.find_by_external_id),
            Route("GET", "/contacts/{contact_id}", self.get_contact),
            Route("PUT", "/contacts/{contact_id}", self.update_contact),
            Route("DELETE", "/contacts/{contact_id}", self.delete_contact),
            Route("GET", "/contacts/{contact_id}/tags", self.contact_tags),
            Route("POST", "/contacts/{contact_id}/tags", self.attach_tag),
            Route("DELETE", "/contacts/{contact_id}/tags/{tag_id}", self.detach_tag),
            Route("GET", "/tags", self.list_tags),
            Route("POST", "/tags", self.create_tag),
            Route("GET", "/data_attributes", self.list_attributes),
            Route("POST", "/data_attributes", self.create_attribute),
        ]

    def control_routes(self) -> Iterable[Route]:
        return [Route("GET", "/_emulator/contacts", self.dump_contacts)]

    def reset_state(self) -> None:
        self._contacts: dict[str, _Contact] = {}
        self._by_external: dict[str, _Contact] = {}
        self._tags: dict[str, str] = {}  # id -> name
        self._tag_by_name: dict[str, str] = {}  # lower-case name -> id
        self._attributes: dict[str, dict[str, Any]] = {}  # custom contact attribute name -> data_attribute
        self._ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        attributes = self.config["custom_attributes"]  # validated in __init__, after this first reset
        for name, data_type in (attributes.items() if isinstance(attributes, dict) else ()):
            self._new_attribute(name, data_type, "")

    # -- vendor hooks ----------------------------------------------------------------------------

    def error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
        """Intercom's error list (request ids are deterministic, so recorded runs compare)."""
        request_id = str(uuid.UUID(int=next(self._request_ids)))
        body = {"type": "error.list", "request_id": request_id, "errors": [{"code": code, "message": message}]}
        return Response(status, body, headers or {})

    def authenticate(self, request: Request) -> Response | None:
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, self._expected):
            return self.error(401, "unauthorized", "Access Token Invalid")
        version = request.headers.get("intercom-version")
        if version is not None and version not in VERSIONS:
            return self.error(400, "intercom_version_invalid", f"The requested version {version[:20]!r} does not exist")
        return None

    async def dispatch(self, request: Request) -> Outcome:
        outcome = await super().dispatch(request)
        # Intercom sends rate-limit headers only to authenticated requests, and a load balancer's
        # 502/503 page never reached the application that counts them.
        if outcome.response is not None and outcome.response.status in (401, 502, 503):
            for name in RATE_HEADERS:
                outcome.response.headers.pop(name, None)
        return outcome

    def rate_limit_headers(self, limit: int, remaining: int, reset: float) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(math.ceil(reset))}

    def rate_limited(self, retry_after: float) -> Response:
        window = self.limiter.window
        per = f"{window:g}_seconds" if window != 1 else "1_second"
        return self.error(429, "rate_limit_exceeded", f"Exceeded rate limit of {self.limiter.limit} in {per}")

    def not_found(self, request: Request, allowed: list[str]) -> Response:
        if allowed:
            response = self.error(405, "method_not_allowed", "Method Not Allowed")
            response.headers["Allow"] = ", ".join(sorted(set(allowed)))
            return response
        return self.error(404, "not_found", "Resource Not Found")

    def server_error(self, status: int) -> Response:
        if status == 500:
            return self.error(500, "server_error", "Server Error")
        return super().server_error(status)

    # -- contacts --------------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self.clock())

    def _body(self, request: Request) -> dict[str, Any] | Response:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self.error(400, "parameter_invalid", "The request body must be a JSON object")
        return body

    def _problem(self, body: dict[str, Any], contact: _Contact | None) -> Response | None:
        """What Intercom refuses in a create or update body (before anything changes)."""
        role = body.get("role")
        if role is not None and role not in ("user", "lead"):
            return self.error(400, "parameter_invalid", "role must be either user or lead")
        for name in ("external_id", "email", "phone", "name", "avatar", "owner_id"):
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                return self.error(400, "parameter_invalid", f"{name} must be a string")
        email = body.get("email")
        if email and not EMAIL.match(email):
            return self.error(400, "parameter_invalid", "Email address is invalid")  # ours
        if body.get("email_verified") is not None and not email:
            return self.error(400, "parameter_invalid", "email_verified must be supplied together with an email")
        for name in TIMES:
            value = body.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                return self.error(400, "parameter_invalid", f"{name} must be a UNIX timestamp in seconds")
        custom = body.get("custom_attributes")
        if custom is not None and not isinstance(custom, dict):
            return self.error(400, "parameter_invalid", "custom_attributes must be an object")
        for name, value in (custom or {}).items():
            attribute = self._attributes.get(name)
            if attribute is None:
                return self.error(400, "parameter_invalid", f"Custom attribute '{name}' does not exist")
            check = _CHECK.get(attribute["data_type"])
            if value is not None and check is not None and not check(value):
                return self.error(400, "parameter_invalid",
                                  f"Custom attribute '{name}' expects a {attribute['data_type']} value")
        return self._conflict(body, contact)

    def _conflict(self, body: dict[str, Any], contact: _Contact | None) -> Response | None:
        external_id = body.get("external_id")
        holder: _Contact | None = None
        if external_id:
            holder = self._by_external.get(external_id)
        elif contact is None and body.get("email") and body.get("role", "user") == "user":
            email = body["email"].lower()
            holder = next((c for c in self._contacts.values()
                           if c.fields["role"] == "user" and str(c.fields.get("email") or "").lower() == email), None)
        if holder is None or holder is contact:
            return None
        return self.error(409, "conflict", f"A contact matching those details already exists with id={holder.id}")

    def _apply(self, contact: _Contact, body: dict[str, Any]) -> None:
        old = contact.fields.get("external_id")
        for name in WRITABLE:
            if name in body:
                contact.fields[name] = body[name]
        for name, value in (body.get("custom_attributes") or {}).items():
            contact.custom[name] = value
        new = contact.fields.get("external_id")
        if old != new:
            if old is not None:
                self._by_external.pop(old, None)
            if new:
                self._by_external[new] = contact
        contact.updated_at = self._now()

    def create_contact(self, request: Request) -> Response:
        body = self._body(request)
        if isinstance(body, Response):
            return body
        if not any(body.get(name) for name in ("email", "external_id", "role")):
            return self.error(400, "parameter_invalid", "Provide at least one of email, external_id or role")
        problem = self._problem(body, None)
        if problem is not None:
            return problem
        contact = _Contact(f"{0x6762f0cd1bb69f9f00000000 + next(self._ids):024x}", self.clock())
        self._contacts[contact.id] = contact
        self._apply(contact, body)
        self.count_applied("contacts_created")
        return Response(200, self.render(contact))

    def update_contact(self, request: Request) -> Response:
        contact = self._contacts.get(request.params["contact_id"])
        if contact is None:
            return self.error(404, "not_found", "User Not Found")
        body = self._body(request)
        if isinstance(body, Response):
            return body
        problem = self._problem(body, contact)
        if problem is not None:
            return problem
        self._apply(contact, body)
        self.count_applied("contacts_updated")
        return Response(200, self.render(contact))

    def get_contact(self, request: Request) -> Response:
        contact = self._contacts.get(request.params["contact_id"])
        return Response(200, self.render(contact)) if contact else self.error(404, "not_found", "User Not Found")

    def find_by_external_id(self, request: Request) -> Response:
        contact = self._by_external.get(request.params["external_id"])
        if contact is None or contact.fields["role"] != "user":  # "only supports users and not leads"
            return self.error(404, "not_found", "User Not Found")
        return Response(200, self.render(contact))

    def delete_contact(self, request: Request) -> Response:
        contact = self._contacts.pop(request.params["contact_id"], None)
        if contact is None:
            return self.error(404, "not_found", "User Not Found")
        if contact.fields.get("external_id"):
            self._by_external.pop(contact.fields["external_id"], None)
        return Response(200, {"type": "contact", "id": contact.id, "external_id": contact.fields.get("external_id"),
                               "deleted": True})

    def search_contacts(self, request: Request) -> Response:
        body = self._body(request)
        if isinstance(body, Response):
            return body
        indexed_before = self.clock() - self.config["search_lag"]
        visible = [c for c in self._contacts.values() if c.created <= indexed_before]
        try:
            return Response(200, search(body, visible, _get, self.render))
        except SearchError as exc:
            return self.error(400, exc.code, str(exc))

    def render(self, contact: _Contact) -> dict[str, Any]:
        """The contact object as Intercom returns it (the fields a sync reads, and their neighbours)."""
        fields = contact.fields
        email = fields.get("email")
        tags = [{"type": "tag", "id": tag_id, "url": f"/tags/{tag_id}"} for tag_id in list(contact.tags)[:10]]
        lists = {name: {"type": "list", "data": [], "url": f"/contacts/{contact.id}/{name}", "total_count": 0,
                        "has_more": False} for name in ("notes", "companies")}
        return {
            "type": "contact", "id": contact.id, "workspace_id": "emulated_workspace",
            "external_id": fields.get("external_id"),
            # No email is "" (the schema types both as plain strings, not nullable).
            "role": fields["role"], "email": email or "", "email_domain": email.split("@", 1)[1] if email else "",
            "phone": fields.get("phone"), "name": fields.get("name"), "avatar": None,
            "owner_id": fields.get("owner_id"),
            "social_profiles": {"type": "list", "data": []}, "has_hard_bounced": False, "marked_email_as_spam": False,
            "unsubscribed_from_emails": bool(fields.get("unsubscribed_from_emails")),
            "created_at": contact.created_at, "updated_at": contact.updated_at,
            "signed_up_at": fields.get("signed_up_at"), "last_seen_at": fields.get("last_seen_at"),
            "custom_attributes": dict(contact.custom),
            "tags": {"type": "list", "data": tags, "url": f"/contacts/{contact.id}/tags",
                     "total_count": len(contact.tags), "has_more": len(contact.tags) > 10},
            **lists,
            "location": {"type": "location", "country": None, "region": None, "city": None},
        }

    # -- tags ------------------------------------------------------------------------------------

    def _tag(self, tag_id: str, applied_at: int | None = None) -> dict[str, Any]:
        tag = {"type": "tag", "id": tag_id, "name": self._tags[tag_id]}
        if applied_at is not None:
            tag.update(applied_at=applied_at, applied_by={"type": "admin", "id": self.config["admin_id"]})
        return tag

    def list_tags(self, request: Request) -> Response:
        return Response(200, {"type": "list", "data": [self._tag(tag_id) for tag_id in self._tags]})

    def create_tag(self, request: Request) -> Response:
        body = self._body(request)
        if isinstance(body, Response):
            return body
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or "companies" in body:
            return self.error(400, "parameter_invalid", "invalid tag parameters")
        if body.get("id") is not None:  # rename
            tag_id = str(body["id"])
            if tag_id not in self._tags:
                return self.error(404, "not_found", "Resource Not Found")
            self._tag_by_name.pop(self._tags[tag_id].lower(), None)
            self._tags[tag_id] = name
            self._tag_by_name[name.lower()] = tag_id
        elif name.lower() in self._tag_by_name:  # an existing tag keeps its spelling
            tag_id = self._tag_by_name[name.lower()]
        else:
            tag_id = str(100 + len(self._tags))
            self._tags[tag_id] = name
            self._tag_by_name[name.lower()] = tag_id
            self.count_applied("tags_created")
        answer = {**self._tag(tag_id), "users": [], "companies": []}
        for user in body.get("users") or []:  # "Tag Multiple Users"
            contact = self._contacts.get(str(user.get("id"))) if isinstance(user, dict) else None
            if contact is not None:
                contact.tags.setdefault(tag_id, self._now())
            answer["users"].append({"id": str(user.get("id")) if isinstance(user, dict) else None,
                                    "tagged": contact is not None})
        return Response(200, answer)

    def contact_tags(self, request: Request) -> Response:
        contact = self._contacts.get(request.params["contact_id"])
        if contact is None:
            return self.error(404, "not_found", "User Not Found")
        return Response(200, {"type": "list", "data": [self._tag(t, at) for t, at in contact.tags.items()]})

    def attach_tag(self, request: Request) -> Response:
        contact = self._contacts.get(request.params["contact_id"])
        if contact is None:
            return self.error(404, "not_found", "User Not Found")
        body = self._body(request)
        if isinstance(body, Response):
            return body
        tag_id = body.get("id")
        if not isinstance(tag_id, (str, int)) or isinstance(tag_id, bool):
            return self.error(400, "parameter_invalid", "id is required")
        tag_id = str(tag_id)
        if tag_id not in self._tags:
            return self.error(404, "not_found", "Resource Not Found")
        applied_at = contact.tags.setdefault(tag_id, self._now())
        self.count_applied("tags_attached")
        return Response(200, self._tag(tag_id, applied_at))

    def detach_tag(self, request: Request) -> Response:
        contact = self._contacts.get(request.params["contact_id"])
        if contact is None:
            return self.error(404, "not_found", "User Not Found")
        tag_id = request.params["tag_id"]
        if tag_id not in self._tags:
            return self.error(404, "not_found", "Resource Not Found")
        applied_at = contact.tags.pop(tag_id, None)
        self.count_applied("tags_detached")
        return Response(200, self._tag(tag_id, applied_at if applied_at is not None else self._now()))

    # -- data attributes -------------------------------------------------------------------------

    def _new_attribute(self, name: str, data_type: str, description: str) -> dict[str, Any]:
        now = int(self.clock())
        attribute = {"id": len(self._attributes) + 30, "type": "data_attribute", "name": name,
                     "full_name": f"custom_attributes.{name}", "label": name, "description": description,
                     "data_type": "date" if data_type == "datetime" else data_type, "api_writable": True,
                     "ui_writable": False, "messenger_writable": False, "custom": True, "archived": False,
                     "admin_id": self.config["admin_id"], "created_at": now, "updated_at": now, "model": "contact"}
        self._attributes[name] = attribute
        return attribute

    def list_attributes(self, request: Request) -> Response:
        model = request.query.get("model")
        if model not in (None, "contact", "company"):
            return self.error(422, "parameter_invalid", f"model={model} is not supported")
        data: list[dict[str, Any]] = []
        if model in (None, "contact"):
            data = [{"type": "data_attribute", "name": name, "full_name": name, "label": name.replace("_", " ").title(),
                     "data_type": "date" if name in TIMES else "boolean" if name.startswith("unsub") else "string",
                     "api_writable": True, "ui_writable": False, "messenger_writable": False, "custom": False,
                     "archived": False, "model": "contact"} for name in STANDARD_ATTRIBUTES]
            data += list(self._attributes.values())
        return Response(200, {"type": "list", "data": data})

    def create_attribute(self, request: Request) -> Response:
        body = self._body(request)
        if isinstance(body, Response):
            return body
        name, model, data_type = body.get("name"), body.get("model"), body.get("data_type")
        if model not in ("contact", "company"):
            message = "The Data Attribute model field must be either contact or company"
            return self.error(400, "parameter_invalid", message)
        if not isinstance(name, str) or not ATTRIBUTE_NAME.match(name):
            return self.error(400, "parameter_invalid", "Your name for this attribute must only contain alphanumeric "
                                                        "characters, currency symbols, and hyphens")
        if data_type not in (*DATA_TYPES, "options"):
            return self.error(400, "parameter_invalid", "Data Type isn't an option")
        if data_type == "options" and len(body.get("options") or []) < 2:
            return self.error(400, "parameter_invalid", "A list attribute needs at least two options")
        if model == "company":
            return self.error(400, "parameter_invalid", "Company attributes are not emulated")  # ours
        if name in self._attributes or name in STANDARD_ATTRIBUTES:
            return self.error(400, "parameter_invalid", f"You already have '{name}' in your people data. "
                                                        "To save this as new people data, use a different name.")
        attribute = self._new_attribute(name, "string" if data_type == "options" else data_type,
                                        str(body.get("description") or ""))
        self.count_applied("data_attributes_created")
        return Response(200, attribute)

    # -- /_emulator/contacts ---------------------------------------------------------------------

    def dump_contacts(self, request: Request) -> Response:
        """Every contact (or those with ?external_id= / ?email=), with tag names instead of ids."""
        contacts: Iterable[_Contact] = self._contacts.values()
        if "external_id" in request.query:
            contacts = [c for c in [self._by_external.get(request.query["external_id"])] if c]
        elif "email" in request.query:
            wanted = request.query["email"].lower()
            contacts = [c for c in contacts if str(c.fields.get("email") or "").lower() == wanted]
        rendered = [{"id": c.id, "external_id": None, "email": None, **c.fields, "custom_attributes": dict(c.custom),
                     "tags": sorted(self._tags[t] for t in c.tags), "created_at": c.created_at} for c in contacts]
        return Response(200, {"count": len(rendered), "contacts": rendered})


def _get(contact: _Contact, field: str) -> Any:
    if field == "id":
        return contact.id
    if field == "tag_id":
        return set(contact.tags)
    if field.startswith("custom_attributes."):
        return contact.custom.get(field.split(".", 1)[1])
    return contact.fields.get(field)
