"""The built-in destinations under the contract suite that `revetl.testing` ships, one `Case` each.

A case tells the suite how to point a sync at the destination's emulator and how to read the
emulator back, exactly as a third-party plugin's tests do. The suite's audience has the columns
`user_id` (the key), `email`, `name`, `plan`; a case maps them as its destination needs.
"""

from __future__ import annotations

from typing import Any

import httpx

from revetl.testing import Case

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
    batch_size=75,
    emulator_options={"api_key": "contract-braze-key-0123"},
)


def _intercom_members(url: str) -> dict[str, dict[str, Any]]:
    contacts = httpx.get(f"{url}/_emulator/contacts", timeout=10).json()["contacts"]
    return {
        c["external_id"]: {"email": c.get("email"), "plan": c["custom_attributes"].get("plan")}
        for c in contacts
        if "contract" in c["tags"]
    }


def _intercom_sent(request: dict[str, Any]) -> set[str]:
    # Creates and updates carry the key; tag edits name only the contact id, which the key's
    # create or update (or the previous run's state) already did.
    body = request.get("body")
    if request["method"] in ("POST", "PUT") and request["path"].count("/") <= 2 and isinstance(body, dict):
        return {body["external_id"]} if body.get("external_id") else set()
    return set()


INTERCOM = Case(
    name="intercom",
    emulator="intercom",
    destination=lambda url: {"type": "intercom", "base_url": url, "token": "${INTERCOM_TOKEN}", "timeout": 2,
                             "create_attributes": True},
    identity_to="external_id",
    fields={"email": "email", "plan": "plan"},
    membership={"tag": "contract"},
    env={"INTERCOM_TOKEN": "contract-intercom-token-0123"},
    bad_env={"INTERCOM_TOKEN": "wrong-intercom-token-4567"},
    members=_intercom_members,
    sent_keys=_intercom_sent,
    batch_size=1,
    emulator_options={"token": "contract-intercom-token-0123"},
)


def _salesforce_members(url: str) -> dict[str, dict[str, Any]]:
    records = httpx.get(f"{url}/_emulator/records", params={"object": "Contact"}, timeout=10).json()["records"]
    return {
        r["Revetl_User_Id__c"]: {field: r.get(field) for field in ("Email", "LastName", "Plan__c")}
        for r in records
        if r.get("In_Contract__c") is True
    }


def _salesforce_sent(request: dict[str, Any]) -> set[str]:
    # Upserts and the checkbox updates of removes both carry the External ID of each record.
    body = request.get("body")
    if request["method"] != "PATCH" or not isinstance(body, dict):
        return set()
    return {r.get("Revetl_User_Id__c") for r in body.get("records", []) if r.get("Revetl_User_Id__c")}


SALESFORCE = Case(
    name="salesforce",
    emulator="salesforce",
    destination=lambda url: {"type": "salesforce", "base_url": url, "client_id": "contract-client",
                             "client_secret": "${SALESFORCE_CLIENT_SECRET}", "timeout": 2},
    identity_to="Revetl_User_Id__c",
    fields={"email": "Email", "name": "LastName", "plan": "Plan__c"},
    membership={"checkbox": "In_Contract__c"},
    env={"SALESFORCE_CLIENT_SECRET": "contract-sf-secret-0123"},
    bad_env={"SALESFORCE_CLIENT_SECRET": "wrong-sf-secret-4567"},
    members=_salesforce_members,
    sent_keys=_salesforce_sent,
    batch_size=200,
    fatal_text="invalid_client",  # bad client credentials fail at the token endpoint, with a 400
    emulator_options={"client_id": "contract-client", "client_secret": "contract-sf-secret-0123"},
)

CASES: list[Case] = [BRAZE, INTERCOM, SALESFORCE]
