"""A full disk during a sync, for real (a size-limited tmpfs): one sentence, exit 1, a recorded run, nothing
acknowledged lost or sent again, and the next run finishes by itself once there is space again.

The three places a sync writes: the journal of answered batches (beside the warehouse), the warehouse
when the journal is folded into the state at the end of the run, and DuckDB's spill files while a plan
is larger than its memory limit.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest
from cases import BRAZE
from disk import fill, small_disk
from test_stops import assert_one_sentence
from wh import audience_project

from revetl.sync import state
from revetl.config import Project
from revetl.emulators import running
from revetl.testing import AUDIENCE, acknowledged, expected, people, set_members, write_sync
from revetl.warehouse.connection import connect

pytestmark = pytest.mark.slow


def revetl(project: Project, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(project.root), *args],
                          capture_output=True, text=True, timeout=180, env={**os.environ, "COLUMNS": "200", **(env or {})})


def runs(project: Project) -> list[state.RunRecord]:
    connection = connect(project, read_only=True)
    try:
        return state.runs(connection, "contract")
    finally:
        connection.close()


def test_a_full_disk_under_the_journal_stops_the_run_and_the_next_one_finishes(tmp_path, monkeypatch):
    project = audience_project(tmp_path, monkeypatch, {"contract": AUDIENCE}, tables=("contract_members",))
    set_members(project, people(6_000))
    journals = tmp_path / "warehouse.revetl" / "syncs" / "contract"
    with small_disk(journals, 2048), running("braze", {"seed": 21, "record_requests": 50_000,
                                                       **BRAZE.emulator_options}) as url:
        write_sync(project, BRAZE, url, monkeypatch)
        ballast = fill(journals, leave=700_000)  # room for the plan file and part of the journal
        first = revetl(project, "sync", "contract")
        assert_one_sentence(first, "could not write the sync journal", "No space left on device", "the next run resumes")
        failed = runs(project)[0]
        kept = failed.acked[0]
        assert failed.status == "failed" and "No space left on device" in (failed.message or "") and 0 < kept < 6_000
        before = set(acknowledged(project))
        assert len(before) == kept
        sent = len(httpx.get(f"{url}/_emulator/requests", params={"limit": 50_000}).json()["requests"])

        ballast.unlink()  # space is back
        second = revetl(project, "sync", "contract")
        assert second.returncode == 0, second.stdout + second.stderr
        log = httpx.get(f"{url}/_emulator/requests", params={"limit": 50_000}).json()["requests"]
        assert not set().union(*(BRAZE.sent_keys(r) for r in log[sent:])) & before  # nothing acknowledged resent
        assert BRAZE.members(url) == expected(people(6_000), BRAZE)
    assert [r.status for r in runs(project)] == ["succeeded", "failed"]
    assert runs(project)[0].acked[0] == 6_000 - kept


def test_a_full_disk_under_the_warehouse_keeps_the_journal_for_the_next_run(tmp_path, monkeypatch):
    with small_disk(tmp_path / "disk", 32 * 1024) as disk:
        project = audience_project(disk, monkeypatch, {"contract": AUDIENCE}, tables=("contract_members",))
        set_members(project, people(6_000))
        # The journal has room (its own disk); the warehouse fills up while the run sends.
        with small_disk(disk / "warehouse.revetl", 64 * 1024), running(
            "braze", {"seed": 22, "latency_ms": 20, **BRAZE.emulator_options}
        ) as url:
            write_sync(project, BRAZE, url, monkeypatch, concurrency=2)
            sync = subprocess.Popen([sys.executable, "-m", "revetl", "--project-dir", str(project.root), "sync",
                                     "contract"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 60
            while httpx.get(f"{url}/_emulator/stats").json()["requests_total"] < 3:
                assert time.monotonic() < deadline and sync.poll() is None
                time.sleep(0.02)
            ballast = fill(disk)
            out, err = sync.communicate(timeout=120)
            first = subprocess.CompletedProcess(sync.args, sync.returncode, out, err)
            assert_one_sentence(first, "could not record its run in the warehouse", "No space left on device",
                         "the next run records it")
            journals = list((disk / "warehouse.revetl" / "syncs" / "contract").glob("*.journal"))
            assert len(journals) == 1
            assert len(acknowledged(project)) == 6_000  # the journal counts: nothing will be sent again

            ballast.unlink()
            second = revetl(project, "sync", "contract")
            assert second.returncode == 0, second.stdout + second.stderr
            assert "0/0" in second.stdout  # nothing left to send
            assert BRAZE.members(url) == expected(people(6_000), BRAZE)
        recorded = runs(project)
        assert [r.status for r in recorded] == ["succeeded", "succeeded"]
        assert recorded[1].acked[0] == 6_000
        assert not list((disk / "warehouse.revetl" / "syncs" / "contract").glob("*.journal"))


def test_a_plan_that_spills_onto_a_full_disk_fails_in_assert_one_sentence(tmp_path, monkeypatch):
    # 300,000 members planned within 48 MB: DuckDB spills about 70 MB beside the warehouse.
    monkeypatch.setenv("REVETL_SYNC_MEMORY_LIMIT", "48MB")
    with small_disk(tmp_path / "disk", 160 * 1024) as disk:
        project = audience_project(disk, monkeypatch, {"contract": AUDIENCE}, tables=("contract_members",))
        connection = connect(project)
        connection.execute(
            """create table contract_members as
               select 'user-' || lpad(range::varchar, 7, '0') as user_id, 'person' || range || '@example.com' as email,
                      'Person ' || range as name, 'pro' as plan
               from range(300000)"""
        )
        connection.close()
        with running("braze", {"seed": 23, **BRAZE.emulator_options}) as url:
            write_sync(project, BRAZE, url, monkeypatch, unlimited=True)
            ballast = fill(disk, leave=8_000_000)
            first = revetl(project, "sync", "contract")
            assert_one_sentence(first, "planning sync contract ran out of disk space", "REVETL_SYNC_MEMORY_LIMIT")
            failed = runs(project)[0]
            assert failed.status == "failed" and "ran out of disk space" in (failed.message or "")
            ballast.unlink()
            again = revetl(project, "plan", "contract", "--json")
            assert again.returncode == 0, again.stdout + again.stderr
            assert '"adds": 300000' in again.stdout
