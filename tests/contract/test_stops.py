"""Every way a sync of a large plan can stop ends the same way, through the real CLI: one sentence
with the reason (the destination's status and message, never a secret), exit 1, the run recorded with
that message, and what was acknowledged kept, so that the next run sends only the rest.

Large: 6,000 rows, more than one Arrow batch of the plan, where these stops used to end in an
unrelated ResourceInUseException traceback with the run left `running`. A kill mid-run, and a second
process started while a run goes on, are tried on PostgreSQL too (the same tests, `target` parametrized); the
kill on Spark as well, whose state lives in a DuckDB file beside the Spark warehouse.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cases import BRAZE, CASES, Case
from wh import TARGETS, audience_project, on_target

from revetl.sync import state
from revetl.config import Project
from revetl.emulators import running
from revetl.testing import AUDIENCE, acknowledged, emulator_for, expected, people, set_members, write_sync
from revetl.warehouse.connection import connect

pytestmark = pytest.mark.slow

ROWS = 6_000


@pytest.fixture
def target(request: pytest.FixtureRequest) -> str:
    """The warehouse a test runs on: DuckDB unless the test is parametrized (indirectly) with another."""
    return getattr(request, "param", "duckdb")


@pytest.fixture
def empty_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
                  target: str) -> Project:
    project = audience_project(tmp_path, monkeypatch, {"contract": AUDIENCE}, tables=("contract_members",))
    return on_target(project, target, request, monkeypatch)


@pytest.fixture
def project(empty_project: Project) -> Project:
    set_members(empty_project, people(ROWS))
    return empty_project


def command(project: Project, *args: str) -> list[str]:
    return [sys.executable, "-m", "revetl", "--project-dir", str(project.root), *args]


def revetl(project: Project, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(project, *args), capture_output=True, text=True, timeout=180,
                          env={**os.environ, "COLUMNS": "200"})


def last_run(project: Project) -> state.RunRecord:
    connection = connect(project, read_only=True)
    try:
        return state.runs(connection, "contract")[0]
    finally:
        connection.close()


def planned_adds(project: Project) -> int:
    plan = revetl(project, "plan", "contract", "--json")
    assert plan.returncode == 0, plan.stderr
    return json.loads(plan.stdout)["adds"]


def assert_one_sentence(run: subprocess.CompletedProcess, *expected: str, secrets: tuple[str, ...] = ()) -> str:
    """Exit 1, no traceback, exactly one `error:` sentence holding `expected`, no secret anywhere."""
    assert run.returncode == 1, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, run.stderr
    for text in expected:
        assert text in errors[0], errors[0]
    for secret in secrets:
        assert secret not in run.stdout + run.stderr
    return errors[0]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_credentials_stop_a_large_plan_with_the_destinations_answer(case: Case, project, monkeypatch):
    with emulator_for(case, {"seed": 11}) as url:
        write_sync(project, case, url, monkeypatch, env=case.bad_env)
        run = revetl(project, "sync", "contract")
    secrets = tuple({**case.env, **case.bad_env}.values())
    assert_one_sentence(run, case.fatal_text, "0 of 6,000 rows acknowledged", secrets=secrets)
    record = last_run(project)
    assert record.status == "failed" and case.fatal_text in (record.message or "")
    assert not any(secret in (record.message or "") for secret in secrets)


def test_an_unreachable_host_stops_a_large_plan(project, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    write_sync(project, BRAZE, f"http://127.0.0.1:{port}", monkeypatch, attempts=2)
    run = revetl(project, "sync", "contract")
    assert_one_sentence(run, "still failing after 2 attempts", "ConnectError on POST /users/track")
    record = last_run(project)
    assert record.status == "failed" and "ConnectError" in (record.message or "")


def test_retries_exhausted_stop_a_large_plan(project, monkeypatch):
    with running("braze", {"seed": 12, "error_share": 1.0, **BRAZE.emulator_options}) as url:
        write_sync(project, BRAZE, url, monkeypatch, attempts=2)
        run = revetl(project, "sync", "contract")
    assert_one_sentence(run, "still failing after 2 attempts", "last: 50")  # 500, 502 or 503, as the faults fall
    assert last_run(project).status == "failed"


class Emulator:
    """`revetl emulate braze` in its own process, so that it can die mid-run."""

    def __init__(self, latency_ms: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "revetl", "emulate", "braze", "--port", "0", "--latency-ms", str(latency_ms),
             "--no-rate-limit"],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "BRAZE_API_KEY": BRAZE.env["BRAZE_API_KEY"]},
        )
        assert self.process.stdout is not None
        self.url = json.loads(self.process.stdout.readline())["url"]

    def requests(self) -> int:
        return httpx.get(f"{self.url}/_emulator/stats", timeout=5).json()["requests_total"]

    def wait_for(self, requests: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.requests() < requests:
            assert time.monotonic() < deadline, "the sync never got going"
            time.sleep(0.05)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def test_a_destination_dying_mid_run_keeps_what_it_acknowledged(project, monkeypatch):
    emulator = Emulator(latency_ms=40)
    try:
        write_sync(project, BRAZE, emulator.url, monkeypatch, concurrency=2, attempts=2)
        sync = subprocess.Popen(command(project, "sync", "contract"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        emulator.wait_for(10)
    finally:
        emulator.kill()
    out, err = sync.communicate(timeout=120)
    run = subprocess.CompletedProcess(sync.args, sync.returncode, out, err)
    assert_one_sentence(run, "still failing after 2 attempts", "the next run resumes")
    record = last_run(project)
    kept = record.acked[0]
    assert record.status == "failed" and 0 < kept < ROWS
    assert planned_adds(project) == ROWS - kept  # nothing acknowledged is planned again


@pytest.mark.parametrize("signum, name", [(signal.SIGINT, "Ctrl-C"), (signal.SIGTERM, "SIGTERM")])
def test_ctrl_c_and_sigterm_cancel_a_run_cleanly(project, monkeypatch, signum, name):
    # 80 requests, two at a time, 150 ms each: the run lasts 6 s, so the signal lands mid-run even when a loaded
    # machine takes seconds to notice the 10th request (at 40 ms the run could end first)
    emulator = Emulator(latency_ms=150)
    try:
        write_sync(project, BRAZE, emulator.url, monkeypatch, concurrency=2)
        sync = subprocess.Popen(command(project, "sync", "contract"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        emulator.wait_for(10)
        sync.send_signal(signum)
        out, err = sync.communicate(timeout=60)
    finally:
        emulator.kill()
    run = subprocess.CompletedProcess(sync.args, sync.returncode, out, err)
    assert_one_sentence(run, f"sync contract was stopped by {name}", "the next run resumes")
    record = last_run(project)
    kept = record.acked[0]
    assert record.status == "cancelled" and 0 < kept < ROWS
    assert planned_adds(project) == ROWS - kept


@pytest.mark.parametrize("target", TARGETS, indirect=True)
def test_a_second_sync_process_is_refused_while_the_first_runs(project, monkeypatch):
    """Two `revetl sync` processes of one sync (two cron hosts): the second stops at once, naming the first,
    and the first finishes. On PostgreSQL the lock is an advisory lock in the warehouse."""
    emulator = Emulator(latency_ms=1000)  # the first run lasts as long as the second process takes to start
    try:
        write_sync(project, BRAZE, emulator.url, monkeypatch, concurrency=2)
        first = subprocess.Popen(command(project, "sync", "contract"), stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        emulator.wait_for(3)
        second = revetl(project, "sync", "contract")
        httpx.post(f"{emulator.url}/_emulator/faults", json={"latency_ms": 0}, timeout=5).raise_for_status()
        out, err = first.communicate(timeout=180)
    finally:
        emulator.kill()
    error = assert_one_sentence(second, "sync contract is already running (", "not starting a second run")
    assert f"{first.pid}" in error
    assert first.returncode == 0, out + err
    assert last_run(project).status == "succeeded" and planned_adds(project) == 0


KILLS = [*((case, "duckdb") for case in CASES), (BRAZE, "postgres"), (BRAZE, "spark")]


@pytest.mark.parametrize("case, target", KILLS, ids=[f"{c.name}-{t}" for c, t in KILLS], indirect=["target"])
def test_a_kill_resends_at_most_the_batches_in_flight(case: Case, empty_project, monkeypatch):
    """A SIGKILL right after a batch was applied, before its acknowledgement was journaled: the next run
    sends again at most the batches that were in flight (one per worker), and `revetl runs` shows
    what the killed run had acknowledged, before and after it is folded."""
    project = empty_project
    concurrency, total = 4, max(600, 20 * case.batch_size)
    set_members(project, people(total))
    with emulator_for(case, {"seed": 13, "record_requests": 100_000}) as url:
        write_sync(project, case, url, monkeypatch, concurrency=concurrency)
        env = {**os.environ, "REVETL_FAILPOINT": "after_send:12"}
        crashed = subprocess.run(command(project, "sync", "contract"), env=env, capture_output=True, timeout=180)
        assert crashed.returncode == -signal.SIGKILL
        log = httpx.get(f"{url}/_emulator/requests", params={"limit": 100_000}).json()["requests"]
        applied = set().union(*(case.sent_keys(r) for r in log))
        kept = len(acknowledged(project))
        assert 0 < kept < total
        shown = revetl(project, "runs", "contract").stdout
        assert "crashed" in shown and f"{kept:,}/{total:,}" in shown

        resumed = revetl(project, "sync", "contract")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        later = httpx.get(f"{url}/_emulator/requests", params={"limit": 100_000}).json()["requests"][len(log):]
        resent = set().union(*(case.sent_keys(r) for r in later)) & applied
        assert len(resent) <= concurrency * case.batch_size
        assert case.members(url) == {k: v for k, v in expected_members(case, total).items()}
    connection = connect(project, read_only=True)
    try:
        killed = state.runs(connection, "contract")[-1]
    finally:
        connection.close()
    assert killed.status == "crashed" and killed.acked[0] == kept
    assert f"the {kept:,} rows it had acknowledged are kept" in (killed.message or "")


def expected_members(case: Case, total: int) -> dict:
    return expected(people(total), case)
