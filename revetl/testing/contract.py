"""The contract every destination passes (STYLE 9), through real sockets against its emulator.

Idempotent upsert, remove, retries through 5xx / 429 storms / dropped connections / lost
responses / timeouts, fatal and secret-free on bad credentials, partial rejects that succeed once
fixed, and resume after a SIGKILL at exact points without resending acknowledged rows.

`contract_tests(case)` returns a pytest class holding the suite for one `Case` (as Singer SDK's
testing/factory.py does for taps): bind it to a name starting with `Test` in a test module.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from revetl.config import Project
from revetl.emulators import create, running
from revetl.errors import FatalDestinationError
from revetl.sync import state
from revetl.sync.apply import run_sync
from revetl.sync.state import RunRecord
from revetl.testing.case import Case
from revetl.testing.project import SYNC, acknowledged, contract_project, expected, people, set_members, write_sync
from revetl.warehouse.connection import connect

__all__ = ["ContractSuite", "contract_tests", "emulator_for"]


@contextlib.contextmanager
def emulator_for(case: Case, options: Mapping[str, Any]) -> Iterator[str]:
    """The case's emulator, started with the case's options and `options` in a thread; its URL."""
    options = {**case.emulator_options, **options}
    emulator = create(case.emulator, options) if isinstance(case.emulator, str) else case.emulator(options)
    with running(emulator) as url:
        yield url


def _runs(project: Project) -> list[RunRecord]:
    """The contract sync's runs, oldest first."""
    with contextlib.closing(connect(project, read_only=True)) as connection:
        return state.runs(connection, SYNC)[::-1]


class ContractSuite:
    """The contract, for the `Case` in `case`. Not collected itself: subclass through `contract_tests`."""

    __test__ = False
    case: ClassVar[Case]
    pytestmark = [pytest.mark.slow]  # every test starts an emulator

    @pytest.fixture
    def project(self, tmp_path: Path) -> Project:
        project = contract_project(tmp_path)
        set_members(project, people(30))
        return project

    def test_upsert_is_idempotent(self, project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        case = self.case
        with emulator_for(case, {"seed": 1}) as url:
            sync = write_sync(project, case, url, monkeypatch)
            first = run_sync(project, sync)
            assert first.ok and first.acked["add"] == 30, first.message
            assert case.members(url) == expected(people(30), case)
            again = run_sync(project, sync)
            assert again.ok and again.plan.total == 0 and again.requests == 0
            # A full resync sends everything again: the destination ends the same, nothing doubled.
            with contextlib.closing(connect(project)) as connection:
                state.reset(connection, SYNC)
            resync = run_sync(project, sync)
            assert resync.ok and resync.acked["add"] == 30, resync.message
            assert case.members(url) == expected(people(30), case)
            assert sorted(acknowledged(project)) == sorted(expected(people(30), case))

    def test_removes_and_changes_reach_the_destination(self, project: Project,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
        case = self.case
        with emulator_for(case, {"seed": 2}) as url:
            sync = write_sync(project, case, url, monkeypatch)
            assert run_sync(project, sync).ok
            now = people(20) + people(5, start=100) + people(5, start=20, plan="enterprise")
            set_members(project, now)
            result = run_sync(project, sync)
            assert result.ok, result.message
            assert (result.acked["add"], result.acked["change"], result.acked["remove"]) == (5, 5, 5)
            assert case.members(url) == expected(now, case)

    def test_faults_are_retried_until_the_destination_equals_the_audience(
            self, project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        case = self.case
        faults = {"error_share": 0.2, "drop_share": 0.05, "lost_response_share": 0.05, "timeout_share": 0.03,
                  "rate_limit_burst": 5}
        set_members(project, people(400))
        with emulator_for(case, {"seed": 3, **faults, "record_requests": 0}) as url:
            # A third of the requests fail: with the default 8 tries one request in 7,000 fails them all,
            # which over Intercom's ~1,000 requests stopped one run in ten. 16 tries: one in 50 million.
            sync = write_sync(project, case, url, monkeypatch, timeout=0.5, attempts=16)
            result = run_sync(project, sync)
            assert result.ok, result.message
            assert result.retries > 0
            assert case.members(url) == expected(people(400), case)
        keys = acknowledged(project)
        assert len(keys) == len(set(keys)) == 400  # each row acknowledged exactly once

    def test_429_storm_is_waited_out(self, project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
        case = self.case
        with emulator_for(case, {"seed": 4, "rate_limit": 5, "rate_window": 1}) as url:
            # The client believes the published limit; the server allows 5 a second: it must follow 429s.
            sync = write_sync(project, case, url, monkeypatch, concurrency=4)
            result = run_sync(project, sync)
            assert result.ok, result.message
            assert case.members(url) == expected(people(30), case)

    def test_bad_credentials_stop_at_once_and_leak_nothing(self, project: Project, monkeypatch: pytest.MonkeyPatch,
                                                           capfd: pytest.CaptureFixture[str]) -> None:
        case = self.case
        with emulator_for(case, {"seed": 5}) as url:
            sync = write_sync(project, case, url, monkeypatch, env=case.bad_env)
            started = time.monotonic()
            with pytest.raises(FatalDestinationError) as caught:
                run_sync(project, sync)
            assert time.monotonic() - started < 5
            stats = httpx.get(f"{url}/_emulator/stats").json()
            # One request finds the credential bad (two where a token is fetched first): no retries, and
            # the other workers never start.
            assert stats["requests_total"] <= 2
        secrets = [v for v in {**case.env, **case.bad_env}.values()]
        with contextlib.closing(connect(project, read_only=True)) as connection:
            stored = " ".join(str(row) for table in ("runs", "failures")
                              for row in connection.execute(f"select * from revetl_state.{table}").fetchall())
        run = _runs(project)[-1]
        assert run.status == "failed" and case.fatal_text in (run.message or "")
        assert caught.value.sync == SYNC
        out, err = capfd.readouterr()
        for text in (str(caught.value), stored, out, err):
            assert not any(secret in text for secret in secrets)

    def test_rejected_rows_are_recorded_then_succeed_once_fixed(self, project: Project,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
        case = self.case
        rows = people(30)
        broken = [(k, case.reject_email if i % 10 == 3 else e, n, p) for i, (k, e, n, p) in enumerate(rows)]
        set_members(project, broken)
        with emulator_for(case, {"seed": 6}) as url:
            sync = write_sync(project, case, url, monkeypatch)
            result = run_sync(project, sync)
            assert not result.ok and result.failed == 3 and result.acked["add"] == 27, result.message
            with contextlib.closing(connect(project, read_only=True)) as connection:
                rejected = state.failures(connection, SYNC)
            assert sorted(r[1] for r in rejected) == ["user-0003", "user-0013", "user-0023"]
            assert all(r[3] for r in rejected)  # the destination's reason
            set_members(project, rows)
            fixed = run_sync(project, sync)
            assert fixed.ok and fixed.acked["add"] == 3 and fixed.plan.total == 3, fixed.message
            assert case.members(url) == expected(rows, case)

    @pytest.mark.parametrize("kill_at", [1, 4])
    def test_sigkill_after_a_batch_was_applied_resumes_without_resending(
            self, project: Project, monkeypatch: pytest.MonkeyPatch, kill_at: int) -> None:
        case = self.case
        total = max(600, 6 * case.batch_size)  # the second kill point still falls mid-run
        set_members(project, people(total))
        with emulator_for(case, {"seed": 7, "record_requests": 20_000}) as url:
            write_sync(project, case, url, monkeypatch, concurrency=2)
            command = [sys.executable, "-m", "revetl", "--project-dir", str(project.root), "sync", SYNC]
            env = {**os.environ, "REVETL_FAILPOINT": f"after_send:{kill_at}"}
            crashed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            assert crashed.returncode == -signal.SIGKILL, crashed.stderr
            acked_before = set(acknowledged(project))
            assert len(acked_before) < total
            seen = len(httpx.get(f"{url}/_emulator/requests", params={"limit": 20_000}).json()["requests"])
            resumed = subprocess.run(command, env=dict(os.environ), capture_output=True, text=True, timeout=120)
            assert resumed.returncode == 0, resumed.stdout + resumed.stderr
            log = httpx.get(f"{url}/_emulator/requests", params={"limit": 20_000}).json()["requests"]
            resent = set().union(*(case.sent_keys(r) for r in log[seen:])) if log[seen:] else set()
            assert not resent & acked_before  # nothing acknowledged before the kill was sent again
            assert case.members(url) == expected(people(total), case)
        keys = acknowledged(project)
        assert len(keys) == len(set(keys)) == total
        assert [run.status for run in _runs(project)] == ["crashed", "succeeded"]


def contract_tests(case: Case) -> type[ContractSuite]:
    """The contract suite for `case`, as a pytest test class: `TestMine = contract_tests(Case(...))`."""
    words = re.findall(r"[A-Za-z0-9]+", case.name)
    name = "Test" + "".join(word.capitalize() for word in words) + "Contract"
    return type(name, (ContractSuite,), {"case": case, "__test__": True})
