"""The little SOQL the Salesforce emulator answers (`GET /services/data/vNN.N/query?q=...`).

    SELECT path [, path ...] FROM Object [WHERE condition [AND condition ...]] [LIMIT n]
    condition: path = literal | path != literal | path IN (literal [, literal ...])
    path:      Field, or Parent.Field through a standard lookup (Contact.Revetl_User_Id__c)
    literal:   'text' (backslash escapes), a number, true, false, null

Text compares case-insensitively, as Salesforce's text comparisons do. The answer has Salesforce's
shape: {"totalSize", "done": true, "records": [{"attributes": {"type", "url"}, ...}]}, a parent's
fields nested under the relationship name (null when the lookup is empty). Errors are raised as
`QueryError(code, message)`: MALFORMED_QUERY for what this subset does not parse, INVALID_TYPE
for an unknown object, INVALID_FIELD for an unknown field. Paging (`nextRecordsUrl`) is not
emulated: every answer is one page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from revetl.emulators.salesforce.org import Org, SObjectType

__all__ = ["QueryError", "run_query"]

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>-?\d+(?:\.\d+)?)(?![\w.])|(?P<op>!=|=|\(|\)|,)"
    r"|(?P<word>[A-Za-z_][\w.]*))"
)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


class QueryError(Exception):
    """A query Salesforce would refuse: `code` is its errorCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class _Path:
    """A field of the record, or (through `lookup`) a field of its parent."""

    text: str
    field: str
    lookup: str | None = None  # the reference field on the record, e.g. ContactId
    relation: str | None = None  # its relationship name, e.g. Contact


def _tokens(soql: str) -> list[tuple[str, str]]:
    found, position, text = [], 0, soql.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise QueryError("MALFORMED_QUERY", f"unexpected token: '{text[position:].split()[0][:40]}'")
        kind = match.lastgroup or ""
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


def _unquote(literal: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), literal[1:-1])


class _Parser:
    def __init__(self, org: Org, soql: str) -> None:
        self.org, self.tokens, self.at = org, _tokens(soql), 0

    def at_op(self, value: str) -> bool:
        return self.at < len(self.tokens) and self.tokens[self.at] == ("op", value)

    def peek_word(self) -> str:
        kind, value = self.tokens[self.at] if self.at < len(self.tokens) else ("", "")
        return value.upper() if kind == "word" else ""

    def take(self, kind: str, value: str | None = None) -> str:
        if self.at >= len(self.tokens):
            raise QueryError("MALFORMED_QUERY", "unexpected end of query")
        got_kind, got = self.tokens[self.at]
        if got_kind != kind or (value is not None and got.upper() != value):
            raise QueryError("MALFORMED_QUERY", f"unexpected token: '{got}'")
        self.at += 1
        return got

    def literal(self) -> Any:
        kind, value = self.tokens[self.at] if self.at < len(self.tokens) else ("", "")
        self.at += 1
        if kind == "str":
            return _unquote(value)
        if kind == "num":
            return float(value) if "." in value else int(value)
        if kind == "word" and value.lower() in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[value.lower()]
        raise QueryError("MALFORMED_QUERY", f"unexpected token: '{value}'")

    def path(self, sobject: SObjectType, text: str) -> _Path:
        if "." not in text:
            name = sobject.canonical(text)
            if name is None:
                raise QueryError("INVALID_FIELD", f"No such column '{text}' on entity '{sobject.name}'.")
            return _Path(text, name)
        relation, _, rest = text.partition(".")
        lookup = sobject.canonical(relation + "Id")
        rule = sobject.fields.get(lookup or "")
        if lookup is None or rule is None or not rule[0].startswith("ref:") or "." in rest:
            raise QueryError("INVALID_FIELD", f"Didn't understand relationship '{relation}' in field path. "
                             f"If you are attempting to use a custom relationship, be sure to append the '__r'")
        parent = self.org.sobject(rule[0][4:])
        name = parent.canonical(rest) if parent else None
        if name is None:
            raise QueryError("INVALID_FIELD", f"No such column '{rest}' on entity '{rule[0][4:]}'.")
        return _Path(text, name, lookup, lookup[:-2])


def _value(org: Org, rid: str, record: dict[str, Any], path: _Path) -> Any:
    if path.lookup is None:
        return rid if path.field == "Id" else record.get(path.field)
    parent_id = record.get(path.lookup)
    parent = org.get(parent_id) if parent_id else None
    if parent is None:
        return None
    return parent_id if path.field == "Id" else parent.get(path.field)


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.lower() == right.lower()
    return left == right


def run_query(org: Org, soql: str, version: str) -> dict[str, Any]:
    """Run one query; raises QueryError as Salesforce would refuse it."""
    parser = _Parser(org, soql)
    parser.take("word", "SELECT")
    names = [parser.take("word")]
    while parser.at_op(","):
        parser.at += 1
        names.append(parser.take("word"))
    parser.take("word", "FROM")
    object_name = parser.take("word")
    sobject = org.sobject(object_name)
    if sobject is None:
        raise QueryError("INVALID_TYPE", f"sObject type '{object_name}' is not supported.")
    selected = [parser.path(sobject, name) for name in names]
    conditions: list[tuple[_Path, str, list[Any]]] = []
    if parser.peek_word() == "WHERE":
        parser.at += 1
        while True:
            path = parser.path(sobject, parser.take("word"))
            if parser.peek_word() == "IN":
                parser.at += 1
                parser.take("op", "(")
                values = [parser.literal()]
                while parser.at_op(","):
                    parser.at += 1
                    values.append(parser.literal())
                parser.take("op", ")")
                conditions.append((path, "in", values))
            else:
                operator = parser.take("op")
                if operator not in ("=", "!="):
                    raise QueryError("MALFORMED_QUERY", f"unexpected token: '{operator}'")
                conditions.append((path, operator, [parser.literal()]))
            if parser.peek_word() != "AND":
                break
            parser.at += 1
    limit = None
    if parser.peek_word() == "LIMIT":
        parser.at += 1
        limit = int(parser.take("num"))
    if parser.at != len(parser.tokens):
        raise QueryError("MALFORMED_QUERY", f"unexpected token: '{parser.tokens[parser.at][1]}'")
    records = []
    for rid, record in sobject.records.items():
        if all(_matches(_value(org, rid, record, path), operator, values) for path, operator, values in conditions):
            records.append(_render(org, sobject, rid, record, selected, version))
            if limit is not None and len(records) >= limit:
                break
    return {"totalSize": len(records), "done": True, "records": records}


def _matches(value: Any, operator: str, values: list[Any]) -> bool:
    hit = any(_same(value, candidate) for candidate in values)
    return not hit if operator == "!=" else hit


def _attributes(name: str, rid: str, version: str) -> dict[str, str]:
    return {"type": name, "url": f"/services/data/{version}/sobjects/{name}/{rid}"}


def _render(org: Org, sobject: SObjectType, rid: str, record: dict[str, Any], selected: list[_Path],
            version: str) -> dict[str, Any]:
    row: dict[str, Any] = {"attributes": _attributes(sobject.name, rid, version)}
    for path in selected:
        if path.lookup is None:
            row[path.field] = _value(org, rid, record, path)
            continue
        parent_id = record.get(path.lookup)
        parent = org.get(parent_id) if parent_id else None
        if parent is None:
            row[path.relation or ""] = None
            continue
        owner, _ = org.find(parent_id)
        nested = row.get(path.relation or "") or {"attributes": _attributes(owner.name if owner else "", parent_id,
                                                                           version)}
        nested[path.field] = _value(org, rid, record, path)
        row[path.relation or ""] = nested
    return row
