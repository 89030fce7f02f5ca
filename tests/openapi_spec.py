"""Validate recorded requests (and emulator answers) against a vendor's OpenAPI 3.0 description.

    spec = OpenApi.load("intercom-api-2.16.yaml")      # from tests/specs
    spec.request_problems("POST", "/contacts", body)    # [] when the body fits the operation

OpenAPI 3.0 schemas are JSON Schema with dialect quirks; `_convert` makes them plain draft 7:
`nullable: true` becomes "or null", and `#/components/...` references point into the whole
description (registered as `urn:spec`). Beyond the schema, `request_problems` also names keys the
operation does not declare: JSON Schema allows them by default, a vendor usually ignores them,
and a destination that sends a field nobody reads has a bug worth failing a test for.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

__all__ = ["OpenApi", "specs_dir"]

REPO = Path(__file__).resolve().parents[1]
METHODS = ("get", "put", "post", "delete", "patch")


def specs_dir() -> Path:
    """tests/specs (override with REVETL_SPECS_DIR): vendors' descriptions, copied as published.

    intercom-api-2.16.yaml: Intercom's official OpenAPI description of API 2.16 (MIT licence, see
    its `info.license`), kept in the repository so that the tests validating against it always run.
    """
    return Path(os.environ.get("REVETL_SPECS_DIR") or REPO / "tests" / "specs")


def _convert(node: Any) -> Any:
    if isinstance(node, list):
        return [_convert(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _convert(value) for key, value in node.items() if key not in ("nullable", "example", "examples")}
    if isinstance(out.get("$ref"), str) and out["$ref"].startswith("#/"):
        out["$ref"] = "urn:spec" + out["$ref"]
    if node.get("nullable") is True:
        return {"anyOf": [{"type": "null"}, out]}
    return out


@dataclass(frozen=True)
class Operation:
    method: str
    pattern: str
    regex: re.Pattern[str]
    spec: dict[str, Any]


class OpenApi:
    """One OpenAPI description, indexed by operation."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = _convert(document)
        self.registry = Registry().with_resource("urn:spec", Resource(self.document, DRAFT7))
        operations = []
        for pattern, item in self.document["paths"].items():
            regex = re.compile(re.sub(r"\\\{\w+\\\}", r"[^/]+", re.escape(pattern)) + r"\Z")
            for method in METHODS:
                if method in item:
                    operations.append(Operation(method.upper(), pattern, regex, item[method]))
        # Literal paths before templated ones: /contacts/search is not /contacts/{contact_id}.
        self.operations = sorted(operations, key=lambda op: op.pattern.count("{"))

    @classmethod
    @functools.cache
    def load(cls, name: str) -> OpenApi:
        """The description `name` in `specs_dir()`, parsed once per test session."""
        with open(specs_dir() / name, encoding="utf-8") as handle:
            return cls(yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))

    def operation(self, method: str, path: str) -> Operation | None:
        """The operation serving `method path`, or None when the description has none."""
        return next((op for op in self.operations if op.method == method and op.regex.match(path)), None)

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.registry.resolver().lookup(schema["$ref"]).contents
        return schema

    def _declared(self, schema: dict[str, Any]) -> set[str] | None:
        """Every property a body may carry (through allOf/anyOf/oneOf), None if any key may."""
        schema = self._resolve(schema)
        names = set(schema.get("properties", {}))
        if schema.get("additionalProperties") not in (None, False):
            return None
        for combinator in ("allOf", "anyOf", "oneOf"):
            for part in schema.get(combinator, []):
                more = self._declared(part)
                if more is None:
                    return None
                names |= more
        return names

    def _problems(self, schema: dict[str, Any], body: Any) -> list[str]:
        validator = jsonschema.Draft7Validator(schema, registry=self.registry)
        return [f"{'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
                for error in validator.iter_errors(body)]

    def request_problems(self, method: str, path: str, body: Any) -> list[str]:
        """Why `body` does not fit the operation's request body schema ([] when it fits)."""
        operation = self.operation(method, path)
        if operation is None:
            return [f"{method} {path} is not an operation of the description"]
        content = (operation.spec.get("requestBody") or {}).get("content", {})
        schema = (content.get("application/json") or {}).get("schema")
        if schema is None:
            return [] if body in (None, "", b"") else [f"{method} {operation.pattern} takes no body"]
        problems = self._problems(schema, body)
        declared = self._declared(schema)
        if declared is not None and isinstance(body, dict):
            problems += [f"{key}: not a property of {method} {operation.pattern}" for key in body if key not in declared]
        return problems

    def response_problems(self, method: str, path: str, status: int, body: Any) -> list[str]:
        """Why an answer does not fit the schema documented for that status ([] when it fits)."""
        operation = self.operation(method, path)
        if operation is None:
            return [f"{method} {path} is not an operation of the description"]
        response = operation.spec.get("responses", {}).get(str(status))
        if response is None:
            return []  # an undocumented status: nothing to compare against
        schema = ((response.get("content") or {}).get("application/json") or {}).get("schema")
        return self._problems(schema, body) if schema else []
