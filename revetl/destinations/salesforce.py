"""Salesforce: upsert records by an External ID with sObject Collections; membership as a checkbox or a Campaign.

    destination: {type: salesforce, base_url: https://acme.my.salesforce.com, client_id: ..., client_secret: ...,
                  object: Contact}                       # or Lead, or any object (Custom__c)
    identity: {from: user_id, to: Revetl_User_Id__c}     # a custom External ID field of that object
    membership: {checkbox: In_Power_Users__c}            # or {campaign: "Power Users" | 701..., status: Sent}

- Auth: OAuth 2.0 client credentials at the My Domain (`base_url`); REST calls go to the answer's
  `instance_url`. A 401 (INVALID_SESSION_ID) refreshes the token once and the request is resent;
  bad credentials stop the sync with Salesforce's `error_description` (salesforce_api.Session).
- Adds and changes: `PATCH .../composite/sobjects/{object}/{External ID field}`, up to 200 records
  a call, `allOrNone: false`; each record's result is read: rejected records keep Salesforce's
  statusCode and message; UNABLE_TO_LOCK_ROW (another transaction holds the row) is transient:
  those records are resent a few times (`lock_retries`), backing off on the sync's retry policy
  (`RetryPolicy.retry_items`: the same clock, sleep and jitter as every HTTP retry), then rejected. The record
  id Salesforce answers is the row's `dest_ref`.
- Checkbox membership: the field is true on every upserted record. A remove sets it false on the
  record by id (`PATCH .../composite/sobjects`), so a record deleted in Salesforce since is not
  recreated (ENTITY_IS_DELETED counts as done).
- Campaign membership (Contact or Lead): an add also creates a CampaignMember (CampaignId +
  ContactId/LeadId; DUPLICATE_VALUE "Already a campaign member." counts as done); a remove finds
  the member ids by SOQL (by the External ID, so it needs no state) and deletes them
  (`DELETE .../composite/sobjects?ids=`). The record itself is never deleted.
- Limits: Salesforce counts calls per rolling 24 hours, no per-second limit (none is held here;
  concurrency 4 keeps clear of record locks). The sync stops before `max_api_usage` (default 80%)
  of the daily allocation (Sforce-Limit-Info), and on 403 REQUEST_LIMIT_EXCEEDED; state is kept.
- Calls: one per 200 upserted rows, plus one token per run; campaign adds add one call per batch,
  campaign removes two (query, delete).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import Field, SecretStr, model_validator

from revetl.config import Strict, validate
from revetl.destinations.base import ACKNOWLEDGED, Destination, DestinationConfig, HttpOptions, Row, RowResult
from revetl.destinations.salesforce_api import ApiBudget, Session, describe, reason
from revetl.errors import ConfigError, DestinationError, RowRejected

if TYPE_CHECKING:
    import httpx

    from revetl.sync.http import Http

__all__ = ["Salesforce", "SalesforceConfig"]

API_NAME = r"^[A-Za-z][A-Za-z0-9_]*$"
CAMPAIGN_ID = re.compile(r"701[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?\Z")
REQUIRED_ON_CREATE = {"contact": ("LastName",), "lead": ("LastName", "Company")}
# Whole-request refusals that every batch would get again: the sync's settings are wrong.
CONFIG_ERRORS = frozenset({"INVALID_FIELD", "INVALID_TYPE", "NOT_FOUND", "API_DISABLED_FOR_ORG"})
NOTHING_TO_CLEAR = frozenset({"ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY"})
JSON = {"Content-Type": "application/json"}
LOCK_BACKOFF = 0.25  # the retry policy's base for resending locked records (backoff doubles each time)
SOQL_CHARS = 4000  # keys per membership query: the URL stays far under Salesforce's 16 KB


class SalesforceConfig(DestinationConfig):
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    object: str = Field("Contact", pattern=API_NAME)
    api_version: str = Field("60.0", pattern=r"^\d{2}\.0$")
    max_api_usage: float = Field(0.8, gt=0, le=1)  # share of the org's daily API allocation a run may reach
    lock_retries: int = Field(3, ge=0, le=10)  # resends of records Salesforce could not lock


class Membership(Strict):
    checkbox: str | None = Field(None, pattern=API_NAME)  # a checkbox field on the record
    campaign: str | None = Field(None, min_length=1)  # a Campaign's id (701...) or name
    status: str | None = None  # CampaignMember Status on add (default: the campaign's, "Sent")

    @model_validator(mode="after")
    def _one_kind(self) -> Membership:
        if (self.checkbox is None) == (self.campaign is None):
            raise ValueError("membership is either `checkbox: <field>` or `campaign: <id or name>`")
        if self.status is not None and self.campaign is None:
            raise ValueError("`status` only goes with `campaign`")
        return self


def _quote(value: str) -> str:
    """A SOQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Salesforce(Destination[SalesforceConfig]):
    type = "salesforce"
    max_batch_size = 200  # sObject Collections' limit per request
    default_concurrency = 4
    published_rate_limit = None  # a daily allocation, enforced by ApiBudget, not a rate

    def identity_problem(self, to: str) -> str | None:
        if re.match(API_NAME, to) and to.lower().endswith("__c"):
            return None
        return f"is a custom External ID field of {self.config.object} (its API name ends in __c)"

    def configure(self) -> None:
        config, path, external = self.config, self.sync.path, self.sync.identity.to
        default = {"checkbox": f"In_{'_'.join(w.capitalize() for w in self.sync.audience.split('_'))}__c"}
        self.membership: Membership = validate(Membership, self.sync.membership or default, path, where=" membership")
        mapped = {name.lower() for name in self.sync.fields.values()}
        for name, what in ((external, "identity.to"), (self.membership.checkbox, "membership.checkbox")):
            if name and name.lower() in mapped:
                raise ConfigError(f"{path}: `fields` maps a column to {name}, which is the sync's {what}")
        if self.membership.campaign and config.object.lower() not in ("contact", "lead"):
            raise ConfigError(f"{path}: campaign membership needs `destination.object` Contact or Lead, "
                              f"not {config.object!r}; use `membership: {{checkbox: <field>}}`")
        self._session: Session | None = None
        self._budget: ApiBudget | None = None
        self._campaign_id: str | None = None

    def check(self) -> list[str]:
        """Warn when records created for new members would lack a field Salesforce requires."""
        mapped = {name.lower() for name in self.sync.fields.values()}
        missing = [f for f in REQUIRED_ON_CREATE.get(self.config.object.lower(), ()) if f.lower() not in mapped]
        if not missing:
            return []
        need = " and ".join(missing)
        return [f"salesforce creates a {self.config.object} for each new member and refuses one without {need} "
                f"(REQUIRED_FIELD_MISSING): map an audience column to {need} in `fields`"]

    def http_options(self) -> HttpOptions:
        # No Content-Type here: the token request is form-encoded, the REST calls set JSON themselves.
        return HttpOptions(headers={"Accept": "application/json"}, describe=describe,
                           reauthenticate=self._reauthenticate)

    async def _reauthenticate(self) -> bool:
        return await self._session.reauthenticate() if self._session else False

    async def setup(self, http: Http) -> None:
        config = self.config
        self._session = Session(http, config.base_url, config.client_id, config.client_secret, config.api_version,
                                fatal=self.fatal)
        self._budget = ApiBudget(config.max_api_usage, f"destination.max_api_usage in {self.sync.path}", self.fatal)
        self._connecting = asyncio.Lock()
        self._connected = False

    async def _connect(self, http: Http) -> None:
        """Authenticate (and find the campaign) before the first batch, not in `setup`: a run with
        nothing to send then sends nothing, not even a token request."""
        assert self._session is not None
        if self._connected:
            return
        async with self._connecting:
            if self._connected:
                return  # another worker connected while this one waited
            await self._session.fetch()
            if self.membership.campaign:
                self._campaign_id = await self._find_campaign(http, self.membership.campaign)
            self._connected = True

    # -- sending ---------------------------------------------------------------------------------

    async def send(self, http: Http, rows: Sequence[Row]) -> list[RowResult]:
        await self._connect(http)
        results: list[RowResult] = [ACKNOWLEDGED] * len(rows)
        upserts, unchecks, leaves = [], [], []
        for index, row in enumerate(rows):
            if row.op != "remove":
                upserts.append(index)
            elif self.membership.campaign:
                leaves.append(index)
            elif row.dest_ref:
                unchecks.append(index)
            else:  # no record id known (state from before ids were kept): unset it by External ID
                upserts.append(index)
        if upserts:
            await self._upsert(http, rows, upserts, results)
        if unchecks:
            await self._uncheck(http, rows, unchecks, results)
        if leaves:
            await self._leave_campaign(http, rows, leaves, results)
        return results

    def _record(self, row: Row) -> dict[str, Any]:
        record: dict[str, Any] = {"attributes": {"type": self.config.object}, **row.fields,
                                  self.sync.identity.to: row.key}
        if self.membership.checkbox:
            record[self.membership.checkbox] = row.op != "remove"
        return record

    async def _upsert(self, http: Http, rows: Sequence[Row], indexes: list[int], results: list[RowResult]) -> None:
        assert self._session is not None
        url = f"{self._session.api}/composite/sobjects/{self.config.object}/{self.sync.identity.to}"
        answers = await self._dml(http, "PATCH", url, [self._record(rows[i]) for i in indexes])
        joining = []
        for index, answer in zip(indexes, answers):
            if answer.get("success"):
                results[index] = RowResult(True, dest_ref=answer.get("id"))
                if self.membership.campaign and rows[index].op == "add":
                    joining.append(index)
            else:
                results[index] = RowResult.rejected(reason(answer))
        if joining:
            await self._join_campaign(http, joining, results)

    async def _join_campaign(self, http: Http, indexes: list[int], results: list[RowResult]) -> None:
        assert self._session is not None
        person = "LeadId" if self.config.object.lower() == "lead" else "ContactId"
        members = []
        for index in indexes:
            member = {"attributes": {"type": "CampaignMember"}, "CampaignId": self._campaign_id,
                      person: results[index].dest_ref}
            if self.membership.status:
                member["Status"] = self.membership.status
            members.append(member)
        answers = await self._dml(http, "POST", f"{self._session.api}/composite/sobjects", members)
        for index, answer in zip(indexes, answers):
            if not answer.get("success") and _codes(answer) != {"DUPLICATE_VALUE"}:  # already a member: done
                saved = results[index].dest_ref
                results[index] = RowResult.rejected(f"{self.config.object} {saved} saved, not added to the "
                                                    f"campaign: {reason(answer)}")

    async def _uncheck(self, http: Http, rows: Sequence[Row], indexes: list[int], results: list[RowResult]) -> None:
        assert self._session is not None and self.membership.checkbox
        records = [{"attributes": {"type": self.config.object}, "id": rows[i].dest_ref,
                    self.sync.identity.to: rows[i].key, self.membership.checkbox: False} for i in indexes]
        answers = await self._dml(http, "PATCH", f"{self._session.api}/composite/sobjects", records)
        for index, answer in zip(indexes, answers):
            codes = _codes(answer)
            if not answer.get("success") and not (codes and codes <= NOTHING_TO_CLEAR):
                results[index] = RowResult.rejected(reason(answer))

    async def _leave_campaign(self, http: Http, rows: Sequence[Row], indexes: list[int],
                              results: list[RowResult]) -> None:
        assert self._session is not None
        try:
            found = await self._members(http, [rows[i].key for i in indexes])
        except RowRejected as refused:  # the query covers every row here
            for index in indexes:
                results[index] = RowResult.of(refused)
            return
        owners = [(index, member) for index in indexes for member in found.get(rows[index].key, [])]
        for start in range(0, len(owners), self.max_batch_size):
            chunk = owners[start:start + self.max_batch_size]
            url = f"{self._session.api}/composite/sobjects"
            answers = await self._dml(http, "DELETE", url, [member for _, member in chunk])
            for (index, _), answer in zip(chunk, answers):
                if not answer.get("success") and _codes(answer) != {"ENTITY_IS_DELETED"}:
                    results[index] = RowResult.rejected(f"not removed from the campaign: {reason(answer)}")

    # -- Salesforce calls ------------------------------------------------------------------------

    async def _call(self, http: Http, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One REST call, within the daily API budget."""
        assert self._budget is not None
        await self._budget.reserve()
        response = None
        try:
            response = await http.request(method, url, **kwargs)
        finally:
            self._budget.settle(response)
        return response

    async def _dml(self, http: Http, method: str, url: str, items: list[Any]) -> list[dict[str, Any]]:
        """A collection request; records Salesforce could not lock are resent on the sync's retry policy
        (its clock and jitter), `lock_retries` times at most. One result per item."""
        policy = dataclasses.replace(http.policy, attempts=self.config.lock_retries + 1, base=LOCK_BACKOFF)

        async def send(chunk: list[Any]) -> list[dict[str, Any]]:
            return await self._collection(http, method, url, chunk)

        return await policy.retry_items(items, send, _locked)

    async def _collection(self, http: Http, method: str, url: str, items: list[Any]) -> list[dict[str, Any]]:
        if method == "DELETE":
            response = await self._call(http, method, url, params={"ids": ",".join(items), "allOrNone": "false"})
        else:
            body = orjson.dumps({"allOrNone": False, "records": items})
            response = await self._call(http, method, url, content=body, headers=JSON)
        import httpx  # loaded with the client, by a run that sends

        path = httpx.URL(url).path
        if response.status_code == 200:
            try:
                answers = orjson.loads(response.content)  # 200 results a call: orjson is several times json's speed
            except orjson.JSONDecodeError:
                answers = None
            if isinstance(answers, list) and len(answers) == len(items) and all(type(a) is dict for a in answers):
                return answers
            raise DestinationError(f"salesforce answered {method} {path} with something other than one result "
                                   f"per record ({len(items)} sent)")
        text = describe(response)
        if response.status_code == 404 or text.split(":")[0] in CONFIG_ERRORS:
            raise self.fatal(f"salesforce refused {method} {path} ({response.status_code}): {text}; check "
                             f"destination.object, identity.to, fields and membership in {self.sync.path}",
                             response.status_code)
        code, _, message = text.partition(": ")
        refused = {"success": False, "errors": [{"statusCode": code if message else str(response.status_code),
                                                 "message": message or text}]}
        return [refused] * len(items)

    async def _query(self, http: Http, soql: str) -> list[dict[str, Any]]:
        """Every record a SOQL query returns (following `nextRecordsUrl`)."""
        assert self._session is not None
        response = await self._call(http, "GET", f"{self._session.api}/query", params={"q": soql})
        records: list[dict[str, Any]] = []
        while True:
            if response.status_code != 200:
                raise self.rejected(None, f"salesforce refused the query ({response.status_code}): "
                                          f"{describe(response)}")
            page = response.json()
            records += page.get("records", [])
            if page.get("done", True) or not page.get("nextRecordsUrl"):
                return records
            response = await self._call(http, "GET", self._session.instance_url + page["nextRecordsUrl"])

    async def _members(self, http: Http, keys: list[str]) -> dict[str, list[str]]:
        """External ID value -> CampaignMember ids of the campaign, found by SOQL in URL-sized chunks."""
        relation, external = ("Lead" if self.config.object.lower() == "lead" else "Contact"), self.sync.identity.to
        found: dict[str, list[str]] = {}
        wanted = {key.lower(): key for key in keys}  # SOQL compares text case-insensitively
        chunk: list[str] = []
        for position, key in enumerate(keys):
            chunk.append(_quote(key))
            if position == len(keys) - 1 or sum(map(len, chunk)) + len(chunk) > SOQL_CHARS:
                soql = (f"SELECT Id, {relation}.{external} FROM CampaignMember WHERE CampaignId = "
                        f"{_quote(self._campaign_id or '')} AND {relation}.{external} IN ({', '.join(chunk)})")
                for record in await self._query(http, soql):
                    value = str((record.get(relation) or {}).get(external, ""))
                    owner = value if value in keys else wanted.get(value.lower())
                    if owner is not None:
                        found.setdefault(owner, []).append(record["Id"])
                chunk = []
        return found

    async def _find_campaign(self, http: Http, campaign: str) -> str:
        """The id of the configured campaign (an id is taken as is; a name is looked up once per run)."""
        if CAMPAIGN_ID.match(campaign):
            return campaign
        try:
            records = await self._query(http, f"SELECT Id FROM Campaign WHERE Name = {_quote(campaign)}")
        except RowRejected as refused:
            raise self.fatal(f"{self.sync.path}: cannot look up membership.campaign: {refused.reason}") from None
        if len(records) != 1:
            problem = "no Campaign is" if not records else f"{len(records)} Campaigns are"
            raise self.fatal(f"{self.sync.path}: {problem} named {campaign!r} in the org; "
                             "give `membership.campaign` as the Campaign's id (701...)")
        return str(records[0]["Id"])


def _codes(answer: dict[str, Any]) -> set[str]:
    return {str(error.get("statusCode")) for error in answer.get("errors") or []}


def _locked(answer: dict[str, Any]) -> bool:
    """A record another transaction held (UNABLE_TO_LOCK_ROW): resending it may succeed."""
    return not answer.get("success") and _codes(answer) == {"UNABLE_TO_LOCK_ROW"}
