"""Benchmark for issue 6 (Intercom): how busy a sync keeps Intercom's rate limit, and its memory.

Run by hand (not a test):  .venv/bin/python bench/intercom_bench.py [--rows 20000]

Setup: the Intercom emulator in its own process (`revetl emulate intercom --port 0 --rate-limit
1667 --rate-window 10`, Intercom's default 10,000 calls a minute as it enforces them), a temporary
project whose warehouse holds N new contacts. Measured, in a process of its own (peak RSS from
wait4): `apply_audience` of a sync adding all N as contacts by external_id with two mapped fields
(email: standard, plan: custom attribute, created first) and the membership tag: 2 requests a
contact (create, tag) plus 3 of set-up. Then the emulator is read back: 429s it answered, and
every contact must exist with its fields and the tag (rows lost = N - those).

Target: requests sent at >= 90% of 1,667 per 10 s, zero rows lost. Results replace the
"## Intercom (issue 6)" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from results_file import write_section

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-intercom-token"
LIMIT, WINDOW = 1667, 10.0
SECTION = "## Intercom (issue 6)"

MEASURE = """
import json, sys, time
from revetl.sync.apply import apply_audience
from revetl.config import SyncConfig, load_project
from revetl.destinations import load_destination
from revetl.warehouse.connection import connect
root, url, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])
project = load_project(__import__("pathlib").Path(root))
sync = SyncConfig.model_validate({
    "name": "bench_intercom", "path": "syncs/bench_intercom.yml", "audience": "bench",
    "destination": {"type": "intercom", "base_url": url, "token": "${INTERCOM_TOKEN}", "create_attributes": True},
    "identity": {"from": "user_id", "to": "external_id"}, "fields": {"email": "email", "plan": "plan"},
    "membership": {"tag": "bench"}})
connection = connect(project)
connection.execute("create or replace table members as select 'user-' || i::varchar as user_id, "
                   "'person' || i::varchar || '@example.com' as email, "
                   "case when i % 3 = 0 then 'pro' else 'free' end as plan from range(?) t(i)", [rows])
destination = load_destination(sync)
started = time.monotonic()
result = apply_audience(project, sync, destination, "select * from members", connection=connection)
print(json.dumps({"seconds": time.monotonic() - started, "status": result.status, "acked": result.acknowledged,
                  "failed": result.failed, "requests": result.requests, "retries": result.retries}))
"""


def start_emulator() -> tuple[subprocess.Popen, str]:
    args = [sys.executable, "-m", "revetl.emulators", "intercom", "--port", "0", "--rate-limit", str(LIMIT),
            "--rate-window", str(WINDOW)]
    env = {**os.environ, "INTERCOM_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, env=env, cwd=ROOT)
    line = json.loads(process.stdout.readline())  # type: ignore[union-attr]
    return process, line["url"]


def make_project(base: Path) -> Path:
    root = base / "project"
    (root / "audiences").mkdir(parents=True)
    (root / "syncs").mkdir()
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copy(ROOT / name, root / name)
    return root


def measure(root: Path, url: str, rows: int, base: Path) -> dict:
    env = {**os.environ, "INTERCOM_TOKEN": TOKEN, "REVETL_WAREHOUSE": str(base / "warehouse.duckdb"),
           "REVETL_TARGET_DIR": str(base / "target"), "REVETL_LANDING_DIR": str(base / "events")}
    process = subprocess.Popen([sys.executable, "-c", MEASURE, str(root), url, str(rows)], stdout=subprocess.PIPE,
                               env=env, cwd=ROOT)
    out = process.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"measurement failed ({status}): {out.decode()}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["rss_mb"] = usage.ru_maxrss / 1024
    return result


def read_back(url: str, rows: int) -> dict:
    stats = httpx.get(f"{url}/_emulator/stats", timeout=30).json()
    contacts = httpx.get(f"{url}/_emulator/contacts", timeout=60).json()["contacts"]
    good = sum(1 for c in contacts if c["tags"] == ["bench"] and c["email"] == f"person{c['external_id'][5:]}@example.com"
               and c["custom_attributes"].get("plan") in ("pro", "free"))
    answered_429 = sum(by.get("429", 0) for by in stats["requests"].values())
    return {"emulator_requests": stats["requests_total"], "answered_429": answered_429, "contacts": len(contacts),
            "lost": rows - good}


def write_results(args: argparse.Namespace, run: dict, back: dict) -> None:
    limit_rate = LIMIT / WINDOW
    rate = run["requests"] / run["seconds"]
    served = (back["emulator_requests"] - back["answered_429"]) / run["seconds"]
    lines = [
        SECTION,
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"httpx {httpx.__version__}, {dt.date.today()}. Command: `.venv/bin/python bench/intercom_bench.py"
        f"{'' if args.rows == 20_000 else f' --rows {args.rows}'}`. The Intercom emulator runs in its own process "
        f"(`revetl emulate intercom --rate-limit {LIMIT} --rate-window {WINDOW:g}`) on the same cores.",
        "",
        f"{args.rows:,} new contacts by external_id, each created with email and a custom attribute, then tagged "
        "(2 requests a contact; 3 more set the attribute and tag up). Default settings: 64 contacts in flight, "
        "client limiter sized to the published 1,667 per 10 s.",
        "",
        "| rows | seconds | requests sent | requests/s | share of 166.7/s | served (non-429)/s | 429s | retries "
        "| rows lost | peak RSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {args.rows:,} | {run['seconds']:.1f} | {run['requests']:,} | {rate:.1f} | {rate / limit_rate:.1%} "
        f"| {served:.1f} | {back['answered_429']} | {run['retries']} | {back['lost']} | {run['rss_mb']:.0f} |",
        "",
        f"Target: at least 90% of the limit, zero rows lost. Run status: {run['status']}; acknowledged "
        f"{run['acked']:,}, rejected {run['failed']}; emulator holds {back['contacts']:,} contacts.",
        "",
    ]
    write_section("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--no-write", action="store_true", help="print, do not touch bench/RESULTS.md")
    args = parser.parse_args()
    emulator, url = start_emulator()
    try:
        with tempfile.TemporaryDirectory(prefix="intercom_bench_") as tmp:
            base = Path(tmp)
            run = measure(make_project(base), url, args.rows, base)
            back = read_back(url, args.rows)
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    print(json.dumps({**run, **back, "rate": run["requests"] / run["seconds"],
                      "share": run["requests"] / run["seconds"] / (LIMIT / WINDOW)}))
    if not args.no_write:
        write_results(args, run, back)


if __name__ == "__main__":
    main()
