"""Benchmark for issue 17's report: `revetl report` on 10,000 recorded runs, under 5 s and under 5 MB.

Run by hand (not a test):  .venv/bin/python bench/report_bench.py [--runs 10000] [--repeat 5]

Setup (not timed), in bench/work/report/: a project (this repository's settings, six sync files to
Braze, Salesforce, Intercom and a webhook) and a DuckDB warehouse whose sync state (the real tables, made
by `migrate`) holds `--runs` runs of those six syncs, one an hour each, ending now (10,000 runs: 69 days):
audience sizes that drift with a weekly rhythm, adds and removes from one run to the next, durations
from the rows sent at each destination's pace, ~3% failed, ~1% refused by the guard, a few crashed, and
rejected rows with a dozen reasons (about 5 per failed run, 40 in a few). Beside it, the last build's
run_results.json (a real `revetl build`'s, if `--build`; else the nodes of this project with made-up
timings) and 14 days of collector files (Parquet, one per 10-minute roll).

Timed: `revetl report --out FILE` through the real CLI in its own process, `--repeat` times (median and
all); the file's size and how many marks its charts drew. Results replace the section "## Report (issue
17)" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from project_copy import copy_project
from results_file import write_section

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "report"
REVETL = [sys.executable, "-m", "revetl"]

SYNCS = {  # sync -> (audience, destination, base members, rows/s at the destination)
    "churn_risk_to_braze": ("churn_risk", "braze", 4_200, 2_400),
    "churn_risk_to_intercom": ("churn_risk", "intercom", 4_200, 160),
    "power_users_to_salesforce": ("power_users", "salesforce", 1_500, 900),
    "power_users_to_braze": ("power_users", "braze", 1_500, 2_400),
    "new_signups_to_braze": ("new_signups", "braze", 900, 2_400),
    "new_signups_to_webhook": ("new_signups", "webhook", 900, 1_800),
}
REASONS = ("not a valid email", "external_id is longer than 512 characters", "DUPLICATE_VALUE: duplicate value found",
           "INVALID_EMAIL_ADDRESS: Email: invalid email address", "a required field is missing: LastName",
           "STRING_TOO_LONG: Title: data value too large", "contact was archived", "tag name too long",
           "FIELD_CUSTOM_VALIDATION_EXCEPTION: plan must be set", "user is blocked by a merge",
           "payload over 100 KB", "<script>alert('x')</script> & other \"text\" in a reason")


def project_env(work: Path) -> dict[str, str]:
    return {**os.environ, "REVETL_LANDING_DIR": str(work / "events"), "REVETL_TARGET_DIR": str(work / "target"),
            "REVETL_WAREHOUSE": str(work / "warehouse.duckdb"), "REVETL_COLLECTOR_DIR": str(work / "collector"),
            "COLUMNS": "200"}


def make_project(work: Path) -> Path:
    root = work / "project"
    copy_project(root)
    (root / "syncs").mkdir()
    for sync, (audience, destination, _, _) in SYNCS.items():
        (root / "syncs" / f"{sync}.yml").write_text(
            f"audience: {audience}\ndestination:\n  type: {destination}\n  base_url: http://127.0.0.1:1\n")
    return root


def history(runs: int, end: dt.datetime, seed: int = 17) -> tuple[list[tuple], list[tuple]]:
    """(runs rows, failures rows) in the columns of revetl_state.runs and revetl_state.failures."""
    rng = random.Random(seed)
    hours = math.ceil(runs / len(SYNCS))
    run_rows, failure_rows = [], []
    sizes = {sync: base for sync, (_, _, base, _) in SYNCS.items()}
    for hour in range(hours):
        started_hour = end - dt.timedelta(hours=hours - hour)
        for number, (sync, (audience, _, base, rate)) in enumerate(SYNCS.items()):
            if len(run_rows) >= runs:
                break
            week = math.sin(2 * math.pi * hour / (24 * 7))
            target = base * (1 + 0.25 * week + 0.1 * math.sin(hour / 97))
            previous = sizes[sync]
            size = max(0, round(previous + (target - previous) * 0.3 + rng.gauss(0, base * 0.01)))
            adds = max(0, size - previous) + rng.randint(0, base // 100)
            removes = adds - (size - previous)
            changes = rng.randint(0, base // 40)
            roll = rng.random()
            status = "failed" if roll < 0.03 else "refused" if roll < 0.04 else "crashed" if roll < 0.043 else "succeeded"
            started = started_hour + dt.timedelta(minutes=number * 2, seconds=rng.randint(0, 50))
            run_id = f"{hour:06x}{number:02x}{rng.getrandbits(32):08x}"
            sent = adds + changes + removes
            if status == "refused":
                acked, failed, seconds, message = (0, 0, 0), 0, rng.uniform(0.3, 0.9), \
                    f"refused: it would remove {removes:,} of {previous:,} members"
            else:
                failed = rng.randint(1, 8) if status == "failed" else 0
                failed = rng.randint(30, 50) if status == "failed" and rng.random() < 0.1 else failed
                share = rng.uniform(0.3, 0.9) if status == "crashed" else 1.0
                acked = tuple(round(n * share) for n in (adds, changes, removes))
                seconds = 0.8 + sent * share / (rate * rng.uniform(0.8, 1.2))
                message = {"failed": f"{failed} rows rejected by {SYNCS[sync][1]}",
                           "crashed": "the process stopped before the run ended"}.get(status)
            sizes[sync] = size if status != "refused" else previous
            run_rows.append((run_id, sync, audience, started, started + dt.timedelta(seconds=seconds), status, size,
                             adds, changes, removes, *acked, failed, message))
            for index in range(failed):
                reason = REASONS[min(int(rng.expovariate(0.45)), len(REASONS) - 1)]
                failure_rows.append((run_id, sync, f"u{rng.randint(0, 10**6)}", rng.choice(("add", "change")),
                                     reason, None, started + dt.timedelta(seconds=seconds * index / max(failed, 1))))
    return run_rows, failure_rows


def record(project_root: Path, runs: list[tuple], failures: list[tuple]) -> None:
    """Write the rows into a new warehouse's sync state (the tables `migrate` makes)."""
    import pyarrow as pa

    from revetl.config import load_project
    from revetl.sync.migrations import migrate
    from revetl.warehouse.connection import connect

    run_columns = ("run_id", "sync", "audience", "started_at", "finished_at", "status", "members", "planned_adds",
                   "planned_changes", "planned_removes", "acked_adds", "acked_changes", "acked_removes", "failed",
                   "message")
    failure_columns = ("run_id", "sync", "key", "op", "reason", "payload", "failed_at")
    with connect(load_project(project_root)) as connection:
        migrate(connection)
        for table, columns, rows in (("runs", run_columns, runs), ("failures", failure_columns, failures)):
            data = pa.table({name: [row[i] for row in rows] for i, name in enumerate(columns)})
            with connection.scratch("bench_rows", data):
                names = ", ".join(columns)
                connection.execute(f"insert into revetl_state.{table} ({names}) select {names} from bench_rows")


def collector_files(landing: Path, end: dt.datetime, days: int = 14, seed: int = 17) -> int:
    """One collector file per 10-minute roll over `days` days, as `revetl collect` names them."""
    import pyarrow as pa

    from revetl.landing.events import LANDING_SCHEMA
    from revetl.landing.parquet import write_table

    rng = random.Random(seed)
    written = 0
    for roll in range(days * 24 * 6):
        opened = end - dt.timedelta(minutes=10 * (days * 24 * 6 - roll))
        daily = 1 + 0.8 * math.sin(2 * math.pi * (opened.hour - 9) / 24)
        count = max(1, round(rng.gauss(40, 6) * daily))
        rows = {name: [None] * count for name in LANDING_SCHEMA.names}
        rows.update(message_id=[f"m{roll}-{i}" for i in range(count)], type=["track"] * count,
                    event=["Page Viewed"] * count, anonymous_id=[f"a{i}" for i in range(count)],
                    timestamp=[opened] * count, received_at=[opened] * count)
        segment = f"{int(opened.timestamp() * 1e9)}-{rng.getrandbits(32):08x}"
        write_table(landing, pa.table(rows, schema=LANDING_SCHEMA), prefix=f"collect-{segment}")
        written += count
    return written


def run_results(target: Path, build: bool, env: dict[str, str], root: Path) -> str:
    target.mkdir(parents=True, exist_ok=True)
    if build:
        for args in (("generate", "--users", "300", "--days", "14"), ("build",)):
            subprocess.run([*REVETL, "--project-dir", str(root), *args], env=env, check=True, capture_output=True)
        return "a real `revetl build` of 300 generated users"
    rng = random.Random(17)
    models = sorted(path.stem for path in (ROOT / "models").rglob("*.sql"))
    results = [{"unique_id": f"model.revetl.{name}", "status": "success", "execution_time": rng.uniform(0.05, 3)}
               for name in models]
    results += [{"unique_id": f"test.revetl.not_null_{name}_id", "status": "pass",
                 "execution_time": rng.uniform(0.02, 0.4)} for name in models]
    document = {"metadata": {"generated_at": dt.datetime.now(dt.timezone.utc).isoformat()},
                "elapsed_time": sum(r["execution_time"] for r in results) / 2, "results": results}
    (target / "run_results.json").write_text(json.dumps(document))
    return f"made-up timings of this project's {len(models)} models and as many tests"


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one process; it must exit 0."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, output.decode()
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--build", action="store_true", help="take run_results.json from a real build")
    parser.add_argument("--no-write", action="store_true", help="do not write bench/RESULTS.md")
    args = parser.parse_args()

    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    env = project_env(WORK)
    os.environ.update({k: v for k, v in env.items() if k.startswith("REVETL_")})
    root = make_project(WORK)
    build = run_results(WORK / "target" / "duckdb", args.build, env, root)
    end = dt.datetime.now(dt.timezone.utc)
    runs, failures = history(args.runs, end)
    record(root, runs, failures)
    events = collector_files(WORK / "events", end)
    out = WORK / "report.html"
    times, cpus, loads = [], [], []
    for _ in range(args.repeat):
        wall, cpu = measure([*REVETL, "--project-dir", str(root), "report", "--out", str(out)], env)
        times.append(wall)
        cpus.append(cpu)
        loads.append(os.getloadavg()[0])
    html = out.read_text(encoding="utf-8")
    size = out.stat().st_size
    marks = len(re.findall(r'<(?:rect class="bar"|circle class="dot")', html))
    median = statistics.median(times)
    cpu = statistics.median(cpus)
    load = statistics.median(loads)
    print(f"{args.runs:,} runs, {len(failures):,} rejected rows: report in {median:.2f} s (all "
          f"{', '.join(f'{t:.2f}' for t in times)}), CPU {cpu:.2f} s, load average {load:.1f}, {size / 1e6:.2f} MB, "
          f"{marks:,} marks")
    if args.no_write:
        return
    import duckdb

    write_section(f"""## Report (issue 17)

Machine: {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, duckdb {duckdb.__version__}, \
{dt.date.today().isoformat()}, shared with four other sessions' work while it ran. Command: \
`.venv/bin/python bench/report_bench.py --runs {args.runs} --repeat {args.repeat}{' --build' if args.build else ''}`.

`revetl report --out report.html` through the real CLI (its own process, start-up included) on a DuckDB warehouse
whose sync state holds {len(runs):,} runs of {len(SYNCS)} syncs (one an hour each, {len(runs) / len(SYNCS) / 24:.0f} days) and
{len(failures):,} rejected rows; the last build: {build}; the collector: {events:,} events in
{14 * 24 * 6:,} files over 14 days. Target: under 5 s and under 5 MB.

| runs | rejected rows | report s (median) | all runs s | CPU s (median) | load average | file MB | marks drawn |
|---:|---:|---:|---|---:|---:|---:|---:|
| {len(runs):,} | {len(failures):,} | {median:.2f} | {', '.join(f'{t:.2f}' for t in times)} | {cpu:.2f} | {load:.1f} | \
{size / 1e6:.2f} | {marks:,} |

Wall time is the user's wait; CPU time (user + system, from wait4) is what the command itself costs, and moves
less with the machine's load (the 1-minute load average of its 2 cores, in the table, was mostly other sessions'
test suites).

Series of more than 120 runs are drawn in time buckets of a round width (here an hour would give 1,660 marks
per sync; a day gives 70), so the page's size grows with the number of syncs and audiences, not of runs.
""")


if __name__ == "__main__":
    main()
