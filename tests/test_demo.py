"""`revetl demo`, the README's first command, run as a user runs it: the real CLI in a subprocess,
on a copy of the project, read back from what it prints."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from wh import REPO

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("demo")]

STAGES = [
    "1. generate a realistic event stream (Segment JSON lines)",
    "2. ingest it into the landing directory (Parquet)",
    "3. build the warehouse models with dbt",
    "4. what the warehouse knows now",
    "5. sync every audience to the local destination emulators",
    "6. 5 days later: rebuild as of",
]
SYNCS = sorted(path.stem for path in (REPO / "syncs").glob("*.yml"))


def _number(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found, f"{pattern!r} not in the demo's output"
    return int(found.group(1).replace(",", ""))


def _summary_rows(section: str) -> dict[str, list[str]]:
    """The rows of the `sync summary` table in one part of the output: sync -> its cells."""
    assert "sync summary" in section, "no sync summary table"
    table = section[section.index("sync summary"):]
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0] in SYNCS:
            rows[cells[0]] = cells
    return rows


def _done(cell: str) -> int:
    """`acknowledged/planned` -> acknowledged, after checking nothing was left out."""
    acknowledged, planned = cell.split("/")
    assert acknowledged == planned, cell
    return int(acknowledged.replace(",", ""))


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """`python -m revetl demo` in a copy of the project, with none of the tests' redirections. Once per test
    process: xdist's loadgroup sends this module's tests to one worker but may run other tests between them,
    which would end a module-scoped fixture and run the demo (two minutes) again."""
    root = tmp_path_factory.mktemp("demo") / "project"
    root.mkdir()
    for name in ("dbt_project.yml", "profiles.yml", "revetl.yml", "traits.yml"):
        shutil.copy(REPO / name, root / name)
    for name in ("models", "macros", "audiences", "syncs", "tracking_plans"):
        shutil.copytree(REPO / name, root / name)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("REVETL_", "BRAZE_", "SALESFORCE_", "INTERCOM_"))}
    env.update(COLUMNS="200", NO_COLOR="1")
    finished = subprocess.run(
        [sys.executable, "-m", "revetl", "--project-dir", str(root), "demo"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900,
    )
    return root, finished


def test_demo_exits_0_and_prints_every_stage_in_order(demo_run) -> None:
    _, finished = demo_run
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    assert "Traceback" not in finished.stdout + finished.stderr
    positions = [finished.stdout.find(stage) for stage in STAGES]
    assert -1 not in positions and positions == sorted(positions), positions


def test_demo_generates_ingests_and_builds_everything_it_generated(demo_run) -> None:
    _, finished = demo_run
    out = finished.stdout
    generated = _number(r"Generated ([\d,]+) events for 2,000 users", out)
    assert generated > 150_000
    landed = _number(r"([\d,]+) events landed in \d+ files; 0 rejected", out)
    # The shipped tracking plan governs the demo's source: a few events are blocked into the quarantine.
    blocked = _number(r"([\d,]+) blocked into the quarantine", out)
    assert landed + blocked == generated and 0 < blocked < 0.01 * generated
    assert re.search(r"[\d,]+ violations in [\d,]+ events: [\d,]+ landed flagged, [\d,]+ blocked in the quarantine", out)
    assert _number(r"built (\d+) models and passed \d+ tests", out) >= 16
    assert not re.search(r"│ (error|fail|skipped) ", out)
    assert _number(r"│ events landed \(with duplicates\) │ ([\d,]+)", out) == landed
    unique = _number(r"│ unique events +│ ([\d,]+)", out)
    assert 0.99 * landed < unique < landed  # the generator resends a few events
    assert 2_000 <= _number(r"│ profiles +│ ([\d,]+)", out) < 4_000
    assert _number(r"│ conflicting identifiers +│ ([\d,]+)", out) > 0
    assert "email: test@test.com" in out  # the junk email strangers typed is shown as a conflict


def test_demo_syncs_every_audience_then_the_changes_five_days_later(demo_run) -> None:
    root, finished = demo_run
    out = finished.stdout
    first, later = out.split(STAGES[5])
    first = first[first.index(STAGES[4]):]
    initial, after = _summary_rows(first), _summary_rows(later)
    assert sorted(initial) == sorted(after) == SYNCS
    for cells in [*initial.values(), *after.values()]:
        assert cells[1] == "succeeded" and cells[5] == "0", cells  # status, failed rows
    assert all(_done(cells[2]) > 0 for cells in initial.values())  # every audience has members
    assert all(_done(cells[3]) == _done(cells[4]) == 0 for cells in initial.values())
    assert sum(_done(cells[2]) + _done(cells[3]) + _done(cells[4]) for cells in after.values()) > 0
    assert sum(_done(cells[4]) for cells in after.values()) > 0  # people left audiences: removed
    for sync in SYNCS:
        assert f"plan for sync {sync}" in later
    for kind in ("braze", "intercom", "salesforce", "webhook", "slack"):
        assert len(re.findall(rf"{kind} emulator at http://127\.0\.0\.1:\d+: [\d,]+ requests, applied [1-9]", out)) == 2
    assert (root / "data" / "demo" / "warehouse.duckdb").is_file()
