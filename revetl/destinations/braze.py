"""Braze: `POST /users/track` attributes, identity by `external_id` (or `email`).

- At most 75 attribute objects per request (Braze's limit per array), so a batch is 75 rows.
- Mapped fields become custom or standard attributes; membership is a boolean attribute
  (`membership: {attribute: in_churn_risk}`) or a value in an array attribute
  (`membership: {attribute: audiences, type: array}`, edited with Braze's add/remove syntax).
- A remove only clears membership (`_update_existing_only`, so it never creates a user) and never
  deletes the user.
- A 2xx with `errors[]` rejects just the objects at those indexes, with Braze's message; a 400
  rejects the whole batch with Braze's message (the request itself is wrong for those rows).
- Published limit: 3,000 requests per 3 seconds per workspace (configurable: `rate_limit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import SecretStr

from revetl.config import Strict, validate
from revetl.destinations.base import ACKNOWLEDGED, Destination, DestinationConfig, HttpOptions, Row, RowResult

if TYPE_CHECKING:
    from revetl.sync.http import Http

__all__ = ["Braze", "BrazeConfig"]


class BrazeConfig(DestinationConfig):
    api_key: SecretStr


class Membership(Strict):
    attribute: str
    type: Literal["boolean", "array"] = "boolean"
    value: str | None = None  # for `array`: the value added/removed; default the audience name


class Braze(Destination[BrazeConfig]):
    type = "braze"
    identifiers = ("external_id", "email")
    max_batch_size = 75
    # Measured (bench/sync_bench.py's emulator, 2 cores): on loopback 8, 16, 32 and 64 in flight all
    # give 37-38k rows/s; with 50 ms added to each answer, as over the internet, 9k, 16k, 22k and 25k.
    default_concurrency = 32
    published_rate_limit = (3000, 3.0)

    def configure(self) -> None:
        raw = self.sync.membership or {"attribute": f"in_{self.sync.audience}"}
        self.membership: Membership = validate(Membership, raw, self.sync.path, where=" membership")
        # `body` splices the plan's JSON text unless a mapped field shares a name with the identifier
        # or the membership attribute: then `attributes` decides which value wins, as a dict does.
        ident, member = self.sync.identity.to, self.membership.attribute
        self._splice = not {ident, member, "_update_existing_only"} & set(self.sync.fields.values())

        def text(value: Any) -> str:
            return orjson.dumps(value).decode()

        self._open = "{" + text(ident) + ":"
        self._add_tail = f",{text(member)}:{text(self._member(True))}}}"
        self._remove_tail = f',"_update_existing_only":true,{text(member)}:{text(self._member(False))}}}'

    def http_options(self) -> HttpOptions:
        key = self.config.api_key.get_secret_value()
        return HttpOptions(headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})

    def _member(self, inside: bool) -> Any:
        if self.membership.type == "boolean":
            return inside
        value = self.membership.value or self.sync.audience
        return {"add" if inside else "remove": [value]}

    def attributes(self, row: Row) -> dict[str, Any]:
        """The attribute object for one row."""
        obj: dict[str, Any] = {self.sync.identity.to: row.key}
        if row.op == "remove":
            obj["_update_existing_only"] = True
        else:
            obj.update(row.fields)
        obj[self.membership.attribute] = self._member(row.op != "remove")
        return obj

    def body(self, rows: Sequence[Row]) -> bytes:
        """The request body for a batch: `{"attributes": [...]}`, equal to dumping `attributes` of each row.

        Built from the payload text as the plan wrote it (a JSON object, keys already the destination's
        names), not parsed and dumped again: that round trip took about a quarter of a 1M-row sync's
        event-loop time (py-spy).
        """
        if not self._splice:
            return orjson.dumps({"attributes": [self.attributes(row) for row in rows]})
        parts = []
        for op, key, payload, _, _, _ in rows:
            head = self._open + orjson.dumps(key).decode()
            if op == "remove":
                parts.append(head + self._remove_tail)
            elif payload is None or len(payload) <= 2:  # no mapped fields: "{}"
                parts.append(head + self._add_tail)
            else:
                parts.append(f"{head},{payload[1:-1]}{self._add_tail}")
        return ('{"attributes":[' + ",".join(parts) + "]}").encode()

    async def send(self, http: Http, rows: Sequence[Row]) -> list[RowResult]:
        body = self.body(rows)
        response = await http.request("POST", "/users/track", content=body)
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code >= 400:
            message = answer.get("message") if isinstance(answer, dict) else None
            if response.status_code in (404, 405):  # every batch would get it: the sync's settings are wrong
                raise self.fatal(f"braze answered {response.status_code}: is base_url right? ({message})",
                                 response.status_code)
            return [RowResult.rejected(f"braze {response.status_code}: {message or response.text[:200]}")] * len(rows)
        results = [ACKNOWLEDGED] * len(rows)
        for error in answer.get("errors") or []:
            if not isinstance(error, dict):
                continue
            index = error.get("index")
            if error.get("input_array", "attributes") == "attributes" and isinstance(index, int) and 0 <= index < len(rows):
                results[index] = RowResult.rejected(str(error.get("type") or "rejected by braze"))
        return results
