"""Intercom for the stream, through a real socket to the Intercom emulator: identify creates or updates the
contact, track sends a data event (flat metadata) that Intercom de-duplicates on a resend; an event for a user
Intercom does not know is dead-lettered with its message. Every request fits Intercom's OpenAPI description."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_routes_braze import row
from test_routes_delivery import deliver_until, write_log

from revetl.collect.lines import LogLines
from revetl.config import load_project
from revetl.emulators import running
from revetl.routes.router import Router, load_routes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from openapi_spec import OpenApi  # noqa: E402 - tests/ holds the spec helper

pytestmark = pytest.mark.slow

ROUTE = """\
    destination: {type: intercom, base_url: "${IC_URL}", token: "ic-route-token", unlimited: true}
"""


def test_intercom_contacts_and_events(tmp_path: Path, route_project: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    project = load_project(route_project(ic=ROUTE))
    log_dir = tmp_path / "log"
    write_log(log_dir, [
        row("id-1", "identify", "user-00001", traits={"email": "ann@example.com", "firstName": "Ann", "plan": "pro"}),
        row("click-1", "track", "user-00001", "Button Clicked", properties={"label": "Buy", "nested": {"a": 1}}),
        row("ghost-1", "track", "user-ghost", "Button Clicked"),  # never identified: Intercom answers 404
        row("id-2", "identify", "user-00001", traits={"name": "Ann B"}),  # exists: 409, then PUT
        row("page-1", "page", "user-00001", "Pricing"),
    ])
    with running("intercom", {"token": "ic-route-token", "record_requests": 1000}) as ic:
        monkeypatch.setenv("IC_URL", ic)
        for _ in range(2):  # the second run starts without a cursor: everything is sent again
            router = Router(log_dir, load_routes(project), LogLines())
            worker = router.workers[0]
            deliver_until(router, lambda: worker.counters.delivered + worker.counters.dead_lettered >= 4)
            letters = list(worker.store.dead_letters())
            shutil.rmtree(log_dir / "routes" / "ic")
        contacts = httpx.get(f"{ic}/_emulator/contacts").json()["contacts"]
        events = httpx.get(f"{ic}/_emulator/events").json()["events"]
        requests = httpx.get(f"{ic}/_emulator/requests?limit=1000").json()["requests"]
    (ann,) = contacts
    assert (ann["external_id"], ann["email"], ann["name"]) == ("user-00001", "ann@example.com", "Ann B")
    (click,) = events  # sent twice, kept once
    assert (click["event_name"], click["user_id"], click["metadata"]) == ("Button Clicked", "user-00001",
                                                                           {"label": "Buy"})
    assert click["created_at"] == 1772366400
    (letter,) = letters
    assert letter["row"]["message_id"] == "ghost-1" and letter["reason"].startswith("intercom 404: not_found")
    assert worker.counters.unsupported == 1
    spec = OpenApi.load("intercom-api-2.16.yaml")
    for request in requests:
        path = "/contacts/{contact_id}" if request["path"].startswith("/contacts/") else request["path"]
        assert spec.request_problems(request["method"], path, request["body"]) == [], request
