"""Issue 18's promise: the official Segment and RudderStack SDKs send to `revetl collect`, `revetl routes
run` delivers to the Amplitude and webhook emulators, and each emulator ends holding exactly the events
its route admits, mapped as the route says, with the collector killed (SIGKILL) several times, and the
router once, along the way."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from rudderstack.analytics import Client as RudderClient
from segment.analytics import Client as SegmentClient

from revetl.emulators import running

pytestmark = pytest.mark.slow

SECRET = "route-test-secret-0123456789"
AMPLITUDE_KEY = "route-test-amplitude-key"

CRM = """\
    sources: [web]
    types: [track]
    events: [Payment Processed]
    properties: {allow: [revenue, currency], rename: {revenue: amount}}
    destination: {type: webhook, base_url: "${HOOK_URL}", secret: "${HOOK_SECRET}", unlimited: true}
"""
ANALYTICS = """\
    exclude_events: [Payment Processed]
    where: type != 'alias' and (properties.internal is null or properties.internal = false)
    properties: {drop: [card]}
    traits: {drop: [password]}
    destination: {type: amplitude, base_url: "${AMP_URL}", api_key: "${AMP_KEY}", batch_size: 50, unlimited: true}
"""


def start_router(collect_helpers: Any, base: Path, root: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = collect_helpers.revetl_command("routes", "run", "--log-every", "1", project_dir=root)
    return subprocess.Popen(command, env=env, cwd=base, stdout=subprocess.DEVNULL,
                            stderr=open(base / f"router-{time.monotonic_ns()}.log", "wb"))


def send_some(client: Any, tag: str, round_: int) -> dict[str, list[str]]:
    """Calls of every kind; returns the message ids each route must deliver."""
    want: dict[str, list[str]] = {"crm": [], "analytics": []}
    user = f"{tag}-user-{round_:03d}"

    def mid(name: str) -> str:
        return f"{tag}-{round_}-{name}-{uuid.uuid4().hex[:6]}"

    m = mid("identify")
    client.identify(user, {"email": f"{user}@example.com", "password": "p"}, message_id=m)
    want["analytics"].append(m)
    m = mid("pay")
    client.track(user, "Payment Processed", {"revenue": 10 + round_, "currency": "EUR", "card": "4111"}, message_id=m)
    if tag == "seg":  # the CRM route takes the web source only (the Segment client's write key)
        want["crm"].append(m)
    m = mid("click")
    client.track(user, "Button Clicked", {"label": "Buy", "card": "x"}, message_id=m)
    want["analytics"].append(m)
    client.track(user, "Button Clicked", {"label": "Debug", "internal": True}, message_id=mid("internal"))
    m = mid("page")
    client.page(user, "Docs", "Pricing", {"path": "/pricing"}, message_id=m)
    want["analytics"].append(m)
    client.alias(f"{tag}-anon-{round_}", user, message_id=mid("alias"))
    client.group(user, f"{tag}-org", {"name": "Initech"}, message_id=mid("group"))  # Amplitude: unsupported
    return want


def test_sdk_events_reach_exactly_their_routes_through_collector_kills(
        tmp_path: Path, route_project: Any, collect_helpers: Any) -> None:
    root = route_project(crm=CRM, analytics=ANALYTICS)
    base = tmp_path / "run"
    base.mkdir()
    with running("webhook", {"secret": SECRET}) as hook, running("amplitude", {"api_key": AMPLITUDE_KEY}) as amp:
        env = {**collect_helpers.collector_env(base), "HOOK_URL": f"{hook}/webhook", "HOOK_SECRET": SECRET,
               "AMP_URL": amp, "AMP_KEY": AMPLITUDE_KEY}
        keys = {"web": collect_helpers.WEB_KEY, "server": collect_helpers.SERVER_KEY}
        collectors = []

        def start_collector() -> Any:
            collector = collect_helpers.start_collector(base, "--flush-seconds", "0.3", project_dir=root)
            collector.env.update(env)
            collectors.append(collector)
            return collector

        want: dict[str, set[str]] = {"crm": set(), "analytics": set()}
        router = start_router(collect_helpers, base, root, env)
        try:
            for round_ in range(6):
                collector = start_collector()
                errors: list[Any] = []
                clients = [SegmentClient(keys["web"], host=collector.url, sync_mode=True,
                                         on_error=lambda e, b: errors.append(e)),
                           RudderClient(keys["server"], host=collector.url, sync_mode=True,
                                        on_error=lambda e, b: errors.append(e))]
                for client, tag in zip(clients, ("seg", "rud")):
                    for name, ids in send_some(client, tag, round_).items():
                        want[name].update(ids)
                assert errors == []
                if round_ == 3:  # the router is killed too, and comes back
                    router.send_signal(signal.SIGKILL)
                    router.wait(timeout=30)
                    router = start_router(collect_helpers, base, root, env)
                # Acknowledged (sync mode answered 200): a SIGKILL now must lose nothing.
                collector.stop(signal.SIGKILL)
            start_collector()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                crm = httpx.get(f"{hook}/_emulator/events").json()["events"]
                analytics = httpx.get(f"{amp}/_emulator/events").json()["events"]
                if {e["messageId"] for e in crm} >= want["crm"] and \
                        {e["insert_id"] for e in analytics} >= want["analytics"]:
                    break
                time.sleep(0.2)
            time.sleep(1.5)  # anything extra would arrive now (and the statuses are written every second)
            crm = httpx.get(f"{hook}/_emulator/events").json()["events"]
            analytics = httpx.get(f"{amp}/_emulator/events").json()["events"]
            health = httpx.get(f"{collectors[-1].url}/health").json()
            status = subprocess.run(
                collect_helpers.revetl_command("routes", "status", "--json", project_dir=root), env=env, cwd=base,
                capture_output=True, text=True, timeout=120)
        finally:
            router.send_signal(signal.SIGTERM)
            assert router.wait(timeout=30) == 0
            for collector in collectors:
                if collector.process.poll() is None:
                    collector.stop()

    assert sorted(e["messageId"] for e in crm) == sorted(want["crm"])
    # The counters of the router running since the kill: in /health, and in `revetl routes status`.
    assert set(health["routes"]) == {"analytics", "crm"}
    assert health["routes"]["crm"]["state"] == "running" and health["routes"]["crm"]["delivered"] > 0
    assert health["routes"]["analytics"]["unsupported"] > 0  # groups: Amplitude has no HTTP V2 form
    assert health["routes"]["analytics"]["lag_p99_ms"] is not None
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["crm"]["delivered"] == health["routes"]["crm"]["delivered"]
    assert sorted(e["insert_id"] for e in analytics) == sorted(want["analytics"])
    # Mapped as the routes say.
    payment = next(e for e in crm if e["messageId"].startswith("seg-2-pay"))
    assert payment["properties"] == {"amount": 12, "currency": "EUR"} and payment["event"] == "Payment Processed"
    by_kind = {e["insert_id"].split("-")[2]: e for e in analytics if e["insert_id"].startswith("seg-1-")}
    assert by_kind["click"]["event_properties"] == {"label": "Buy"}
    assert by_kind["click"]["user_id"] == "seg-user-001" and by_kind["click"]["event_type"] == "Button Clicked"
    assert by_kind["page"]["event_type"] == "Viewed Pricing Page"
    assert by_kind["identify"]["user_properties"] == {"$set": {"email": "seg-user-001@example.com"}}
    rudder_identify = next(e for e in analytics if e["insert_id"].startswith("rud-1-identify"))
    assert rudder_identify["event_type"] == "$identify"  # RudderStack's traits ride in context.traits
