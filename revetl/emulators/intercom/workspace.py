"""The data of an emulated Intercom workspace: contacts, tags and data attributes, and their rules.

The HTTP side (`api.py`) parses requests and answers; this module holds the objects, renders
them as Intercom does, and raises `Refused` (status, error code, message) for what Intercom
refuses, before anything changes:

- `POST /contacts` needs `email`, `external_id` or `role`; a user whose `external_id` is taken (or,
  without one, whose email a user already has) is `409` `conflict` "A contact matching those
  details already exists with id=<id>" (the text reported from production).
- Custom attributes must exist (model `contact`) before a contact holds them: else `400`
  `parameter_invalid` "Custom attribute 'x' does not exist" (ours, after Intercom's
  conversation-attribute error); a value of the wrong type is a `400` too.
- Tags: a new tag's name returns the tag with that name when one exists (names are case
  insensitive); unknown contact `404` "User Not Found", unknown tag `404` "Resource Not Found".
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

__all__ = ["DATA_TYPES", "Contact", "Refused", "Workspace"]

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


class Refused(Exception):
    """What Intercom answers with an error list: `status`, `code`, and the message as str(self)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def _invalid(message: str) -> Refused:
    return Refused(400, "parameter_invalid", message)


def _user_not_found() -> Refused:
    return Refused(404, "not_found", "User Not Found")


def _tag_not_found() -> Refused:
    return Refused(404, "not_found", "Resource Not Found")


class Contact:
    __slots__ = ("id", "fields", "custom", "tags", "created", "created_at", "updated_at")

    def __init__(self, contact_id: str, now: float) -> None:
        self.id = contact_id
        self.fields: dict[str, Any] = {"role": "user"}
        self.custom: dict[str, Any] = {}
        self.tags: dict[str, int] = {}  # tag id -> applied_at
        self.created = now  # to the microsecond, for the search lag
        self.created_at = self.updated_at = int(now)

    def get(self, field: str) -> Any:
        """A field as search compares it (`tag_id`: the set of the contact's tag ids)."""
        if field == "id":
            return self.id
        if field == "tag_id":
            return set(self.tags)
        if field.startswith("custom_attributes."):
            return self.custom.get(field.split(".", 1)[1])
        return self.fields.get(field)


class Workspace:
    """Contacts, tags and custom data attributes; `admin_id` applies tags and creates attributes."""

    def __init__(self, admin_id: str, clock: Callable[[], float]) -> None:
        self.admin_id, self.clock = admin_id, clock
        self.contacts: dict[str, Contact] = {}
        self.by_external: dict[str, Contact] = {}
        self.tags: dict[str, str] = {}  # id -> name
        self._tag_by_name: dict[str, str] = {}  # lower-case name -> id
        self.attributes: dict[str, dict[str, Any]] = {}  # custom contact attribute name -> data_attribute
        self._ids = itertools.count(1)

    def _now(self) -> int:
        return int(self.clock())

    # -- contacts --------------------------------------------------------------------------------

    def contact(self, contact_id: str) -> Contact:
        """The contact with that id; Refused 404 when there is none."""
        contact = self.contacts.get(contact_id)
        if contact is None:
            raise _user_not_found()
        return contact

    def user(self, external_id: str) -> Contact:
        """The user (not lead: "only supports users and not leads") with that external_id."""
        contact = self.by_external.get(external_id)
        if contact is None or contact.fields["role"] != "user":
            raise _user_not_found()
        return contact

    def create_contact(self, body: dict[str, Any]) -> Contact:
        """A new contact from a create body, or Refused."""
        if not any(body.get(name) for name in ("email", "external_id", "role")):
            raise _invalid("Provide at least one of email, external_id or role")
        self._check(body, None)
        contact = Contact(f"{0x6762f0cd1bb69f9f00000000 + next(self._ids):024x}", self.clock())
        self.contacts[contact.id] = contact
        self._apply(contact, body)
        return contact

    def update_contact(self, contact: Contact, body: dict[str, Any]) -> None:
        """Apply an update body, or raise Refused and change nothing."""
        self._check(body, contact)
        self._apply(contact, body)

    def delete_contact(self, contact_id: str) -> Contact:
        """Remove the contact; Refused 404 when there is none."""
        contact = self.contacts.pop(contact_id, None)
        if contact is None:
            raise _user_not_found()
        if contact.fields.get("external_id"):
            self.by_external.pop(contact.fields["external_id"], None)
        return contact

    def _check(self, body: dict[str, Any], contact: Contact | None) -> None:
        """What Intercom refuses in a create or update body (before anything changes)."""
        role = body.get("role")
        if role is not None and role not in ("user", "lead"):
            raise _invalid("role must be either user or lead")
        for name in ("external_id", "email", "phone", "name", "avatar", "owner_id"):
            value = body.get(name)
            if value is not None and not isinstance(value, str):
                raise _invalid(f"{name} must be a string")
        email = body.get("email")
        if email and not EMAIL.match(email):
            raise _invalid("Email address is invalid")  # ours
        if body.get("email_verified") is not None and not email:
            raise _invalid("email_verified must be supplied together with an email")
        for name in TIMES:
            value = body.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise _invalid(f"{name} must be a UNIX timestamp in seconds")
        custom = body.get("custom_attributes")
        if custom is not None and not isinstance(custom, dict):
            raise _invalid("custom_attributes must be an object")
        for name, value in (custom or {}).items():
            attribute = self.attributes.get(name)
            if attribute is None:
                raise _invalid(f"Custom attribute '{name}' does not exist")
            check = _CHECK.get(attribute["data_type"])
            if value is not None and check is not None and not check(value):
                raise _invalid(f"Custom attribute '{name}' expects a {attribute['data_type']} value")
        self._check_conflict(body, contact)

    def _check_conflict(self, body: dict[str, Any], contact: Contact | None) -> None:
        external_id = body.get("external_id")
        holder: Contact | None = None
        if external_id:
            holder = self.by_external.get(external_id)
        elif contact is None and body.get("email") and body.get("role", "user") == "user":
            email = body["email"].lower()
            holder = next((c for c in self.contacts.values()
                           if c.fields["role"] == "user" and str(c.fields.get("email") or "").lower() == email), None)
        if holder is not None and holder is not contact:
            raise Refused(409, "conflict", f"A contact matching those details already exists with id={holder.id}")

    def _apply(self, contact: Contact, body: dict[str, Any]) -> None:
        old = contact.fields.get("external_id")
        for name in WRITABLE:
            if name in body:
                contact.fields[name] = body[name]
        for name, value in (body.get("custom_attributes") or {}).items():
            contact.custom[name] = value
        new = contact.fields.get("external_id")
        if old != new:
            if old is not None:
                self.by_external.pop(old, None)
            if new:
                self.by_external[new] = contact
        contact.updated_at = self._now()

    def render(self, contact: Contact) -> dict[str, Any]:
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

    def tag(self, tag_id: str, applied_at: int | None = None) -> dict[str, Any]:
        """A tag object; with `applied_at`, as attached to a contact."""
        tag = {"type": "tag", "id": tag_id, "name": self.tags[tag_id]}
        if applied_at is not None:
            tag.update(applied_at=applied_at, applied_by={"type": "admin", "id": self.admin_id})
        return tag

    def save_tag(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """`POST /tags`: create, rename (with "id") or find a tag, and tag the "users" listed;
        returns the answer and whether a tag was created."""
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or "companies" in body:
            raise _invalid("invalid tag parameters")
        created = False
        if body.get("id") is not None:  # rename
            tag_id = str(body["id"])
            if tag_id not in self.tags:
                raise _tag_not_found()
            self._tag_by_name.pop(self.tags[tag_id].lower(), None)
            self.tags[tag_id] = name
            self._tag_by_name[name.lower()] = tag_id
        elif name.lower() in self._tag_by_name:  # an existing tag keeps its spelling
            tag_id = self._tag_by_name[name.lower()]
        else:
            tag_id = str(100 + len(self.tags))
            self.tags[tag_id] = name
            self._tag_by_name[name.lower()] = tag_id
            created = True
        answer = {**self.tag(tag_id), "users": [], "companies": []}
        for user in body.get("users") or []:  # "Tag Multiple Users"
            contact = self.contacts.get(str(user.get("id"))) if isinstance(user, dict) else None
            if contact is not None:
                contact.tags.setdefault(tag_id, self._now())
            answer["users"].append({"id": str(user.get("id")) if isinstance(user, dict) else None,
                                    "tagged": contact is not None})
        return answer, created

    def attach_tag(self, contact: Contact, body: dict[str, Any]) -> dict[str, Any]:
        """Tag the contact with the tag `body["id"]`; the tag as attached."""
        tag_id = body.get("id")
        if not isinstance(tag_id, (str, int)) or isinstance(tag_id, bool):
            raise _invalid("id is required")
        tag_id = str(tag_id)
        if tag_id not in self.tags:
            raise _tag_not_found()
        return self.tag(tag_id, contact.tags.setdefault(tag_id, self._now()))

    def detach_tag(self, contact: Contact, tag_id: str) -> dict[str, Any]:
        """Untag the contact; the tag as it was attached (now, if it was not)."""
        if tag_id not in self.tags:
            raise _tag_not_found()
        applied_at = contact.tags.pop(tag_id, None)
        return self.tag(tag_id, applied_at if applied_at is not None else self._now())

    # -- data attributes -------------------------------------------------------------------------

    def new_attribute(self, name: str, data_type: str, description: str) -> dict[str, Any]:
        """Define a custom contact attribute; its data_attribute object."""
        now = self._now()
        attribute = {"id": len(self.attributes) + 30, "type": "data_attribute", "name": name,
                     "full_name": f"custom_attributes.{name}", "label": name, "description": description,
                     "data_type": "date" if data_type == "datetime" else data_type, "api_writable": True,
                     "ui_writable": False, "messenger_writable": False, "custom": True, "archived": False,
                     "admin_id": self.admin_id, "created_at": now, "updated_at": now, "model": "contact"}
        self.attributes[name] = attribute
        return attribute

    def data_attributes(self, model: str | None) -> list[dict[str, Any]]:
        """`GET /data_attributes?model=`: the standard contact attributes, then the custom ones."""
        if model not in (None, "contact", "company"):
            raise Refused(422, "parameter_invalid", f"model={model} is not supported")
        data: list[dict[str, Any]] = []
        if model in (None, "contact"):
            data = [{"type": "data_attribute", "name": name, "full_name": name, "label": name.replace("_", " ").title(),
                     "data_type": "date" if name in TIMES else "boolean" if name.startswith("unsub") else "string",
                     "api_writable": True, "ui_writable": False, "messenger_writable": False, "custom": False,
                     "archived": False, "model": "contact"} for name in STANDARD_ATTRIBUTES]
            data += list(self.attributes.values())
        return data

    def create_attribute(self, body: dict[str, Any]) -> dict[str, Any]:
        """`POST /data_attributes`: a new custom contact attribute, or Refused."""
        name, model, data_type = body.get("name"), body.get("model"), body.get("data_type")
        if model not in ("contact", "company"):
            raise _invalid("The Data Attribute model field must be either contact or company")
        if not isinstance(name, str) or not ATTRIBUTE_NAME.match(name):
            raise _invalid("Your name for this attribute must only contain alphanumeric "
                           "characters, currency symbols, and hyphens")
        if data_type not in (*DATA_TYPES, "options"):
            raise _invalid("Data Type isn't an option")
        if data_type == "options" and len(body.get("options") or []) < 2:
            raise _invalid("A list attribute needs at least two options")
        if model == "company":
            raise _invalid("Company attributes are not emulated")  # ours
        if name in self.attributes or name in STANDARD_ATTRIBUTES:
            raise _invalid(f"You already have '{name}' in your people data. "
                           "To save this as new people data, use a different name.")
        return self.new_attribute(name, "string" if data_type == "options" else data_type,
                                  str(body.get("description") or ""))
