"""Braze for the stream, through a real socket to the Braze emulator: identify -> attributes, track -> custom
events, Order Completed -> purchases, requests cut at 75 objects, an object Braze refuses dead-lettered with
its message while the rest of the request is applied."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from test_routes_delivery import deliver_until, write_log

from revetl.collect.lines import LogLines
from revetl.config import load_project
from revetl.emulators import running
from revetl.routes.router import Router, load_routes

pytestmark = pytest.mark.slow

ROUTE = """\
    properties: {drop: [secret]}
    destination: {type: braze, base_url: "${BRAZE_URL}", api_key: "k-braze-route", unlimited: true}
"""


def row(message_id: str, kind: str, user: str, event: str | None = None, **json: Any) -> dict[str, Any]:
    now = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    return {"message_id": message_id, "type": kind, "event": event, "anonymous_id": None, "user_id": user,
            "group_id": None, "previous_id": None, "timestamp": now, "received_at": dt.datetime.now(dt.timezone.utc),
            "properties": orjson.dumps(json["properties"]).decode() if "properties" in json else None,
            "traits": orjson.dumps(json["traits"]).decode() if "traits" in json else None, "context": None}


def test_braze_gets_attributes_events_and_purchases(tmp_path: Path, route_project: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    project = load_project(route_project(braze=ROUTE))
    clicks = [row(f"click-{i}", "track", f"user-{i % 3}", "Button Clicked", properties={"n": i, "secret": "s"})
              for i in range(100)]  # 100 events: two requests of at most 75
    order = row("order-1", "track", "user-0", "Order Completed", properties={
        "order_id": "o-1", "currency": "EUR", "products": [{"product_id": "sku-1", "price": 9.5, "quantity": 2},
                                                           {"sku": "sku-2", "price": 3, "name": "Pen"}]})
    write_log(tmp_path / "log", [
        row("id-0", "identify", "user-0", traits={"firstName": "Ann", "email": "ann@example.com", "plan": "pro",
                                                  "address": {"city": "Lyon"}}),
        row("id-bad", "identify", "user-1", traits={"email": "not an email"}),
        row("page-0", "page", "user-0", "Pricing"),
    ], clicks, [order])
    with running("braze", {"api_key": "k-braze-route"}) as braze:
        monkeypatch.setenv("BRAZE_URL", braze)
        router = Router(tmp_path / "log", load_routes(project), LogLines())
        worker = router.workers[0]
        deliver_until(router, lambda: worker.counters.delivered + worker.counters.dead_lettered >= 103, timeout=20)
        users = {u["external_id"]: u for u in httpx.get(f"{braze}/_emulator/users").json()["users"]}
        requests = httpx.get(f"{braze}/_emulator/requests?limit=10").json()["requests"]
    ann = users["user-0"]
    assert ann["attributes"] == {"first_name": "Ann", "email": "ann@example.com", "plan": "pro", "home_city": "Lyon"}
    assert ann["custom_events"]["Button Clicked"]["count"] == 34
    assert ann["purchases"] == {"sku-1": 2, "sku-2": 1}
    assert sum(users[f"user-{i}"]["custom_events"]["Button Clicked"]["count"] for i in range(3)) == 100
    bodies = [r["body"] for r in requests if r["path"] == "/users/track"]
    assert all(len(body.get(name, [])) <= 75 for body in bodies for name in ("attributes", "events", "purchases"))
    assert all("secret" not in event["properties"] for body in bodies for event in body.get("events", []))
    (letter,) = list(worker.store.dead_letters())
    assert letter["row"]["message_id"] == "id-bad" and letter["reason"].startswith("braze: ")
    assert (worker.counters.delivered, worker.counters.unsupported) == (102, 1)  # the page: not sent
