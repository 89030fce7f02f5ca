"""Route files: Segment's example expressed and decided; every problem named with its file and line,
through the library and through `revetl routes check`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from revetl.config import load_project
from revetl.routes.config import check_route, load_route
from revetl.routes.mapping import Route, event_of

# Segment's example: "Payment Processed only to Salesforce and the warehouse; Button Clicked only to
# analytics tools". The warehouse gets everything anyway (the collector lands every event).
CRM = """\
    description: Payments, and nothing else, to the CRM.
    types: [track]
    events: [Payment Processed]
    properties: {allow: [revenue, currency, plan], rename: {revenue: amount}}
    destination: {type: webhook, base_url: "http://127.0.0.1:9/hook", secret: "${CRM_SECRET:-crm-secret-0123456789}"}
"""
ANALYTICS = """\
    description: Product analytics gets every call but payments.
    sources: [web]
    exclude_events: [Payment Processed]
    where: type != 'alias'
    properties: {drop: [card_number]}
    traits: {drop: [password], rename: {name: full_name}}
    destination: {type: amplitude, base_url: "http://127.0.0.1:9", api_key: "${AMP_KEY:-dev-amplitude-key}"}
"""


def row(kind: str, event: str | None = None, source: str = "web", **json: Any) -> dict[str, Any]:
    import orjson

    return {"message_id": f"m-{kind}-{event}", "type": kind, "event": event, "user_id": "user-1",
            "anonymous_id": None, "group_id": None, "previous_id": "anon-1" if kind == "alias" else None,
            "timestamp": "2026-03-01T12:00:00Z", "received_at": "2026-03-01T12:00:01Z",
            "properties": orjson.dumps(json.get("properties")).decode() if "properties" in json else None,
            "traits": orjson.dumps(json.get("traits")).decode() if "traits" in json else None,
            "context": "{}", "_source": source}


def test_segments_example_payments_only_to_the_crm_button_clicks_only_to_analytics(route_project: Any) -> None:
    project = load_project(route_project(crm=CRM, analytics=ANALYTICS))
    crm, analytics = Route.of(load_route(project, "crm")), Route.of(load_route(project, "analytics"))
    payment = event_of(row("track", "Payment Processed", properties={"revenue": 99, "currency": "EUR",
                                                                     "card_number": "4111"}))
    click = event_of(row("track", "Button Clicked", properties={"label": "Buy", "card_number": "4111"}))
    identify = event_of(row("identify", traits={"name": "Ann", "password": "x", "plan": "pro"}))
    alias = event_of(row("alias"))
    from_server = event_of(row("track", "Button Clicked", source="server"))

    assert [crm.admits(e) for e in (payment, click, identify, alias)] == [True, False, False, False]
    assert [analytics.admits(e) for e in (payment, click, identify, alias, from_server)] == [
        False, True, True, False, False]
    # What is sent: the allow list and renames for the CRM, the drops for analytics.
    assert crm.message(payment)["properties"] == {"amount": 99, "currency": "EUR"}
    assert analytics.message(click)["properties"] == {"label": "Buy"}
    sent = analytics.message(identify)
    assert sent["traits"] == {"full_name": "Ann", "plan": "pro"}
    assert (sent["messageId"], sent["type"], sent["userId"]) == ("m-identify-None", "identify", "user-1")


BROKEN = """\
    sources: [webb]
    types: [track, clicks]
    evnts: [Signed Up]
    where: properties.plan = 'pro' and
    properties: {rename: {a: x, b: x}}
    destination:
      type: amplitud
"""
BAD_SETTINGS = """\
    destination:
      type: amplitude
      api_key: ${UNSET_AMPLITUDE_KEY_FOR_TEST}
"""
NO_KEY = """\
    events: [A]
    destination:
      type: webhook
      base_url: "ftp://example.com"
      secret: short
"""


def test_every_problem_is_named_with_its_line(route_project: Any) -> None:
    project = load_project(route_project(broken=BROKEN, unset=BAD_SETTINGS, settings=NO_KEY))
    problems = check_route(project, "broken").problems
    assert problems == [
        (1, "`sources` names `webb`, which is not a source in revetl.yml `collect.write_keys`; did you mean `web`? "
            "(known: server, web)"),
        (2, "`types.1` input should be 'track', 'identify', 'page', 'screen', 'group' or 'alias'"),
        (3, "`evnts` unknown key; did you mean `events`?"),
        (4, "`where` is not a condition: expected a value or a field, found the end (at column 28)"),
        (5, "`properties.rename` renames two keys to `x`"),
        (7, "unknown stream destination type `amplitud`; did you mean `amplitude`? (installed: amplitude, braze, intercom, mixpanel, webhook)"),
    ]
    assert check_route(project, "unset").problems == [(3, "`destination.api_key` environment variable "
                                                          "UNSET_AMPLITUDE_KEY_FOR_TEST is not set")]
    messages = [message for _, message in check_route(project, "settings").problems]
    assert any(m.startswith("`destination.base_url` must be an http:// or https:// URL") for m in messages)
    assert any(m.startswith("`destination.secret` must be at least 16 characters") for m in messages)


def test_routes_check_cli_prints_file_line_sentences_and_exits_1(route_project: Any) -> None:
    root = route_project(crm=CRM, broken=BROKEN)
    command = [sys.executable, "-m", "revetl", "--project-dir", str(root), "routes", "check"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=root, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "routes/broken.yml:3: `evnts` unknown key; did you mean `events`?" in result.stdout
    assert "routes/crm.yml" not in result.stdout
    assert "6 problem(s) in 2 routes" in result.stdout
    assert "Traceback" not in result.stderr
    (root / "routes" / "broken.yml").unlink()
    fine = subprocess.run(command, capture_output=True, text=True, cwd=root, timeout=120)
    assert fine.returncode == 0 and "1 routes: no problems" in fine.stdout, fine.stdout + fine.stderr


FLAGGED = """\
    flagged: %s
    destination: {type: webhook, base_url: "http://127.0.0.1:9/hook", secret: "flag-secret-0123456789"}
"""


def test_flagged_events_go_unless_the_route_says_skip(route_project: Any) -> None:
    root = route_project(sends=FLAGGED % "send", skips=FLAGGED % "skip", typo=FLAGGED % "drop")
    project = load_project(root)
    violation = {"violationErrors": [{"type": "value_not_allowed", "property": "properties.plan", "message": "x"}],
                 "trackingPlan": {"name": "web", "source": "web"}}
    flagged = event_of({**row("track", "Signed Up", properties={"plan": "gold"}), "context": orjson_text(violation)})
    clean = event_of(row("track", "Signed Up", properties={"plan": "pro"}))
    sends, skips = Route.of(load_route(project, "sends")), Route.of(load_route(project, "skips"))
    assert (sends.admits(flagged), sends.admits(clean)) == (True, True)  # as Segment forwards them
    assert (skips.admits(flagged), skips.admits(clean)) == (False, True)
    assert check_route(project, "typo").problems == [(1, "`flagged` input should be 'send' or 'skip'")]
    result = subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(root), "routes", "check"],
                            capture_output=True, text=True, cwd=root, timeout=120)
    assert result.returncode == 1 and "routes/typo.yml:1: `flagged` input should be 'send' or 'skip'" in result.stdout


def orjson_text(value: Any) -> str:
    import orjson

    return orjson.dumps(value).decode()


def test_a_replayed_event_is_sent_as_the_live_one_was(route_project: Any) -> None:
    """The collector's log holds times as text, the warehouse as timestamps: the message is the same, so a replayed
    webhook batch is the very body its Idempotency-Key was first sent with."""
    import datetime as dt

    route = Route.of(load_route(load_project(route_project(crm=CRM)), "crm"))
    moment = dt.datetime(2026, 3, 1, 12, 0, 1, 250_000, tzinfo=dt.timezone.utc)
    live = {**row("track", "Payment Processed", properties={"revenue": 1}), "timestamp": moment.isoformat(),
            "received_at": moment.isoformat()}
    replayed = {**live, "timestamp": moment, "received_at": moment.replace(tzinfo=None)}
    assert route.message(event_of(live)) == route.message(event_of(replayed))
    assert route.message(event_of(live))["timestamp"] == "2026-03-01T12:00:01.250000Z"
