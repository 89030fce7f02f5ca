"""Salesforce REST API emulator: OAuth client credentials, sObject Collections, SOQL, the daily API limit.

What it relies on (Salesforce Help "OAuth 2.0 Client Credentials Flow for Server-to-Server
Integration"; REST API Developer Guide "Upsert/Create/Update/Delete Records Using sObject
Collections", "Limit Info Header", "Status Codes and Error Responses"; texts seen in answers quoted
by public client issue trackers and test suites):

- `POST /services/oauth2/token` (the org's My Domain), form-encoded `grant_type=client_credentials`,
  `client_id`, `client_secret` -> 200 {"access_token", "signature", "scope", "instance_url", "id",
  "token_type": "Bearer", "issued_at"}. Refusals are `400 {"error", "error_description"}`: unknown
  client `invalid_client_id` "client identifier invalid", wrong secret `invalid_client` "invalid
  client credentials", another grant `unsupported_grant_type` "grant type not supported".
- REST calls carry `Authorization: Bearer <token>` (or `OAuth <token>`); a missing, unknown or
  expired token is `401 [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]`.
- Every REST answer carries `Sforce-Limit-Info: api-usage=N/M`: calls in the last 24 hours / the
  daily allocation. Once N reaches M a call is `403 [{"message": "TotalRequests Limit exceeded.",
  "errorCode": "REQUEST_LIMIT_EXCEEDED"}]` (the emulator grants no temporary overage).
- Error bodies are arrays of {"message", "errorCode"} (plus "fields" where Salesforce adds them).
- sObject Collections (a request's records, all or none, locks: see `composite.py`), `200` with
  one result per record, in order:
      PATCH .../composite/sobjects/{Object}/{ExternalIdField}   upsert (API 46.0+), results with "created"
      POST  .../composite/sobjects                               create
      PATCH .../composite/sobjects                               update by "id"
      DELETE .../composite/sobjects?ids=a,b[&allOrNone=true]    delete
  An upsert by a field that is not a custom field: `404 NOT_FOUND` "Provided external ID field
  does not exist or is not accessible: ...". An unknown object or API version: `404 NOT_FOUND`.
- `GET .../query?q=` runs the SOQL subset of soql.py; `POST .../sobjects/{Object}`
  creates one record (201); `GET .../limits` gives DailyApiRequests {Max, Remaining}.
- Record locks (another transaction holds the row): `UNABLE_TO_LOCK_ROW` for a share of records
  (`lock_share`) or for chosen ones (`POST /_emulator/locks`).

Ours, not Salesforce's: the injected 429 of the common fault options (Salesforce has no
per-second limit; it is there so clients prove they survive one), MISSING_ARGUMENT for a record
without its External ID value, and the control endpoints:
    GET /_emulator/records?object=Contact[&field=F&value=V]    the org's records
    POST /_emulator/limits {"used": N, "limit": M}             set the daily usage
    POST /_emulator/expire-tokens                              every session expires now
    POST /_emulator/locks {"values": [...], "times": n}        those External ID values or record
                                                               ids fail to lock the next n times
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from revetl.emulators.base import Emulator, Request, Response, Route
from revetl.emulators.salesforce.composite import (
    MAX_RECORDS,
    TOO_MANY,
    Item,
    Refused,
    parse_records,
    refusal,
    write_all,
)
from revetl.emulators.salesforce.org import Org, SObjectType, error, failed
from revetl.emulators.salesforce.soql import QueryError, run_query
from revetl.errors import ConfigError

__all__ = ["SalesforceEmulator"]

TOKEN_PATH = "/services/oauth2/token"
DATA = "/services/data/{version}"
ORG_ID = "00DRv0000000001"
NEWEST_VERSION = 66  # Spring '26
NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]
_VERSION = re.compile(r"v(\d+)\.0\Z")


class SalesforceEmulator(Emulator):
    """One Salesforce org behind its My Domain: OAuth, sObject Collections, SOQL, daily limit, locks.

    Options beyond the common ones: `client_id` (default $SALESFORCE_CLIENT_ID, else "dev-client"),
    `client_secret` ($SALESFORCE_CLIENT_SECRET, else "dev-secret"), `daily_limit` (100,000, an
    Enterprise org's base allocation), `api_usage` (calls already used today, 0), `token_ttl`
    (seconds a session lives; None: until /_emulator/expire-tokens), `lock_share` (share of records
    answered UNABLE_TO_LOCK_ROW, 0), `campaigns` (names of the Campaigns the org starts with).
    """

    name = "salesforce"
    default_port = 8092
    default_rate_limit = None  # Salesforce counts calls per day (Sforce-Limit-Info), not per second
    extra_options = {"client_id": None, "client_secret": None, "daily_limit": 100_000, "api_usage": 0,
                     "token_ttl": None, "lock_share": 0.0, "campaigns": ["Power Users"]}

    def __init__(self, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        config = self.config
        self._client_id = config["client_id"] or os.environ.get("SALESFORCE_CLIENT_ID") or "dev-client"
        secret = config["client_secret"] or os.environ.get("SALESFORCE_CLIENT_SECRET") or "dev-secret"
        self._secret = secret.encode()  # compared, never logged or echoed
        for name in ("daily_limit", "api_usage"):
            if isinstance(config[name], bool) or not isinstance(config[name], int) or config[name] < 0:
                raise ConfigError(f"Salesforce option {name!r} must be a whole number of calls.")
        if not 0.0 <= float(config["lock_share"]) <= 1.0:
            raise ConfigError("Salesforce option 'lock_share' must be between 0 and 1.")
        if config["token_ttl"] is not None and float(config["token_ttl"]) <= 0:
            raise ConfigError("Salesforce option 'token_ttl' must be a positive number of seconds or None.")
        self.reset_state()

    def routes(self) -> Iterable[Route]:
        collections = f"{DATA}/composite/sobjects"
        return [
            Route("POST", TOKEN_PATH, self.token),
            Route("PATCH", f"{collections}/{{object}}/{{field}}", self.upsert),
            Route("POST", collections, self.create),
            Route("PATCH", collections, self.update),
            Route("DELETE", collections, self.delete),
            Route("GET", f"{DATA}/query", self.query),
            Route("POST", f"{DATA}/sobjects/{{object}}", self.create_one),
            Route("GET", f"{DATA}/limits", self.limits),
        ]

    def control_routes(self) -> Iterable[Route]:
        return [Route("GET", "/_emulator/records", self.list_records),
                Route("POST", "/_emulator/limits", self.set_limits),
                Route("POST", "/_emulator/expire-tokens", self.expire_tokens),
                Route("POST", "/_emulator/locks", self.set_locks)]

    def reset_state(self) -> None:
        if not hasattr(self, "_secret"):
            return  # Emulator.__init__ resets before this class has read its options
        self.org = Org()
        self._tokens: dict[str, float | None] = {}  # access token -> expiry (clock), None: no expiry
        self._locks: dict[str, int] = {}
        self.api_limit, self.api_used = self.config["daily_limit"], self.config["api_usage"]
        campaigns = self.org.sobject("Campaign")
        assert campaigns is not None
        for name in self.config["campaigns"] or ():
            self.org.create(campaigns, {"Name": name, "IsActive": True, "Status": "In Progress"})

    # -- vendor hooks ----------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        if request.route == TOKEN_PATH:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        expiry = self._tokens.get(token.strip(), 0.0) if scheme.lower() in ("bearer", "oauth") else 0.0
        if expiry is not None and expiry <= self.clock():
            if expiry:
                self._tokens.pop(token.strip(), None)
            return Response(401, refusal("INVALID_SESSION_ID", "Session expired or invalid"),
                            {"WWW-Authenticate": 'Token'})
        if self.api_used >= self.api_limit:
            return self._answer(403, refusal("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."))
        self.api_used += 1  # the call reached the org: it counts, whatever happens next
        return None

    def _record(self, request: Request) -> dict[str, Any] | None:
        entry = super()._record(request)
        if entry is not None and request.path == TOKEN_PATH:
            form = [(k, "[redacted]" if k == "client_secret" else v) for k, v in parse_qsl(request.body.decode())]
            entry["body"] = urlencode(form).encode()
        return entry

    def _answer(self, status: int, body: Any) -> Response:
        return Response(status, body, {"Sforce-Limit-Info": f"api-usage={self.api_used}/{self.api_limit}"})

    # -- OAuth -----------------------------------------------------------------------------------

    def token(self, request: Request) -> Response:
        """Client credentials flow: a new session for the integration user, or Salesforce's refusal."""
        form = dict(parse_qsl(request.body.decode("utf-8", "replace")))
        if form.get("grant_type") != "client_credentials":
            return Response(400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
        if not hmac.compare_digest(form.get("client_id", "").encode(), self._client_id.encode()):
            return Response(400, {"error": "invalid_client_id", "error_description": "client identifier invalid"})
        if not hmac.compare_digest(form.get("client_secret", "").encode(), self._secret):
            return Response(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
        token = f"{ORG_ID}!{secrets.token_urlsafe(72)}"
        ttl = self.config["token_ttl"]
        self._tokens[token] = self.clock() + float(ttl) if ttl is not None else None
        instance = f"http://{request.headers.get('host', '127.0.0.1')}"
        issued = str(int(time.time() * 1000))
        signature = base64.b64encode(hmac.new(self._secret, f"{instance}{issued}".encode(), hashlib.sha256).digest())
        return Response(200, {"access_token": token, "signature": signature.decode(), "scope": "api",
                              "instance_url": instance, "id": f"{instance}/id/{ORG_ID}AAA/005Rv0000000001AAA",
                              "token_type": "Bearer", "issued_at": issued})

    # -- sObject Collections ---------------------------------------------------------------------

    def upsert(self, request: Request) -> Response:
        """Upsert up to 200 records of one object by an External ID field."""
        sobject, refused = self._sobject(request, 46)
        if refused:
            return refused
        assert sobject is not None
        external = sobject.canonical(request.params["field"])
        if external is None or not external.endswith("__c"):
            message = f"Provided external ID field does not exist or is not accessible: {request.params['field']}"
            return self._answer(404, refusal("NOT_FOUND", message))
        return self._write(
            request, "upserted", lambda name: sobject if name.lower() == sobject.name.lower() else None,
            lambda s, v: v.get(external),
            lambda s, v: self.org.upsert_problem(s, external, v), lambda s, v: self.org.upsert(s, external, v))

    def create(self, request: Request) -> Response:
        """Create up to 200 records (of any objects)."""
        if refused := self._version(request, 42):
            return refused
        return self._write(request, "created", self.org.sobject, lambda s, v: v.get("ContactId") or v.get("LeadId"),
                           self.org.create_problem, self.org.create)

    def update(self, request: Request) -> Response:
        """Update up to 200 records by id (each record's "id" is under "Id": the record, not a field)."""
        if refused := self._version(request, 42):
            return refused
        missing = error("MISSING_ARGUMENT", "Id not specified in an update call", [])

        def check(sobject: SObjectType, values: dict[str, Any]) -> dict[str, Any] | None:
            rid = values.get("Id")
            return missing if rid is None else self.org.update_problem(sobject, rid, _without_id(values))

        def apply(sobject: SObjectType, values: dict[str, Any]) -> dict[str, Any]:
            rid = values.get("Id")
            return failed(missing) if rid is None else self.org.update(sobject, rid, _without_id(values))

        return self._write(request, "updated", self.org.sobject, lambda s, v: v.get("Id"), check, apply)

    def delete(self, request: Request) -> Response:
        """Delete up to 200 records by id (`?ids=a,b`)."""
        if refused := self._version(request, 42):
            return refused
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        if not ids:
            return self._answer(400, refusal("MISSING_ARGUMENT", "ids: required parameter missing"))
        if len(ids) > MAX_RECORDS:
            return self._answer(400, TOO_MANY)
        all_or_none = request.query.get("allOrNone", "false").lower() == "true"
        return self._results("deleted", [(None, {"Id": i}) for i in ids], all_or_none, lambda s, v: v["Id"],
                             lambda s, v: self.org.delete_problem(v["Id"]), lambda s, v: self.org.delete(v["Id"]))

    def _write(self, request: Request, kind: str, resolve: Callable[[str], SObjectType | None],
               lock_key: Callable[[Any, dict[str, Any]], Any], check: Callable[..., dict[str, Any] | None],
               apply: Callable[..., dict[str, Any]]) -> Response:
        """Write the records of the request's body (see `_results`), or refuse the whole request."""
        try:
            items, all_or_none = parse_records(self.org, request, resolve)
        except Refused as refused:
            return self._answer(400, refused.body)
        return self._results(kind, items, all_or_none, lock_key, check, apply)

    def _results(self, kind: str, items: list[Item], all_or_none: bool,
                 lock_key: Callable[[Any, dict[str, Any]], Any], check: Callable[..., dict[str, Any] | None],
                 apply: Callable[..., dict[str, Any]]) -> Response:
        """Lock, check and apply each item; answer one result per item and count the `kind` written."""
        locked = [self._locked(lock_key(sobject, values)) for sobject, values in items]
        results = write_all(items, all_or_none, locked, check, apply)
        self.count_applied(kind, sum(1 for r in results if r["success"]))
        return self._answer(200, results)

    def _locked(self, key: Any) -> bool:
        if self._locks and isinstance(key, str) and self._locks.get(key, 0) > 0:
            self._locks[key] -= 1
            return True
        share = self.config["lock_share"]
        return bool(share) and self._rng.random() < share

    def _version(self, request: Request, minimum: int) -> Response | None:
        match = _VERSION.match(request.params.get("version", ""))
        if match is None or not minimum <= int(match.group(1)) <= NEWEST_VERSION:
            return self._answer(404, NOT_FOUND)
        return None

    def _sobject(self, request: Request, minimum: int) -> tuple[SObjectType | None, Response | None]:
        if refused := self._version(request, minimum):
            return None, refused
        sobject = self.org.sobject(request.params["object"])
        return (sobject, None) if sobject else (None, self._answer(404, NOT_FOUND))

    # -- SOQL, single records, limits ------------------------------------------------------------

    def query(self, request: Request) -> Response:
        """Run `?q=` (the subset in soql.py)."""
        if refused := self._version(request, 20):
            return refused
        try:
            return self._answer(200, run_query(self.org, request.query.get("q", ""), request.params["version"]))
        except QueryError as exc:
            return self._answer(400, refusal(exc.code, exc.message))

    def create_one(self, request: Request) -> Response:
        """`POST .../sobjects/{Object}`: create one record (201), or Salesforce's 400."""
        sobject, refused = self._sobject(request, 20)
        if refused:
            return refused
        assert sobject is not None
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self._answer(400, refusal("JSON_PARSER_ERROR", "The request body must be a JSON object"))
        values, unknown = self.org.values(sobject, body)
        if unknown:
            return self._answer(400, refusal("INVALID_FIELD", f"No such column '{unknown}' on sobject of type "
                                              f"{sobject.name}"))
        result = self.org.create(sobject, values)
        if not result["success"]:
            problem = result["errors"][0]
            return self._answer(400, [{"message": problem["message"], "errorCode": problem["statusCode"],
                                       "fields": problem["fields"]}])
        return self._answer(201, result)

    def limits(self, request: Request) -> Response:
        if refused := self._version(request, 29):
            return refused
        return self._answer(200, {"DailyApiRequests": {"Max": self.api_limit,
                                                       "Remaining": max(0, self.api_limit - self.api_used)}})

    # -- control endpoints -----------------------------------------------------------------------

    def list_records(self, request: Request) -> Response:
        """The records of `?object=` (default Contact), optionally those whose `field` equals `value`."""
        sobject = self.org.sobject(request.query.get("object", "Contact"))
        if sobject is None:
            return Response(404, {"error": "unknown object"})
        wanted = request.query.get("field")
        name = sobject.canonical(wanted) if wanted else None
        rows = [{"Id": rid, **values} for rid, values in sobject.records.items()
                if name is None or str(values.get(name)) == request.query.get("value")]
        return Response(200, {"count": len(rows), "records": rows})

    def set_limits(self, request: Request) -> Response:
        try:
            body = request.json()
            used, limit = int(body.get("used", self.api_used)), int(body.get("limit", self.api_limit))
        except (ValueError, TypeError, AttributeError):
            return Response(400, {"error": "expected {\"used\": N, \"limit\": M}"})
        self.api_used, self.api_limit = used, limit
        return Response(200, {"used": used, "limit": limit})

    def expire_tokens(self, request: Request) -> Response:
        expired = len(self._tokens)
        self._tokens.clear()
        return Response(200, {"expired": expired})

    def set_locks(self, request: Request) -> Response:
        try:
            body = request.json()
            values, times = [str(v) for v in body["values"]], int(body.get("times", 1))
        except (ValueError, TypeError, KeyError, AttributeError):
            return Response(400, {"error": "expected {\"values\": [...], \"times\": n}"})
        self._locks.update(dict.fromkeys(values, times))
        return Response(200, {"locked": len(values), "times": times})


def _without_id(values: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in values.items() if name != "Id"}
