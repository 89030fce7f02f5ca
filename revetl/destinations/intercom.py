"""Intercom: contacts by `external_id` (or `email`); membership is a tag named after the audience.

Intercom has no batch endpoint: every contact is its own chain of requests. So a batch is one
contact (the vendor's per-request unit) and `concurrency` means what the engine says it means,
contacts (so requests) in flight: 64 by default, enough to keep the 1,667-per-10-s limit busy at
up to ~700 ms a request, while the engine's rate limiter keeps it from being exceeded. One-row
batches also mean no batch waits for its slowest contact (one in 429 backoff would hold the rest);
`send` still takes any number of rows and runs them concurrently. Per row:

    change         PUT /contacts/{dest_ref} (the id an earlier run stored); its add attached the tag
    add            POST /contacts; a 409 names the existing contact: PUT /contacts/{id};
                   then POST /contacts/{id}/tags
                   (a change whose contact is gone, 404, or has no dest_ref is done as an add)
    remove         DELETE /contacts/{id}/tags/{tag_id} (a 404 means "not a member": done); the
                   contact and its attributes stay

Creating first costs 2 requests for a new contact and 3 for one that exists (find-first costs 3
either way), and never asks search, whose results lag creation by minutes. A contact id is only
looked up (GET /contacts/find_by_external_id, or search by email) when a 409 does not name one,
a remove has no `dest_ref`, or a stored id is gone (404: deleted in Intercom).

Mapped fields go to the contact's standard fields (email, name, phone, ...) or to
`custom_attributes` (any other name, or `custom_attributes.NAME`). Custom attributes must exist
in the workspace: set-up (before the first row; a run with nothing to send sends nothing) creates
the missing ones when `create_attributes: true` (type from `attribute_types`, default string),
else stops before anything is sent and names them. Then it creates the tag (`POST /tags` by name
returns the existing one, so this is idempotent).
Limit: 10,000 calls a minute per app, enforced in 10-second windows: 1,667 per 10 s.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import orjson
from pydantic import Field, SecretStr, model_validator

from revetl.config import Strict, validate
from revetl.destinations.base import Destination, DestinationConfig, HttpOptions, Row, RowResult
from revetl.errors import RowRejected

if TYPE_CHECKING:
    import httpx

    from revetl.sync.http import Http

__all__ = ["Intercom", "IntercomConfig"]

REGIONS = {"US": "https://api.intercom.io", "EU": "https://api.eu.intercom.io", "AU": "https://api.au.intercom.io"}
# Writable top-level fields of Intercom's create/update contact request; anything else is custom.
STANDARD = frozenset({"external_id", "email", "phone", "name", "avatar", "signed_up_at", "last_seen_at", "owner_id",
                      "unsubscribed_from_emails", "email_verified"})
TIMESTAMPS = frozenset({"signed_up_at", "last_seen_at"})
CUSTOM_PREFIX = "custom_attributes."
CONFLICT_ID = re.compile(r"\bid=([0-9A-Za-z_-]+)")


class IntercomConfig(DestinationConfig):
    """The `destination:` block of an Intercom sync."""

    base_url: str = ""  # default: the region's API host
    region: Literal["US", "EU", "AU"] = "US"
    token: SecretStr
    intercom_version: str = Field("2.16", pattern=r"^2\.\d{1,2}$")
    create_attributes: bool = False  # create missing custom attributes (POST /data_attributes)
    attribute_types: dict[str, Literal["string", "integer", "float", "boolean", "date"]] = {}

    @model_validator(mode="before")
    @classmethod
    def _region_url(cls, data: Any) -> Any:
        if isinstance(data, dict):
            region = str(data.get("region") or "US").upper()
            data = {**data, "region": region}
            if not data.get("base_url") and region in REGIONS:
                data["base_url"] = REGIONS[region]
        return data


class Membership(Strict):
    tag: str | None = None  # default: the audience's name


def describe(response: httpx.Response) -> str:
    """Intercom's error list as "code: message; ..." (never a header, so never the token)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors:
        parts = [f"{e.get('code')}: {e.get('message')}" if isinstance(e, dict) else str(e) for e in errors]
        return "; ".join(parts)[:300]
    return str(body)[:200]


def _timestamp(value: Any) -> Any:
    """An ISO-8601 text (as the plan serialises timestamps) -> UNIX seconds, which Intercom wants."""
    if not isinstance(value, str):
        return value
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value  # Intercom rejects it for this row, with its own message
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return int(parsed.timestamp())


class Intercom(Destination[IntercomConfig]):
    type = "intercom"
    identifiers = ("external_id", "email")
    max_batch_size = 1
    default_concurrency = 64
    published_rate_limit = (1667, 10.0)

    def configure(self) -> None:
        self.membership: Membership = validate(Membership, self.sync.membership, self.sync.path, where=" membership")
        self.tag_name = self.membership.tag or self.sync.audience
        self.custom = sorted({name for f in self.sync.fields.values() if (name := self._custom_name(f))})
        self.tag_id: str | None = None
        self._setup_lock = asyncio.Lock()
        self._setup_error: Exception | None = None

    @staticmethod
    def _custom_name(field: str) -> str | None:
        if field.startswith(CUSTOM_PREFIX):
            return field[len(CUSTOM_PREFIX):]
        return None if field in STANDARD else field

    def http_options(self) -> HttpOptions:
        config = self.config
        return HttpOptions(headers={"Authorization": f"Bearer {config.token.get_secret_value()}",
                                    "Intercom-Version": config.intercom_version, "Accept": "application/json",
                                    "Content-Type": "application/json"},
                           describe=describe)

    def check(self) -> list[str]:
        fields = self.sync.fields.values()
        notes = [f"`{self.sync.identity.to}` is the identity; mapping a field to it too is ignored"
                 for f in fields if f == self.sync.identity.to]
        if self.custom and not self.config.create_attributes:
            notes.append(f"custom attributes {', '.join(self.custom)} must exist in Intercom "
                         "(or set `create_attributes: true`)")
        return notes

    # -- set-up ----------------------------------------------------------------------------------

    async def setup(self, http: Http) -> None:
        """Nothing yet: set-up waits for the first row, so a run with nothing to send sends nothing."""
        self._setup_lock = asyncio.Lock()  # one per run: each run has its own event loop
        self._setup_error = None
        self.tag_id = None

    async def _set_up(self, http: Http) -> None:
        """Once, before the first row: check (or create) the custom attributes, then find or
        create the membership tag. A failure is kept and raised to every later caller, so
        concurrent first batches do not each repeat a request that failed fatally."""
        async with self._setup_lock:
            if self._setup_error is not None:
                raise self._setup_error
            if self.tag_id is not None:
                return
            try:
                await self._prepare(http)
            except Exception as exc:  # not a cancellation: that is no answer to remember
                self._setup_error = exc
                raise

    async def _prepare(self, http: Http) -> None:
        if self.custom:
            await self._ensure_attributes(http)
        response = await http.request("POST", "/tags", content=orjson.dumps({"name": self.tag_name}))
        if response.status_code != 200:
            raise self.fatal(f"intercom could not create the tag {self.tag_name!r}: {describe(response)}",
                             response.status_code)
        self.tag_id = str(response.json()["id"])

    async def _ensure_attributes(self, http: Http) -> None:
        response = await http.request("GET", "/data_attributes", params={"model": "contact"})
        if response.status_code != 200:
            raise self.fatal(f"intercom could not list data attributes: {describe(response)}", response.status_code)
        existing = {a.get("name") for a in response.json().get("data", []) if a.get("custom") and not a.get("archived")}
        missing = [name for name in self.custom if name not in existing]
        if not missing:
            return
        config = self.config
        if not config.create_attributes:
            raise self.fatal(
                f"{self.sync.path}: Intercom has no custom contact attribute {', '.join(repr(m) for m in missing)}; "
                "create it in Intercom or set `create_attributes: true` under `destination:` (nothing was sent)")
        for name in missing:
            body = {"name": name, "model": "contact", "data_type": config.attribute_types.get(name, "string"),
                    "description": f"Synced by revetl (sync {self.sync.name})"}
            created = await http.request("POST", "/data_attributes", content=orjson.dumps(body))
            # A 400 "already have" means another run created it meanwhile: what we wanted.
            if created.status_code != 200 and "already have" not in describe(created):
                raise self.fatal(f"intercom could not create custom attribute {name!r}: {describe(created)}",
                                 created.status_code)
        self.notes.append(f"created custom attributes {', '.join(missing)} in Intercom")

    # -- rows ------------------------------------------------------------------------------------

    async def send(self, http: Http, rows: Sequence[Row]) -> list[RowResult]:
        if self.tag_id is None:
            await self._set_up(http)
        return list(await asyncio.gather(*(self._one(http, row) for row in rows)))

    async def _one(self, http: Http, row: Row) -> RowResult:
        try:
            if row.op == "remove":
                return await self._remove(http, row)
            body = self.contact_body(row)
            contact_id = row.dest_ref
            if contact_id is not None:
                response = await self._put(http, contact_id, body)
                if response.status_code == 200:
                    if row.op != "add":  # a change keeps the tag its add attached
                        return RowResult(True, dest_ref=contact_id)
                    await self._tag(http, row.key, contact_id)
                    return RowResult(True, dest_ref=contact_id)
                if response.status_code not in (404, 410):  # 404/410: gone from Intercom, create it again
                    raise self._refused(row.key, response)
            contact_id = await self._upsert(http, row, body)
            await self._tag(http, row.key, contact_id)
            return RowResult(True, dest_ref=contact_id)
        except RowRejected as rejected:
            return RowResult.of(rejected)

    def _refused(self, key: str, response: httpx.Response) -> RowRejected:
        """Intercom refused one of the row's requests: the row fails with Intercom's reason."""
        request = response.request
        return self.rejected(key, f"intercom {response.status_code} on {request.method} {request.url.path}: "
                                  f"{describe(response)}")

    def contact_body(self, row: Row) -> dict[str, Any]:
        """The create/update body for one row: identity, standard fields, custom attributes."""
        body: dict[str, Any] = {}
        custom: dict[str, Any] = {}
        for field, value in row.fields.items():
            name = self._custom_name(field)
            if name is not None:
                custom[name] = value
            else:
                body[field] = _timestamp(value) if field in TIMESTAMPS else value
        body[self.sync.identity.to] = row.key
        if custom:
            body["custom_attributes"] = custom
        return body

    async def _upsert(self, http: Http, row: Row, body: dict[str, Any]) -> str:
        """Create the contact, or update the one a 409 says exists; its id."""
        response = await http.request("POST", "/contacts", content=orjson.dumps({"role": "user", **body}))
        if response.status_code == 200:
            return str(response.json()["id"])
        if response.status_code != 409:
            raise self._refused(row.key, response)
        # Already there (or our own create, retried after a lost answer): update that contact.
        found = CONFLICT_ID.search(describe(response))
        contact_id = found.group(1) if found else await self._find(http, row.key)
        if contact_id is None:
            raise self._refused(row.key, response)
        updated = await self._put(http, contact_id, body)
        if updated.status_code != 200:
            raise self._refused(row.key, updated)
        return contact_id

    async def _put(self, http: Http, contact_id: str, body: dict[str, Any]) -> httpx.Response:
        return await http.request("PUT", f"/contacts/{quote(contact_id, safe='')}", content=orjson.dumps(body))

    async def _tag(self, http: Http, key: str, contact_id: str) -> None:
        response = await http.request("POST", f"/contacts/{quote(contact_id, safe='')}/tags",
                                      content=orjson.dumps({"id": self.tag_id}))
        if response.status_code != 200:
            raise self._refused(key, response)

    async def _remove(self, http: Http, row: Row) -> RowResult:
        contact_id = row.dest_ref or await self._find(http, row.key)
        if contact_id is None:
            return RowResult(True)  # no such contact in Intercom: it carries no tag
        path = f"/contacts/{quote(contact_id, safe='')}/tags/{quote(str(self.tag_id), safe='')}"
        response = await http.request("DELETE", path)
        if response.status_code not in (200, 404):  # 404: the contact is gone, so it is no member either
            raise self._refused(row.key, response)
        return RowResult(True, dest_ref=contact_id)

    async def _find(self, http: Http, key: str) -> str | None:
        """The id of the user with this key, or None. Only for contacts not created in this run:
        search by email lags creation by minutes; find_by_external_id does not."""
        if self.sync.identity.to == "external_id":
            response = await http.request("GET", f"/contacts/find_by_external_id/{quote(key, safe='')}")
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise self._refused(key, response)
            return str(response.json()["id"])
        query = {"query": {"field": "email", "operator": "=", "value": key}, "pagination": {"per_page": 5}}
        response = await http.request("POST", "/contacts/search", content=orjson.dumps(query))
        if response.status_code != 200:
            raise self._refused(key, response)
        users = [c for c in response.json().get("data", []) if c.get("role") == "user"]
        return str(users[0]["id"]) if users else None
