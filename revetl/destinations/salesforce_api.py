"""The Salesforce REST plumbing under the destination: OAuth session, daily API budget, error texts.

    Session     OAuth 2.0 client credentials against the org's My Domain token endpoint; the
                answer's `instance_url` is where the REST API lives. On a 401 (an expired
                session, INVALID_SESSION_ID) `Http` calls `reauthenticate` once per request;
                concurrent requests that fail together share one new token.
    ApiBudget   reads `Sforce-Limit-Info: api-usage=N/M` from every answer and refuses a call
                that would take the org past `max_api_usage` of its daily allocation, so a sync
                never starves the org's other integrations: the run stops, state kept.
    describe()  a Salesforce error body as one sentence (for `Http` and our own messages).
    reason()    a per-record result's errors as the reason stored with a rejected row.

Secrets: the client secret goes only into the token request's form body and the access token
only into the `Authorization` header; neither is put in any message, and the errors raised here are
built by the destination's `fatal` (scrubbed of its secrets).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from revetl.errors import FatalDestinationError

if TYPE_CHECKING:
    import httpx

    from revetl.sync.http import Http

Fatal = Callable[[str, int | None], FatalDestinationError]  # Destination.fatal: (message, status) -> error

__all__ = ["ApiBudget", "Session", "TOKEN_PATH", "describe", "reason"]

TOKEN_PATH = "/services/oauth2/token"
_USAGE = re.compile(r"api-usage=(\d+)/(\d+)")
# Set while this task is fetching a token, so a 401 from the token endpoint itself is not answered
# by fetching another token (which would wait on the lock the fetch holds).
_fetching: contextvars.ContextVar[bool] = contextvars.ContextVar("salesforce_fetching_token", default=False)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def describe(response: httpx.Response) -> str:
    """Salesforce's error body as a short sentence, naming its errorCode."""
    body = _json(response)
    if isinstance(body, dict) and (body.get("error_description") or body.get("error")):
        return f"{body.get('error_description') or body['error']} ({body.get('error')})"
    if isinstance(body, list) and body and isinstance(body[0], dict):
        code, message = body[0].get("errorCode"), str(body[0].get("message", ""))
        if code == "REQUEST_LIMIT_EXCEEDED" and "ConcurrentPerOrgLongTxn" in message:
            return (f"too many long-running requests at once ({code}: {message}); lower destination.concurrency; "
                    "acknowledged rows are kept and the next run continues")
        if code == "REQUEST_LIMIT_EXCEEDED":
            return (f"the org's daily API request limit is used up ({code}: {message}); the run stopped with "
                    "every acknowledged row kept, and the next run continues once Salesforce frees calls in "
                    "its rolling 24-hour window")
        return f"{code}: {message}"[:300]
    if body is None:
        return response.text[:200].strip() or response.reason_phrase
    return str(body)[:200]


def reason(result: Mapping[str, Any]) -> str:
    """`STATUS_CODE: message (fields: A, B)` for each error of a per-record result."""
    parts = []
    for error in result.get("errors") or [{"statusCode": "UNKNOWN", "message": "rejected by salesforce"}]:
        fields = error.get("fields") or []
        suffix = f" (fields: {', '.join(map(str, fields))})" if fields else ""
        parts.append(f"{error.get('statusCode')}: {error.get('message')}{suffix}")
    return "; ".join(parts)


class Session:
    """A client-credentials session: the token in `http`'s headers, the REST base URL in `api`."""

    def __init__(self, http: Http, base_url: str, client_id: str, client_secret: SecretStr, api_version: str, *,
                 fatal: Fatal) -> None:
        self.http = http
        self.fatal = fatal
        self.base_url = base_url.rstrip("/")
        self.client_id, self.client_secret, self.api_version = client_id, client_secret, api_version
        self.api = ""  # {instance_url}/services/data/vNN.N once authenticated
        self.instance_url = ""
        self.generation = 0
        self._lock = asyncio.Lock()

    async def fetch(self) -> None:
        """Ask the token endpoint for a new session; a refusal stops the sync with Salesforce's reason."""
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.client_secret.get_secret_value()}
        marker = _fetching.set(True)
        try:
            response = await self.http.request("POST", TOKEN_PATH, data=form)
        finally:
            _fetching.reset(marker)
        body = _json(response)
        where = f"{self.base_url}{TOKEN_PATH}"
        if response.status_code == 404:
            raise self.fatal(f"salesforce: no OAuth token endpoint at {where} (404); destination.base_url "
                             "must be the org's My Domain URL, e.g. https://yourcompany.my.salesforce.com", 404)
        if response.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            raise self.fatal(f"salesforce refused the client credentials at {where} ({response.status_code}): "
                             f"{describe(response)}; check destination.client_id and destination.client_secret",
                             response.status_code)
        self.instance_url = str(body.get("instance_url") or self.base_url).rstrip("/")
        self.api = f"{self.instance_url}/services/data/v{self.api_version}"
        self.http.set_header("Authorization", f"Bearer {body['access_token']}")
        self.generation += 1

    async def reauthenticate(self) -> bool:
        """`Http`'s hook on a 401: a new token (one for all the requests that failed together)."""
        if _fetching.get():
            return False
        seen = self.generation
        async with self._lock:
            if self.generation == seen:  # nobody refreshed while this request waited for the lock
                await self.fetch()
        return True


class ApiBudget:
    """The org's daily API usage as Salesforce reports it, and the share of it a sync may use.

    Until the first answer tells the usage, one call is in flight at a time; after that a call is
    refused when the calls known used plus those in flight would pass `share` of the allocation
    (after the calls in flight have finished, so that their rows are acknowledged).
    """

    def __init__(self, share: float, setting: str, fatal: Fatal) -> None:
        self.share, self.setting, self.fatal = share, setting, fatal
        self.used: int | None = None
        self.limit: int | None = None
        self.in_flight = 0
        self._known = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    async def reserve(self) -> None:
        """Wait for a slot, or raise FatalDestinationError when the next call would pass the share."""
        while not self._known.is_set() and self.in_flight:
            await self._known.wait()
        if self.limit is not None and self.used is not None:
            allowed = math.floor(self.share * self.limit)
            if self.used + self.in_flight + 1 > allowed:
                # Let the calls in flight finish first, so the rows they carry are acknowledged and not
                # sent again (from tomorrow's scarce allocation) by the next run.
                await self._idle.wait()
                raise self.fatal(
                    f"salesforce: the org has used {self.used:,} of its {self.limit:,} daily API requests; stopping "
                    f"before {self.share:.0%} of them ({self.setting}) so its other integrations keep theirs. "
                    "Acknowledged rows are kept; the next run continues from there.", None)
        self.in_flight += 1
        self._idle.clear()

    def settle(self, response: httpx.Response | None) -> None:
        """Count a call as done and read its `Sforce-Limit-Info`."""
        self.in_flight -= 1
        if not self.in_flight:
            self._idle.set()
        found = _USAGE.search(response.headers.get("sforce-limit-info", "")) if response is not None else None
        if found:
            used, limit = int(found.group(1)), int(found.group(2))
            # Answers to concurrent calls arrive in any order: the highest count is the latest.
            self.used = max(self.used or 0, used)
            self.limit = limit
        self._known.set()
