"""drt-core's run with nothing to send, issue 14's yardstick: its own virtualenv and a drt project.

The virtualenv (drt-core with its DuckDB extra, pinned to the DuckDB version of the interpreter running
the benchmark, so that both tools pay for the same DuckDB) is built once and kept between runs. The
project has one sync, `members`, reading the benchmark's 1,000 members (a table `drt_members` in a copy
of revetl's warehouse: bench_members' user_id and email, and the `updated_at` column drt's incremental
mode needs) and posting them to the Braze emulator's /users/track, 75 attributes a request, through
drt's generic `rest_api` destination (drt has no Braze destination).

A run with nothing to send: drt's `incremental_strategy: diff` (a snapshot compared in the warehouse) is
for PostgreSQL, Snowflake, BigQuery and Databricks, not DuckDB, so the sync is `mode: incremental` on
`cursor_field: updated_at`. The first run sends the 1,000
rows and keeps the highest updated_at in .drt/state.json; later runs read with
`WHERE updated_at > <watermark>`, get no rows and send nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from importlib.metadata import version
from pathlib import Path

import yaml

DRT_VERSION = "1.2.1"
DRT_LABEL = f"drt-core {DRT_VERSION}, a run with nothing to send"
SYNC = "members"
# Braze's /users/track as revetl's Braze destination sends it: an upsert of each member's email and
# the audience's membership attribute.
BATCH = ('{"attributes": [{% for row in rows %}{"external_id": {{ row.user_id | tojson }}, '
         '"email": {{ row.email | tojson }}, "in_a": true}{% if not loop.last %}, {% endif %}{% endfor %}]}')


def drt_venv(venv: Path) -> None:
    """A virtualenv with drt-core and this interpreter's DuckDB version, built unless it is already there."""
    wanted = f"{DRT_VERSION} {version('duckdb')}"
    python = venv / "bin" / "python"
    ask = "from importlib.metadata import version; print(version('drt-core'), version('duckdb'))"
    found = subprocess.run([python, "-c", ask], capture_output=True, text=True) if python.exists() else None
    if found is None or found.stdout.strip() != wanted:
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        pip = subprocess.run([python, "-m", "pip", "install", "--quiet", f"drt-core[duckdb]=={DRT_VERSION}",
                              f"duckdb=={version('duckdb')}"], capture_output=True, text=True)
        if pip.returncode != 0:
            raise SystemExit(f"installing drt-core failed:\n{pip.stderr[-2000:]}")


def drt_project(root: Path, warehouse: Path, url: str, env: dict[str, str],
                venv: Path) -> tuple[list[str], dict[str, str]]:
    """Write the drt project `root`, its sync reading a copy of `warehouse` and posting to the Braze emulator
    at `url`; returns the command a cron line would run for the sync (in `root`) and its environment."""
    root.mkdir(parents=True)
    copy = root / "warehouse.duckdb"
    shutil.copy(warehouse, copy)
    # Written by drt's own DuckDB: the file is in the format the reader expects.
    table = ("create table drt_members as select user_id, email, timestamp '2026-11-30 00:00:00' as updated_at "
             "from bench_members")
    subprocess.run([venv / "bin" / "python", "-c", f"import duckdb; duckdb.connect({str(copy)!r}).execute({table!r})"],
                   check=True)
    home = root / "home"  # drt reads its profiles from ~/.drt/profiles.yml
    (home / ".drt").mkdir(parents=True)
    (home / ".drt" / "profiles.yml").write_text(yaml.safe_dump({"bench": {"type": "duckdb", "database": str(copy)}}))
    (root / "drt_project.yml").write_text(yaml.safe_dump({"name": "bench", "profile": "bench"}))
    (root / "syncs" / "models").mkdir(parents=True)
    (root / "syncs" / "models" / f"{SYNC}.sql").write_text("select user_id, email, updated_at from drt_members\n")
    sync = {"name": SYNC, "model": f"ref('{SYNC}')",
            "destination": {"type": "rest_api", "url": f"{url}/users/track", "method": "POST",
                            "headers": {"Content-Type": "application/json"},
                            "auth": {"type": "bearer", "token_env": "BRAZE_API_KEY"},
                            "body_mode": "batch", "batch_template": BATCH, "max_records_per_request": 75},
            "sync": {"mode": "incremental", "cursor_field": "updated_at", "batch_size": 75}}
    (root / "syncs" / f"{SYNC}.yml").write_text(yaml.safe_dump(sync, sort_keys=False))
    mine = {**env, "HOME": str(home), "DO_NOT_TRACK": "1"}
    mine.pop("PYTHONPATH", None)  # revetl's source tree is nothing to drt
    return [str(venv / "bin" / "drt"), "run", "--select", SYNC], mine


def requests_received(url: str) -> int:
    """Requests the emulator has answered on its vendor routes since it started."""
    # urllib, not httpx: the benchmark's own process must stay smaller than those it measures (startup_bench.measure)
    with urllib.request.urlopen(f"{url}/_emulator/stats", timeout=30) as answer:
        return int(json.load(answer)["requests_total"])


def last_run(root: Path) -> dict[str, object]:
    """The sync's entry in the run_results.json of the last `drt run` in `root` (rows read, synced, status)."""
    results = json.loads((root / "target" / "drt" / "run_results.json").read_text())["results"]
    return next(result for result in results if result["name"] == SYNC)
