"""revetl.testing as a plugin package meets it: a test class per Case, emulators by name or factory, and
nothing of it (nor pytest) loaded by revetl at run time."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from revetl.emulators.braze import BrazeEmulator
from revetl.testing import Case, ContractSuite, contract_tests, emulator_for

CASE = Case(
    name="my-crm",
    emulator=BrazeEmulator,  # a factory, as a third-party package passes its own emulator class
    destination=lambda url: {"type": "braze", "base_url": url, "api_key": "${MY_KEY}"},
    identity_to="external_id",
    fields={"email": "email"},
    membership={"attribute": "in_contract"},
    env={"MY_KEY": "good-key-1"},
    bad_env={"MY_KEY": "bad-key-2"},
    members=lambda url: {},
    sent_keys=lambda request: set(),
    batch_size=75,
    emulator_options={"api_key": "good-key-1"},
)


def test_contract_tests_makes_one_collectable_class_per_case_holding_the_whole_suite():
    TestMine = contract_tests(CASE)
    assert TestMine.__name__ == "TestMyCrmContract" and TestMine.case is CASE
    assert issubclass(TestMine, ContractSuite) and TestMine.__test__ and not ContractSuite.__test__
    tests = sorted(name for name in dir(TestMine) if name.startswith("test_"))
    assert tests == [
        "test_429_storm_is_waited_out",
        "test_bad_credentials_stop_at_once_and_leak_nothing",
        "test_faults_are_retried_until_the_destination_equals_the_audience",
        "test_rejected_rows_are_recorded_then_succeed_once_fixed",
        "test_removes_and_changes_reach_the_destination",
        "test_sigkill_after_a_batch_was_applied_resumes_without_resending",
        "test_upsert_is_idempotent",
    ]
    assert [mark.name for mark in TestMine.pytestmark] == ["slow"]  # each test starts an emulator
    assert contract_tests(CASE) is not TestMine  # a fresh class per call: two cases never share one


@pytest.mark.slow
def test_an_emulator_factory_gets_the_case_options_and_the_tests_own():
    with emulator_for(CASE, {"seed": 3, "error_share": 0.5}) as url:
        faults = httpx.get(f"{url}/_emulator/faults").json()
        refused = httpx.post(f"{url}/users/track", json={"attributes": []},
                             headers={"Authorization": "Bearer bad-key-2"})
    assert faults["error_share"] == 0.5 and refused.status_code == 401


def test_revetl_never_imports_the_testing_package_or_pytest():
    """Import every module of revetl except revetl.testing: neither it nor pytest may come along."""
    code = """
import importlib, pkgutil, sys

def walk(package):
    for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if module.name not in ("revetl.testing", "revetl.__main__") and not module.name.endswith(".__main__"):
            imported = importlib.import_module(module.name)
            if module.ispkg:
                walk(imported)

walk(importlib.import_module("revetl"))
loaded = sorted(name for name in sys.modules if name == "pytest" or name.startswith(("revetl.testing", "_pytest")))
print(len(sys.modules), loaded)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    count, loaded = done.stdout.split(" ", 1)
    assert int(count) > 100 and loaded.strip() == "[]"
