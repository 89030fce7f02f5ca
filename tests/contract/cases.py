"""Destinations under the shared contract suite (test_contract.py), one `Case` each.

A case tells the suite how to point a sync at the destination's emulator and how to read the
emulator back. The suite's audience has the columns `user_id` (the key), `email`, `name`, `plan`;
a case maps them as its destination needs. Add a destination by appending a Case to CASES.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass(frozen=True)
class Case:
    name: str  # pytest id
    emulator: str  # name in revetl.emulators
    destination: Callable[[str], dict[str, Any]]  # emulator URL -> the sync file's `destination:` block
    identity_to: str
    fields: dict[str, str]  # audience column -> destination field
    membership: dict[str, Any]
    env: dict[str, str]  # what the destination block's ${VAR}s read: credentials the emulator accepts
    bad_env: dict[str, str]  # the same with a wrong credential: the sync must stop at the first 401
    members: Callable[[str], dict[str, dict[str, Any]]]  # URL -> {key: fields} now in the audience there
    sent_keys: Callable[[dict[str, Any]], set[str]]  # one recorded request -> keys whose rows it carried
    reject_email: str = "not-an-email"  # an email value the destination rejects for that row only
    emulator_options: dict[str, Any] = field(default_factory=dict)


def _braze_members(url: str) -> dict[str, dict[str, Any]]:
    users = httpx.get(f"{url}/_emulator/users", timeout=10).json()["users"]
    return {
        u["external_id"]: {"email": u["attributes"].get("email"), "plan": u["attributes"].get("plan")}
        for u in users
        if u["attributes"].get("in_contract") is True
    }


def _braze_sent(request: dict[str, Any]) -> set[str]:
    if request["path"] != "/users/track" or not isinstance(request.get("body"), dict):
        return set()
    return {obj.get("external_id") for obj in request["body"].get("attributes", [])}


BRAZE = Case(
    name="braze",
    emulator="braze",
    destination=lambda url: {"type": "braze", "base_url": url, "api_key": "${BRAZE_API_KEY}", "timeout": 2},
    identity_to="external_id",
    fields={"email": "email", "plan": "plan"},
    membership={"attribute": "in_contract"},
    env={"BRAZE_API_KEY": "contract-braze-key-0123"},
    bad_env={"BRAZE_API_KEY": "wrong-braze-key-4567"},
    members=_braze_members,
    sent_keys=_braze_sent,
    emulator_options={"api_key": "contract-braze-key-0123"},
)

CASES: list[Case] = [BRAZE]
