"""sObject Collections (`/composite/sobjects`): a request's records, written one by one or all or none.

A request holds at most 200 records (more: `400 EXCEEDED_ID_LIMIT`), each with `attributes.type`;
no `attributes` is `400 INVALID_TYPE` "Must send a concrete entity type.", an unknown field
`400 INVALID_FIELD` "No such column ...", bad JSON `400 JSON_PARSER_ERROR`: the whole request is
refused (`Refused`) and nothing is written. Otherwise every record gets its own result, in order;
`allOrNone: true` writes nothing when one record fails (the others:
`ALL_OR_NONE_OPERATION_ROLLED_BACK`). A record whose row is locked is not written:
`UNABLE_TO_LOCK_ROW`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from revetl.emulators.base import Request
from revetl.emulators.salesforce.org import Org, SObjectType, error, failed

__all__ = ["MAX_RECORDS", "TOO_MANY", "Refused", "parse_records", "refusal", "write_all"]

MAX_RECORDS = 200
LOCKED = error("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record")
ROLLED_BACK = error("ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "Record rolled back because not all records were valid and the request was using AllOrNone header")
TOO_MANY = [{"message": f"record limit reached. cannot submit more than {MAX_RECORDS} records into this call",
             "errorCode": "EXCEEDED_ID_LIMIT"}]

Item = tuple[Any, dict[str, Any]]  # (SObjectType, or None for a delete by id; values by field name)


def refusal(code: str, message: str) -> list[dict[str, str]]:
    """The body of a refused REST call: [{"message", "errorCode"}]."""
    return [{"message": message, "errorCode": code}]


class Refused(Exception):
    """A whole request refused with a 400 and `body` (a list of {"message", "errorCode"})."""

    def __init__(self, body: list[dict[str, str]]) -> None:
        super().__init__(body[0]["message"])
        self.body = body


def parse_records(org: Org, request: Request, resolve: Callable[[str], SObjectType | None]
                  ) -> tuple[list[Item], bool]:
    """The body's records as (object, values under the org's field names) and its allOrNone flag."""
    try:
        body = request.json()
    except ValueError:
        raise Refused(refusal("JSON_PARSER_ERROR", "Unexpected character in the request body")) from None
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list):
        raise Refused(refusal("JSON_PARSER_ERROR", "records: a list of sObjects is required"))
    if len(records) > MAX_RECORDS:
        raise Refused(TOO_MANY)
    items: list[Item] = []
    for record in records:
        kind = record.get("attributes", {}).get("type") if isinstance(record, dict) else None
        if not isinstance(kind, str) or not isinstance(record.get("attributes"), dict):
            raise Refused(refusal("INVALID_TYPE", "Must send a concrete entity type."))
        sobject = resolve(kind)
        if sobject is None:
            raise Refused(refusal("INVALID_TYPE", f"sObject type '{kind}' is not supported."))
        values, unknown = org.values(sobject, record)  # "id" becomes "Id", a known field
        if unknown:
            raise Refused(refusal("INVALID_FIELD", f"No such column '{unknown}' on sobject of type {sobject.name}"))
        items.append((sobject, values))
    return items, bool(body.get("allOrNone", False))


def write_all(items: list[Item], all_or_none: bool, locked: list[bool], check: Callable[..., dict[str, Any] | None],
              apply: Callable[..., dict[str, Any]]) -> list[dict[str, Any]]:
    """One result per item: locked ones fail to lock, the rest are applied (or, all or none, checked first)."""
    if all_or_none:
        problems = [LOCKED if lock else check(sobject, values) for (sobject, values), lock in zip(items, locked)]
        if any(problems):
            return [failed(problem or ROLLED_BACK) for problem in problems]
    return [failed(LOCKED) if lock else apply(sobject, values) for (sobject, values), lock in zip(items, locked)]
