"""The webhook and Slack destinations under the contract suite, one `Case` each, and how to read them back.

The webhook emulator keeps the members its batches left it with. Slack keeps only messages: the digest's
lines are read back (entered and changed members added with their fields, those who left removed), which
works because the cases list every name (`max_names` at least the batch) and name people by key.
"""

from __future__ import annotations

import html
from typing import Any

import httpx

from revetl.testing import Case

WEBHOOK_SECRET = "contract-webhook-secret-0123"
SLACK_TOKEN = "contract-slack-token-0123"


def _webhook_members(url: str) -> dict[str, dict[str, Any]]:
    members = httpx.get(f"{url}/_emulator/members", timeout=10).json()["members"]
    return {m["key"]: m["fields"] for m in members}


def _webhook_sent(request: dict[str, Any]) -> set[str]:
    body = request.get("body")
    if request["path"] != "/webhook" or not isinstance(body, dict):
        return set()
    return {entry["key"] for group in ("adds", "changes", "removes") for entry in body.get(group, [])}


WEBHOOK = Case(
    name="webhook",
    emulator="webhook",
    destination=lambda url: {"type": "webhook", "base_url": f"{url}/webhook", "secret": "${WEBHOOK_SECRET}",
                             "timeout": 2},
    identity_to="external_id",
    fields={"email": "email", "plan": "plan"},
    membership={},
    env={"WEBHOOK_SECRET": WEBHOOK_SECRET},
    bad_env={"WEBHOOK_SECRET": "wrong-webhook-secret-4567"},
    members=_webhook_members,
    sent_keys=_webhook_sent,
    batch_size=100,
    fatal_text="invalid signature",
    emulator_options={"secret": WEBHOOK_SECRET},
)


def digest_lines(message: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """(group, name, fields) for each line of a digest: group "Entered", "Left" or "Changed"."""
    found, group = [], ""
    for block in message["blocks"]:
        if block["type"] != "section":
            continue
        for line in block["text"]["text"].split("\n"):
            if line.startswith("*") and " (" in line:
                group = line[1:line.index(" (")]
            elif line.startswith("• "):
                name, _, rest = line[2:].partition(" — ")
                fields = dict(item.split(": ", 1) for item in rest.split(", ")) if rest else {}
                found.append((group, html.unescape(name), {k: html.unescape(v) for k, v in fields.items()}))
    return found


def slack_messages(url: str) -> list[dict[str, Any]]:
    return httpx.get(f"{url}/_emulator/messages", timeout=10).json()["messages"]


def _slack_members(url: str) -> dict[str, dict[str, Any]]:
    members: dict[str, dict[str, Any]] = {}
    for message in slack_messages(url):
        for group, name, fields in digest_lines(message):
            if group == "Left":
                members.pop(name, None)
            else:
                members[name] = fields
    return members


def _slack_sent(request: dict[str, Any]) -> set[str]:
    body = request.get("body")
    if not request["path"].startswith("/services/") or not isinstance(body, dict):
        return set()
    return {name for _, name, _ in digest_lines(body)}


SLACK = Case(
    name="slack",
    emulator="slack",
    destination=lambda url: {"type": "slack", "webhook_url": f"{url}/services/T00000000/B00000000/${{SLACK_TOKEN}}",
                             "timeout": 2, "batch_size": 50, "max_names": 50, "changes": True, "unlimited": True},
    identity_to="channel",
    fields={"email": "email", "plan": "plan"},
    membership={},
    env={"SLACK_TOKEN": SLACK_TOKEN},
    bad_env={"SLACK_TOKEN": "wrong-slack-token-4567"},
    members=_slack_members,
    sent_keys=_slack_sent,
    batch_size=50,
    fatal_text="invalid_token",
    # The client is `unlimited` here to keep the suite quick; tests/destinations/test_slack_cli.py runs at
    # Slack's real limit of one message a second.
    emulator_options={"token": SLACK_TOKEN, "rate_limit": None},
)
