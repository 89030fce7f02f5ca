"""Mixpanel for the stream, through a real socket to the Mixpanel emulator: track and page through /import
with `$insert_id` (a message id Mixpanel would refuse is digested, the same way every time), an event Mixpanel
refuses in strict mode dead-lettered while the rest of the request is imported, a resend deduplicated."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_routes_braze import row
from test_routes_delivery import deliver_until, write_log

from revetl.collect.lines import LogLines
from revetl.config import load_project
from revetl.emulators import running
from revetl.routes.destinations.mixpanel import insert_id
from revetl.routes.router import Router, load_routes

pytestmark = pytest.mark.slow

ROUTE = """\
    destination: {type: mixpanel, base_url: "${MP_URL}", project_id: "42", username: "sa.routes",
                  secret: "${MP_SECRET}", unlimited: true}
"""
LONG_ID = "ajs-next-1764412345678-0f8e4c1a-7b6d-4c2e-9a1b-3d5e7f9a1b2c"


def test_mixpanel_imports_with_insert_ids_and_refuses_per_event(tmp_path: Path, route_project: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    project = load_project(route_project(mp=ROUTE))
    log_dir = tmp_path / "log"
    write_log(log_dir, [row("click-1", "track", "user-00001", "Button Clicked", properties={"label": "Buy"}),
                        row(LONG_ID, "track", "user-00002", "Signed Up"),
                        row("undef-1", "track", "undefined", "Button Clicked"),  # Mixpanel refuses this distinct_id
                        row("page-1", "page", "user-00001", "Pricing"),
                        row("identify-1", "identify", "user-00001", traits={"plan": "pro"})])
    with running("mixpanel", {"project_id": "42", "username": "sa.routes", "secret": "mp-secret-xyz"}) as mp:
        monkeypatch.setenv("MP_URL", mp)
        monkeypatch.setenv("MP_SECRET", "mp-secret-xyz")
        for attempt in range(2):  # the second run starts from no cursor: everything is sent again
            router = Router(log_dir, load_routes(project), LogLines())
            worker = router.workers[0]
            deliver_until(router, lambda: worker.counters.delivered + worker.counters.dead_lettered >= 4)
            shutil.rmtree(log_dir / "routes" / "mp")
        events = httpx.get(f"{mp}/_emulator/events").json()["events"]
    by_id = {e["properties"]["$insert_id"]: e for e in events}
    assert sorted(by_id) == sorted(["click-1", insert_id(LONG_ID), "page-1"])  # once each, though sent twice
    assert len(insert_id(LONG_ID)) == 36 and insert_id(LONG_ID) == insert_id(LONG_ID)
    click = by_id["click-1"]
    assert (click["event"], click["properties"]["distinct_id"], click["properties"]["label"]) == (
        "Button Clicked", "user-00001", "Buy")
    assert click["properties"]["time"] == int(dt.datetime(2026, 3, 1, 12, tzinfo=dt.timezone.utc).timestamp() * 1000)
    assert by_id["page-1"]["event"] == "Viewed Pricing Page"
    assert (worker.counters.delivered, worker.counters.dead_lettered, worker.counters.unsupported) == (3, 1, 1)


def test_mixpanel_wrong_secret_holds_the_route_without_showing_it(tmp_path: Path, route_project: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    project = load_project(route_project(mp=ROUTE))
    write_log(tmp_path / "log", [row("click-1", "track", "user-00001", "Button Clicked")])
    with running("mixpanel", {"project_id": "42", "username": "sa.routes", "secret": "right-secret"}) as mp:
        monkeypatch.setenv("MP_URL", mp)
        monkeypatch.setenv("MP_SECRET", "wrong-secret-value")
        router = Router(tmp_path / "log", load_routes(project), LogLines())
        worker = router.workers[0]
        deliver_until(router, lambda: worker.counters.error is not None, timeout=10)
    assert worker.counters.delivered == 0 and "401" in str(worker.counters.error)
    assert "wrong-secret-value" not in str(worker.counters.error)
