"""The webhook and Slack destinations pass the contract suite, as a third-party plugin runs it (revetl.testing).

Slack answers a message as a whole, so it has no per-row verdict to test: its case replaces the suite's
partial-reject test with what a refused message does instead (every row it carried is rejected with
Slack's error, and the next run names them again).
"""

from __future__ import annotations

import contextlib

import pytest
from hook_cases import SLACK, WEBHOOK, slack_messages

from revetl.config import Project
from revetl.sync import state
from revetl.sync.apply import run_sync
from revetl.testing import contract_tests, emulator_for, expected, people, set_members, write_sync
from revetl.warehouse.connection import connect

TestWebhook = contract_tests(WEBHOOK)
_SlackSuite = contract_tests(SLACK)
_SlackSuite.__test__ = False  # collected through TestSlack only, with its own partial-reject test


class TestSlack(_SlackSuite):  # type: ignore[valid-type,misc]
    __test__ = True

    def test_rejected_rows_are_recorded_then_succeed_once_fixed(self, project: Project,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
        rows = people(30)
        broken = [(k, "not-an-email" if i % 10 == 3 else e, n, p) for i, (k, e, n, p) in enumerate(rows)]
        set_members(project, broken)
        with emulator_for(SLACK, {"seed": 6, "refuse_containing": "not-an-email"}) as url:
            sync = write_sync(project, SLACK, url, monkeypatch)
            result = run_sync(project, sync)
            # One message carried the 30 rows: Slack refused it, so none of them is acknowledged.
            assert not result.ok and result.failed == 30 and result.acked["add"] == 0, result.message
            assert slack_messages(url) == []
            with contextlib.closing(connect(project, read_only=True)) as connection:
                rejected = state.failures(connection, "contract")
            assert len(rejected) == 30 and {r[3] for r in rejected} == {"slack 400 invalid_payload"}
            set_members(project, rows)
            fixed = run_sync(project, sync)
            assert fixed.ok and fixed.acked["add"] == 30, fixed.message
            assert SLACK.members(url) == expected(rows, SLACK)
