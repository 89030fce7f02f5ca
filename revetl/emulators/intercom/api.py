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
- Search lags creation: a contact is found by `POST /contacts/search` only `search_lag` seconds
  (default 120; Intercom: "can take a few minutes") after it was created. Reads by id and
  `GET /contacts/find_by_external_id/{external_id}` (users only) see it at once.
- `POST /events {event_name, created_at, user_id | id, metadata}` answers 202 with an empty body, 404 when
  the user cannot be found; a repeat (same contact, name and created_at) is accepted and not kept twice.
- `POST /tags {name}` creates the tag or returns the one with that name; `POST /contacts/{id}/tags
  {id}` attaches, `DELETE /contacts/{id}/tags/{tag_id}` detaches. Contacts' and tags' rules, and
  the data attributes a contact may hold: see `workspace.py`; the query language: `search.py`.

Control: GET /_emulator/contacts (?external_id=, ?email=) lists contacts with their tag names.
"""

from __future__ import annotations

import hmac
import itertools
import math
import os
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from revetl.emulators.base import Emulator, Outcome, Request, Response, Route
from revetl.emulators.intercom.search import SearchError, search
from revetl.emulators.intercom.workspace import DATA_TYPES, Contact, Refused, Workspace
from revetl.errors import ConfigError

__all__ = ["IntercomEmulator"]

VERSIONS = frozenset({"1.0", "1.1", "1.2", "1.3", "1.4", *(f"2.{n}" for n in range(17))})
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")

Handler = Callable[[Request], Response]


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
        paths: dict[str, dict[str, Handler]] = {  # in matching order: /contacts/search before /contacts/{id}
            "/contacts": {"POST": self.create_contact},
            "/contacts/search": {"POST": self.search_contacts},
            "/contacts/find_by_external_id/{external_id}": {"GET": self.find_by_external_id},
            "/contacts/{contact_id}": {"GET": self.get_contact, "PUT": self.update_contact,
                                       "DELETE": self.delete_contact},
            "/contacts/{contact_id}/tags": {"GET": self.contact_tags, "POST": self.attach_tag},
            "/contacts/{contact_id}/tags/{tag_id}": {"DELETE": self.detach_tag},
            "/tags": {"GET": self.list_tags, "POST": self.create_tag},
            "/data_attributes": {"GET": self.list_attributes, "POST": self.create_attribute},
            "/events": {"POST": self.create_event},
        }
        return [Route(method, path, self._answering(handler))
                for path, methods in paths.items() for method, handler in methods.items()]

    def control_routes(self) -> Iterable[Route]:
        return [Route("GET", "/_emulator/contacts", self.dump_contacts),
                Route("GET", "/_emulator/events", lambda _: Response(200, {"count": len(self.events),
                                                                           "events": self.events}))]

    def reset_state(self) -> None:
        self.workspace = Workspace(self.config["admin_id"], self.clock)
        self.events: list[dict[str, Any]] = []  # data events, once each (Intercom's de-duplication)
        self._event_keys: set[tuple[str, str, int]] = set()
        self._request_ids = itertools.count(1)
        attributes = self.config["custom_attributes"]  # validated in __init__, after this first reset
        for name, data_type in (attributes.items() if isinstance(attributes, dict) else ()):
            self.workspace.new_attribute(name, data_type, "")

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

    def _answering(self, handler: Handler) -> Handler:
        """`handler`, with what the workspace refuses answered as Intercom's error list."""
        def answer(request: Request) -> Response:
            try:
                return handler(request)
            except Refused as refused:
                return self.error(refused.status, refused.code, str(refused))
        return answer

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise Refused(400, "parameter_invalid", "The request body must be a JSON object")
        return body

    # -- contacts --------------------------------------------------------------------------------

    def create_contact(self, request: Request) -> Response:
        contact = self.workspace.create_contact(self._body(request))
        self.count_applied("contacts_created")
        return Response(200, self.workspace.render(contact))

    def update_contact(self, request: Request) -> Response:
        contact = self.workspace.contact(request.params["contact_id"])
        self.workspace.update_contact(contact, self._body(request))
        self.count_applied("contacts_updated")
        return Response(200, self.workspace.render(contact))

    def get_contact(self, request: Request) -> Response:
        return Response(200, self.workspace.render(self.workspace.contact(request.params["contact_id"])))

    def find_by_external_id(self, request: Request) -> Response:
        return Response(200, self.workspace.render(self.workspace.user(request.params["external_id"])))

    def delete_contact(self, request: Request) -> Response:
        contact = self.workspace.delete_contact(request.params["contact_id"])
        return Response(200, {"type": "contact", "id": contact.id, "external_id": contact.fields.get("external_id"),
                               "deleted": True})

    def search_contacts(self, request: Request) -> Response:
        body = self._body(request)
        indexed_before = self.clock() - self.config["search_lag"]
        visible = [c for c in self.workspace.contacts.values() if c.created <= indexed_before]
        try:
            return Response(200, search(body, visible, Contact.get, self.workspace.render))
        except SearchError as exc:
            return self.error(400, exc.code, str(exc))

    def create_event(self, request: Request) -> Response:
        """`POST /events`: 202 with no body; a user that cannot be found is 404. An event with the same
        contact, name and `created_at` as one received before is accepted and not kept twice."""
        body = self._body(request)
        if not isinstance(body.get("event_name"), str) or not body["event_name"]:
            raise Refused(400, "parameter_invalid", "event_name is required")
        if isinstance(body.get("created_at"), bool) or not isinstance(body.get("created_at"), int):
            raise Refused(400, "parameter_invalid", "created_at must be a UNIX timestamp")
        if body.get("user_id"):
            contact = self.workspace.user(str(body["user_id"]))
        elif body.get("id"):
            contact = self.workspace.contact(str(body["id"]))
        else:
            raise Refused(400, "parameter_invalid", "one of user_id, id or email is required")
        key = (contact.id, body["event_name"], body["created_at"])
        if key not in self._event_keys:
            self._event_keys.add(key)
            self.events.append({**body, "contact_id": contact.id})
            self.count_applied("events")
        return Response(202, b"", content_type="text/plain")

    # -- tags ------------------------------------------------------------------------------------

    def list_tags(self, request: Request) -> Response:
        return Response(200, {"type": "list", "data": [self.workspace.tag(tag_id) for tag_id in self.workspace.tags]})

    def create_tag(self, request: Request) -> Response:
        answer, created = self.workspace.save_tag(self._body(request))
        if created:
            self.count_applied("tags_created")
        return Response(200, answer)

    def contact_tags(self, request: Request) -> Response:
        contact = self.workspace.contact(request.params["contact_id"])
        return Response(200, {"type": "list", "data": [self.workspace.tag(t, at) for t, at in contact.tags.items()]})

    def attach_tag(self, request: Request) -> Response:
        contact = self.workspace.contact(request.params["contact_id"])
        tag = self.workspace.attach_tag(contact, self._body(request))
        self.count_applied("tags_attached")
        return Response(200, tag)

    def detach_tag(self, request: Request) -> Response:
        contact = self.workspace.contact(request.params["contact_id"])
        tag = self.workspace.detach_tag(contact, request.params["tag_id"])
        self.count_applied("tags_detached")
        return Response(200, tag)

    # -- data attributes -------------------------------------------------------------------------

    def list_attributes(self, request: Request) -> Response:
        return Response(200, {"type": "list", "data": self.workspace.data_attributes(request.query.get("model"))})

    def create_attribute(self, request: Request) -> Response:
        attribute = self.workspace.create_attribute(self._body(request))
        self.count_applied("data_attributes_created")
        return Response(200, attribute)

    # -- /_emulator/contacts ---------------------------------------------------------------------

    def dump_contacts(self, request: Request) -> Response:
        """Every contact (or those with ?external_id= / ?email=), with tag names instead of ids."""
        workspace = self.workspace
        contacts: Iterable[Contact] = workspace.contacts.values()
        if "external_id" in request.query:
            contacts = [c for c in [workspace.by_external.get(request.query["external_id"])] if c]
        elif "email" in request.query:
            wanted = request.query["email"].lower()
            contacts = [c for c in contacts if str(c.fields.get("email") or "").lower() == wanted]
        rendered = [{"id": c.id, "external_id": None, "email": None, **c.fields, "custom_attributes": dict(c.custom),
                     "tags": sorted(workspace.tags[t] for t in c.tags), "created_at": c.created_at} for c in contacts]
        return Response(200, {"count": len(rendered), "contacts": rendered})
