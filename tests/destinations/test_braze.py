"""Braze request bodies (spliced from the plan's JSON text, equal to the attribute objects as dicts), and a
wrong base URL stopping the sync."""

from __future__ import annotations

import asyncio

import duckdb
import httpx
import orjson
import pytest

from revetl.config import SyncConfig
from revetl.destinations import Row, load_destination
from revetl.destinations.braze import Braze
from revetl.errors import FatalDestinationError
from revetl.sync.plan import payload_expression

FIELDS = {"email": "email", "plan": "plan", "seats": "seats", "score": "score", "tags": "tags", "address": "home",
          "signed_up_at": "signed_up_at", "trial": "trial"}


def braze(fields: dict[str, str] = FIELDS, membership: dict | None = None, to: str = "external_id") -> Braze:
    sync = SyncConfig.model_validate({
        "name": "people_to_braze", "path": "syncs/people_to_braze.yml", "audience": "people",
        "destination": {"type": "braze", "base_url": "http://127.0.0.1:1", "api_key": "k"},
        "identity": {"from": "user_id", "to": to}, "fields": fields,
        **({"membership": membership} if membership else {}),
    })
    destination = load_destination(sync)
    assert isinstance(destination, Braze)
    return destination


def planned_rows(destination: Braze) -> list[Row]:
    """Rows whose payload DuckDB wrote with the plan's own expression: quotes, unicode, nulls, nested values."""
    c = duckdb.connect()
    c.execute("""create table audience as select * from (values
        ('u1', 'a@x.io', 'pro', 3, 1.5, ['a', 'b'], {'city': 'Zürich', 'zip': '8001'},
         timestamp '2026-01-02 03:04:05', true),
        ('quote"back\\slash', null, 'free', null, -0.25, [], null, null, false),
        ('ünï ✓', 'b@x.io', 'line
break', 0, 1e20, null, {'city': null, 'zip': '1'}, timestamp '1999-12-31 23:59:59.5', null)
        ) t(user_id, email, plan, seats, score, tags, address, signed_up_at, trial)""")
    relation = c.sql("select * from audience")
    types = {name: str(kind) for name, kind in zip(relation.columns, relation.types)}
    payload = payload_expression(destination.sync, types).sql("duckdb", identify=True)
    texts = c.execute(f"select user_id, {payload} from audience").fetchall()
    rows = [Row("add", key, payload) for key, payload in texts]
    rows.append(Row("change", texts[0][0], texts[0][1], dest_ref="b-1"))
    rows += [Row("remove", key, None, previous=payload) for key, payload in texts[:2]]
    return rows


def as_dicts(destination: Braze, rows: list[Row]) -> dict:
    return {"attributes": [destination.attributes(row) for row in rows]}


@pytest.mark.parametrize("membership", [None, {"attribute": "audiences", "type": "array", "value": "vip \"club\""}])
def test_the_spliced_body_equals_the_attribute_objects(membership):
    destination = braze(membership=membership)
    assert destination._splice
    rows = planned_rows(destination)
    body = orjson.loads(destination.body(rows))
    assert body == as_dicts(destination, rows)
    assert body["attributes"][1]["external_id"] == 'quote"back\\slash'
    assert body["attributes"][0]["home"] == {"city": "Zürich", "zip": "8001"}
    assert body["attributes"][-1] == {"external_id": 'quote"back\\slash', "_update_existing_only": True,
                                      **({"in_people": False} if membership is None
                                         else {"audiences": {"remove": ['vip "club"']}})}


def test_a_sync_without_fields_sends_identity_and_membership_only():
    destination = braze(fields={})
    rows = [Row("add", "u1", "{}"), Row("remove", "u2", None, previous="{}")]
    assert orjson.loads(destination.body(rows)) == {"attributes": [
        {"external_id": "u1", "in_people": True},
        {"external_id": "u2", "_update_existing_only": True, "in_people": False},
    ]}


def test_a_field_named_like_the_membership_attribute_loses_to_membership_as_in_a_dict():
    destination = braze(fields={"email": "email", "flag": "in_people"}, to="email")
    assert not destination._splice
    rows = [Row.of("add", "a@x.io", {"email": "other@x.io", "in_people": "no"})]
    assert orjson.loads(destination.body(rows)) == {"attributes": [{"email": "other@x.io", "in_people": True}]}


def test_a_wrong_base_url_stops_the_sync_at_the_first_batch():
    destination = braze()
    transport = httpx.MockTransport(lambda request: httpx.Response(404, json={"message": "no such route"}))

    async def send() -> None:
        async with destination.connect(transport=transport) as http:
            await destination.send(http, [Row.of("add", "u1", {"email": "a@x.io"})])

    with pytest.raises(FatalDestinationError, match=r"braze answered 404: is base_url right\? \(no such route\)") as caught:
        asyncio.run(send())
    assert (caught.value.sync, caught.value.status) == ("people_to_braze", 404)
