"""The data of an emulated Salesforce org: sObjects, 18-character ids, field rules and DML results.

The HTTP side (`api.py`) parses requests and counts limits; this module holds the records
and answers each DML operation with the per-record result Salesforce returns:

    upsert(type, external id field, values) -> {"id", "success", "errors", "created"}
    create(type, values) / update(type, id, values) / delete(id) -> {"id", "success", "errors"}
    an error is {"statusCode", "message", "fields"}

What it relies on (Salesforce Object Reference "Contact", "Lead", "Campaign", "CampaignMember";
SOAP API Developer Guide "ID Field Type", "UpsertResult", "StatusCode"):

- Record ids are 15 case-sensitive characters, a 3-character key prefix first (001 Account,
  003 Contact, 00Q Lead, 701 Campaign, 00v CampaignMember, a0x custom objects), then a
  3-character suffix computed from which of the 15 are upper case: 18 characters in the API.
- Field API names are case-insensitive; custom fields end in `__c`. Any custom field exists here
  (an emulated org has whatever fields a sync maps) and any custom field can be the External ID
  of an upsert; standard fields are the documented ones below. External ID matching is exact
  (as for a field marked Unique, case-sensitive).
- Required on create: Contact and Lead `LastName`, Lead `Company`, Account and Campaign `Name`
  (`REQUIRED_FIELD_MISSING`, "Required fields are missing: [LastName]"). Text longer than the
  field: `STRING_TOO_LONG` ("Last Name: data value too large: ... (max length=80)"). Email fields:
  `INVALID_EMAIL_ADDRESS` ("Email: invalid email address: ..."). Read-only fields:
  `INVALID_FIELD_FOR_INSERT_UPDATE`. A deleted record: `ENTITY_IS_DELETED` ("entity is deleted").
- A CampaignMember joins one Campaign and one Contact or Lead, at most once:
  `DUPLICATE_VALUE` "Already a campaign member."; deleting a Contact or Lead deletes its members.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Org", "SObjectType", "error", "is_id", "to_18"]

EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+\Z")
_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
_SUFFIX = string.ascii_uppercase + "012345"
_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?\Z")

PREFIXES = {"Account": "001", "Contact": "003", "Lead": "00Q", "Campaign": "701", "CampaignMember": "00v"}
# field -> (kind, max length or None, label); kind: text | email | bool | number | ref:<Object> | picklist
_COMMON_PERSON = {
    "FirstName": ("text", 40, "First Name"), "LastName": ("text", 80, "Last Name"),
    "Email": ("email", 80, "Email"), "Phone": ("text", 40, "Phone"), "Title": ("text", 128, "Title"),
    "LeadSource": ("picklist", 255, "Lead Source"), "Description": ("text", 32000, "Description"),
    "HasOptedOutOfEmail": ("bool", None, "Email Opt Out"), "DoNotCall": ("bool", None, "Do Not Call"),
}
STANDARD: dict[str, dict[str, tuple[str, int | None, str]]] = {
    "Account": {"Name": ("text", 255, "Account Name"), "Industry": ("picklist", 255, "Industry"),
                "Website": ("text", 255, "Website"), "Phone": ("text", 40, "Phone"),
                "Description": ("text", 32000, "Description")},
    "Contact": {**_COMMON_PERSON, "AccountId": ("ref:Account", None, "Account ID"),
                "Department": ("text", 80, "Department"), "MailingCity": ("text", 40, "Mailing City"),
                "MailingCountry": ("text", 80, "Mailing Country")},
    "Lead": {**_COMMON_PERSON, "Company": ("text", 255, "Company"), "Status": ("picklist", 255, "Status"),
             "Industry": ("picklist", 255, "Industry"), "City": ("text", 40, "City"),
             "Country": ("text", 80, "Country"), "NumberOfEmployees": ("number", None, "Employees")},
    "Campaign": {"Name": ("text", 80, "Name"), "Status": ("picklist", 255, "Status"),
                 "Type": ("picklist", 255, "Type"), "IsActive": ("bool", None, "Active"),
                 "Description": ("text", 32000, "Description")},
    "CampaignMember": {"CampaignId": ("ref:Campaign", None, "Campaign ID"),
                       "ContactId": ("ref:Contact", None, "Contact ID"), "LeadId": ("ref:Lead", None, "Lead ID"),
                       "Status": ("picklist", 255, "Status")},
}
REQUIRED = {"Account": ("Name",), "Contact": ("LastName",), "Lead": ("LastName", "Company"),
            "Campaign": ("Name",), "CampaignMember": ("CampaignId",)}
READ_ONLY = frozenset({"Id", "Name", "CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById",
                       "SystemModstamp", "IsDeleted", "HasResponded"})
_UPPER = str.maketrans({char: "1" if char.isupper() else "0" for char in _BASE62})


def error(code: str, message: str, fields: Iterable[str] = ()) -> dict[str, Any]:
    """One entry of a result's `errors` array."""
    return {"statusCode": code, "message": message, "fields": list(fields)}


def failed(*errors: dict[str, Any]) -> dict[str, Any]:
    """A failed per-record result (Salesforce leaves `id` out when nothing was saved)."""
    return {"success": False, "errors": list(errors)}


def to_18(id15: str) -> str:
    """The case-insensitive 18-character form of a 15-character id."""
    flags = id15.translate(_UPPER)  # "1" where upper case; the first of each 5 is the lowest bit
    return id15 + "".join(_SUFFIX[int(flags[start:start + 5][::-1], 2)] for start in (0, 5, 10))


def is_id(value: Any) -> bool:
    """True for a well-formed 15- or 18-character record id."""
    return isinstance(value, str) and _ID.match(value) is not None


def _base62(number: int, width: int) -> str:
    digits = ""
    while number:
        number, rest = divmod(number, 62)
        digits = _BASE62[rest] + digits
    return digits.rjust(width, "0")


@dataclass
class SObjectType:
    """One object's records, field names and External ID indexes."""

    name: str
    prefix: str
    fields: dict[str, tuple[str, int | None, str]]
    names: dict[str, str] = field(default_factory=dict)  # lower-case API name -> canonical
    spellings: dict[str, str] = field(default_factory=dict)  # a spelling seen before -> canonical (fast path)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # 18-char id -> values
    deleted: set[str] = field(default_factory=set)
    indexes: dict[str, dict[Any, str]] = field(default_factory=dict)  # external id field -> value -> id

    def __post_init__(self) -> None:
        self.names.update({name.lower(): name for name in (*self.fields, *READ_ONLY)})
        self.refs = frozenset(name for name, rule in self.fields.items() if rule[0].startswith("ref:"))

    @property
    def custom(self) -> bool:
        return self.name.endswith("__c")

    def canonical(self, name: str) -> str | None:
        """The field's API name as the org spells it; None when the object has no such field."""
        found = self.spellings.get(name)
        if found is not None:
            return found
        found = self.names.get(name.lower())
        if found is None and name.lower().endswith("__c") and name[:1].isalpha():
            found = self.names[name.lower()] = name  # a custom field: it exists from its first use
        if found is not None and len(self.spellings) < 10_000:  # bounded against ever-new spellings
            self.spellings[name] = found
        return found

    def index(self, name: str) -> dict[Any, str]:
        """External ID value -> record id, built on first use and kept up to date by writes."""
        found = self.indexes.get(name)
        if found is None:
            found = self.indexes[name] = {
                values[name]: rid for rid, values in self.records.items() if values.get(name) is not None
            }
        return found


class Org:
    """The records of one org, and the rules Salesforce applies when they are written."""

    def __init__(self) -> None:
        self.types: dict[str, SObjectType] = {}
        self._counter = itertools.count(1)
        self._custom_prefixes = (f"a0{char}" for char in _BASE62[10:])
        self.members: dict[tuple[str, str], str] = {}  # (CampaignId, ContactId|LeadId) -> member id
        for name, fields in STANDARD.items():
            self.types[name.lower()] = SObjectType(name, PREFIXES[name], fields)
        self.by_prefix = {sobject.prefix: sobject for sobject in self.types.values()}

    # -- objects and ids -------------------------------------------------------------------------

    def sobject(self, name: str) -> SObjectType | None:
        """The object named `name` (any case); a custom object (`X__c`) exists from its first use."""
        found = self.types.get(name.lower())
        if found is None and name.lower().endswith("__c") and name[:1].isalpha():
            found = self.types[name.lower()] = SObjectType(name, next(self._custom_prefixes), {})
            self.by_prefix[found.prefix] = found
        return found

    def new_id(self, sobject: SObjectType) -> str:
        """A fresh 18-character id for `sobject` (deterministic: a counter, like an org's sequence)."""
        return to_18(sobject.prefix + "Rv" + _base62(next(self._counter), 10))

    def find(self, record_id: str) -> tuple[SObjectType | None, str]:
        """(the object whose key prefix the id has, or None; the 18-character id)."""
        rid = to_18(record_id) if len(record_id) == 15 else record_id
        return self.by_prefix.get(rid[:3]), rid

    def get(self, record_id: str) -> dict[str, Any] | None:
        """A live record by id, or None."""
        if not is_id(record_id):
            return None
        sobject, rid = self.find(record_id)
        return sobject.records.get(rid) if sobject else None

    # -- checking values -------------------------------------------------------------------------

    def values(self, sobject: SObjectType, record: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """(the record's values under the org's field names, its `attributes` left out; the first
        name the object does not have, for which Salesforce refuses the whole request: INVALID_FIELD)."""
        values = {}
        canonical = sobject.canonical
        for name, value in record.items():
            if name == "attributes":
                continue
            found = canonical(name)
            if found is None:
                return values, name
            values[found] = value
        return values, None

    def problem(self, sobject: SObjectType, values: dict[str, Any], creating: bool) -> dict[str, Any] | None:
        """The first error Salesforce would give for writing `values`, or None (read-only fields first)."""
        rules, read_only, first = sobject.fields, [], None
        for name, value in values.items():  # one pass: this runs for every record of every request
            rule = rules.get(name)
            if rule is None:
                if name in READ_ONLY:
                    read_only.append(name)
                continue
            if value is None or first is not None:
                continue
            kind, length, label = rule
            if kind == "email" and not (type(value) is str and EMAIL.match(value)):
                first = error("INVALID_EMAIL_ADDRESS", f"{label}: invalid email address: {value}", [name])
            elif name in sobject.refs:
                first = self._reference_problem(kind[4:], name, label, value)
            elif length is not None and type(value) is str and len(value) > length:
                shown = value if len(value) <= 40 else value[:37] + "..."
                first = error("STRING_TOO_LONG", f"{label}: data value too large: {shown} (max length={length})",
                              [name])
        if read_only:
            return error("INVALID_FIELD_FOR_INSERT_UPDATE", f"Unable to create/update fields: {', '.join(read_only)}. "
                         "Please check the security settings of this field and verify that it is read/write "
                         "for your profile or permission set.", read_only)
        if first is not None:
            return first
        if creating:
            missing = [name for name in REQUIRED.get(sobject.name, ()) if values.get(name) in (None, "")]
            if missing:
                return error("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                             missing)
        return None

    def _reference_problem(self, target: str, name: str, label: str, value: Any) -> dict[str, Any] | None:
        if not is_id(value) or not value.startswith(PREFIXES.get(target, "")):
            return error("FIELD_INTEGRITY_EXCEPTION", f"{label}: id value of incorrect type: {value}", [name])
        if self.get(value) is None:
            return error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
        return None

    # -- DML -------------------------------------------------------------------------------------

    def upsert_problem(self, sobject: SObjectType, external: str, values: dict[str, Any]) -> dict[str, Any] | None:
        """Why upserting `values` by `external` would fail, or None."""
        key = values.get(external)
        if key is None or key == "":
            return error("MISSING_ARGUMENT", f"{external} not specified", [external])
        if not isinstance(key, (str, int, float)) or isinstance(key, bool):
            return error("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{external}: value not of required type: {key}",
                         [external])
        return self.problem(sobject, values, creating=key not in sobject.index(external))

    def upsert(self, sobject: SObjectType, external: str, values: dict[str, Any]) -> dict[str, Any]:
        """Create or update the record whose `external` field equals the record's value for it."""
        found = self.upsert_problem(sobject, external, values)
        if found:
            return failed(found)
        rid = sobject.index(external).get(values[external])
        if rid is None:
            return {"id": self._insert(sobject, values), "success": True, "errors": [], "created": True}
        self._write(sobject, rid, values)
        return {"id": rid, "success": True, "errors": [], "created": False}

    def create_problem(self, sobject: SObjectType, values: dict[str, Any]) -> dict[str, Any] | None:
        """Why inserting `values` would fail, or None."""
        found = self.problem(sobject, values, creating=True)
        if found is None and sobject.name == "CampaignMember":
            found = self._member_problem(values)
        return found

    def create(self, sobject: SObjectType, values: dict[str, Any]) -> dict[str, Any]:
        """Insert one record (a CampaignMember is checked for being one already)."""
        found = self.create_problem(sobject, values)
        if found:
            return failed(found)
        return {"id": self._insert(sobject, values), "success": True, "errors": []}

    def update_problem(self, sobject: SObjectType, record_id: Any, values: dict[str, Any]) -> dict[str, Any] | None:
        """Why updating record `record_id` with `values` would fail, or None."""
        if not is_id(record_id):
            return error("MALFORMED_ID", f"Record ID: id value of incorrect type: {record_id}", ["Id"])
        owner, rid = self.find(record_id)
        if owner is not sobject or rid not in sobject.records:
            if owner is sobject and rid in sobject.deleted:
                return error("ENTITY_IS_DELETED", "entity is deleted")
            return error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        return self.problem(sobject, values, creating=False)

    def update(self, sobject: SObjectType, record_id: Any, values: dict[str, Any]) -> dict[str, Any]:
        """Update one record by id."""
        found = self.update_problem(sobject, record_id, values)
        if found:
            return failed(found)
        rid = self.find(record_id)[1]
        self._write(sobject, rid, values)
        return {"id": rid, "success": True, "errors": []}

    def delete_problem(self, record_id: str) -> dict[str, Any] | None:
        """Why deleting `record_id` would fail, or None."""
        if not is_id(record_id):
            return error("MALFORMED_ID", f"malformed id {record_id}")
        sobject, rid = self.find(record_id)
        if sobject is None or rid not in sobject.records:
            if sobject is not None and rid in sobject.deleted:
                return error("ENTITY_IS_DELETED", "entity is deleted")
            return error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id")
        return None

    def delete(self, record_id: str) -> dict[str, Any]:
        """Delete one record by id (a Contact's or Lead's campaign members go with it)."""
        found = self.delete_problem(record_id)
        if found:
            return failed(found)
        sobject, rid = self.find(record_id)
        assert sobject is not None
        values = sobject.records.pop(rid)
        sobject.deleted.add(rid)
        for name, index in sobject.indexes.items():
            if index.get(values.get(name)) == rid:
                del index[values[name]]
        if sobject.name == "CampaignMember":
            self.members.pop((values.get("CampaignId"), values.get("ContactId") or values.get("LeadId")), None)
        elif sobject.name in ("Contact", "Lead"):
            for (campaign, person), member in list(self.members.items()):
                if person == rid:
                    self.delete(member)
        return {"id": rid, "success": True, "errors": []}

    def _member_problem(self, values: dict[str, Any]) -> dict[str, Any] | None:
        person = values.get("ContactId") or values.get("LeadId")
        if person is None:
            return error("REQUIRED_FIELD_MISSING", "Required fields are missing: [ContactId, LeadId]",
                         ["ContactId", "LeadId"])
        if (to_18_any(values["CampaignId"]), to_18_any(person)) in self.members:
            return error("DUPLICATE_VALUE", "Already a campaign member.")
        return None

    def _insert(self, sobject: SObjectType, values: dict[str, Any]) -> str:
        rid = self.new_id(sobject)
        record = {name: value for name, value in values.items() if value is not None}
        for name in sobject.refs.intersection(record):
            record[name] = to_18_any(record[name])
        if sobject.name == "CampaignMember":
            record.setdefault("Status", "Sent")
            self.members[(record["CampaignId"], record.get("ContactId") or record.get("LeadId"))] = rid
        sobject.records[rid] = record
        for name, index in sobject.indexes.items():
            if record.get(name) is not None:
                index[record[name]] = rid
        return rid

    def _write(self, sobject: SObjectType, rid: str, values: dict[str, Any]) -> None:
        record = sobject.records[rid]
        for name, index in sobject.indexes.items():
            if name in values and record.get(name) is not None and index.get(record[name]) == rid:
                del index[record[name]]
        for name, value in values.items():
            if value is None:
                record.pop(name, None)  # null clears a field
            else:
                record[name] = value
        for name, index in sobject.indexes.items():
            if name in values and record.get(name) is not None:
                index[record[name]] = rid


def to_18_any(value: str) -> str:
    """An id in its 18-character form (15-character ids are extended)."""
    return to_18(value) if isinstance(value, str) and len(value) == 15 else value
