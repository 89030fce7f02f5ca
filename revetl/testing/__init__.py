"""What a destination's tests need, shipped for third-party plugin packages too (DESIGN 7, STYLE 9).

    contract_tests(case)   a pytest class holding the contract suite for one destination: idempotent
                           upsert, removes and changes, faults and 429 storms retried, bad credentials
                           fatal and secret-free, partial rejects, resume after SIGKILL
    Case                   how the suite reaches the destination's emulator and reads it back
    FakeClock              a runtime.Clock whose sleeps return at once: drive retry policies and limits

A plugin package's test file, e.g. `tests/test_contract.py`:

    from revetl.testing import Case, contract_tests

    TestHubSpot = contract_tests(Case(name="hubspot", emulator=HubSpotEmulator, ...))

Only tests import this package (revetl itself never does), and it is the only place revetl imports
pytest: install `revetl[testing]` to use it.
"""

from __future__ import annotations

import pytest

# Before the suite's modules are imported, so that a failed assertion in them shows its values.
pytest.register_assert_rewrite("revetl.testing.contract", "revetl.testing.project")

from revetl.testing.case import Case  # noqa: E402
from revetl.testing.clock import FakeClock  # noqa: E402
from revetl.testing.contract import ContractSuite, contract_tests, emulator_for  # noqa: E402
from revetl.testing.project import (  # noqa: E402
    AUDIENCE,
    acknowledged,
    contract_project,
    expected,
    people,
    set_members,
    write_sync,
)

__all__ = [
    "AUDIENCE", "Case", "ContractSuite", "FakeClock", "acknowledged", "contract_project", "contract_tests",
    "emulator_for", "expected", "people", "set_members", "write_sync",
]
