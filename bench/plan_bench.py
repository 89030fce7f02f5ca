"""Benchmark for issue 3: `revetl plan` on a large audience against a large state.

Run by hand (not a test):  .venv/bin/python bench/plan_bench.py [--members 10000000] [--small 1000000]

Setup (not timed, in a process of its own): a DuckDB file with an audience table of N members
(user_id, email, plan) and a sync state acknowledging the previous version of it; the current
version has 1% of members gone, 1% new and 1% with a changed mapped field. Then, each in a fresh
process that does nothing else, started from this small launcher (wall time, peak RSS):

- revetl: `make_plan` (the SQL diff `revetl plan` and `revetl sync` run) with DuckDB at the memory limit
  they use by default (128MB, `REVETL_SYNC_MEMORY_LIMIT`), and again at 3GB (dbt's limit here);
- python: the obvious approach, fetch both sides into dicts and compare payloads;
- revetl on a no-change plan of a 1M audience.

Peak RSS is what each measured process reads of itself at its end: VmHWM in /proc/self/status, the
high-water mark of its own address space. Not ru_maxrss (wait4, getrusage): Linux carries the
parent's peak over fork and exec into the child's, so a child started after a 4.5 GB setup reported
4.5 GB whatever it used.

Results replace the section "## Plan (issue 3)" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from results_file import write_section

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "plan"
SYNC = {
    "name": "bench",
    "path": "syncs/bench.yml",
    "audience": "bench",
    "destination": {"type": "braze"},
    "identity": {"from": "user_id", "to": "external_id"},
    "fields": {"email": "email", "plan": "plan"},
}

# measure() appends this to every measured script, which sets `result`: the result and the
# process's own peak RSS, as its last line of output.
REPORT = """
import json
def own_peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
import os
result["rss_mb"] = own_peak_mb()
result["cpu_s"] = os.times().user + os.times().system  # the whole process: start-up and setup included
print(json.dumps(result))
"""

MEASURE_REVETL = """
import json, sys, time, duckdb
from revetl.config import SyncConfig
from revetl.sync.plan import make_plan
from revetl.warehouse.embedded import DuckDBConnection
c = duckdb.connect(sys.argv[1], read_only=True)
c.execute("set memory_limit = ?", [sys.argv[3]]); c.execute("set preserve_insertion_order = false"); c.execute("set threads = 2")
started = time.monotonic()
plan = make_plan(DuckDBConnection(c), SyncConfig.model_validate(json.loads(sys.argv[2])), "select * from audience_rows")
result = {"seconds": time.monotonic() - started, "adds": plan.adds, "changes": plan.changes, "removes": plan.removes}
"""

MEASURE_PYTHON = """
import json, sys, time, duckdb
c = duckdb.connect(sys.argv[1], read_only=True)
started = time.monotonic()
current = {k: json.dumps({"email": e, "plan": p}, separators=(",", ":"))
           for k, e, p in c.execute("select user_id::varchar, email, plan from audience_rows").fetchall()}
acked = dict(c.execute("select key, payload::varchar from revetl_state.acknowledged where sync = 'bench'").fetchall())
adds = sum(1 for k in current if k not in acked)
removes = sum(1 for k in acked if k not in current)
changes = sum(1 for k, v in current.items() if k in acked and acked[k] != v)
result = {"seconds": time.monotonic() - started, "adds": adds, "changes": changes, "removes": removes}
"""


def warehouse_path(members: int, churn: bool) -> Path:
    return WORK / f"plan_{members}_{'churn' if churn else 'same'}.duckdb"


def prepare_elsewhere(members: int, churn: bool) -> Path:
    """prepare() in a process of its own, so that this launcher stays small."""
    path = warehouse_path(members, churn)
    if not path.exists():
        subprocess.run([sys.executable, __file__, "prepare", str(members), "churn" if churn else "same"],
                       check=True, cwd=ROOT)
    return path


def prepare(members: int, churn: bool) -> Path:
    """The bench warehouse: state from the previous audience, the current audience beside it."""
    import duckdb

    from revetl.sync import state
    from revetl.config import SyncConfig
    from revetl.sync.plan import make_plan
    from revetl.warehouse.embedded import DuckDBConnection

    path = warehouse_path(members, churn)
    if path.exists():
        return path
    WORK.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    c = duckdb.connect(str(partial))
    c.execute(
        """create table audience_rows as
           select 'user-' || i as user_id, 'person' || i || '@example.com' as email,
                  (['free', 'pro', 'enterprise'])[i % 3 + 1] as plan
           from range(?) t(i)""",
        [members],
    )
    make_plan(DuckDBConnection(c), SyncConfig.model_validate(SYNC), "select * from audience_rows")
    state.migrate(DuckDBConnection(c))
    c.execute(
        """insert into revetl_state.acknowledged
           select 'bench', key, row_hash, payload::json, null, 'setup', now() from revetl_diff"""
    )
    if churn:  # 1% leave, 1% change a mapped field, 1% join
        c.execute("delete from audience_rows where hash(user_id) % 100 = 0")
        c.execute("update audience_rows set plan = 'churned' where hash(user_id) % 100 = 1")
        c.execute(
            """insert into audience_rows select 'new-' || i, 'new' || i || '@example.com', 'pro'
               from range(?) t(i)""",
            [members // 100],
        )
    c.execute("checkpoint")
    c.close()
    partial.rename(path)  # an interrupted setup leaves no warehouse that looks complete
    return path


def measure(script: str, *args: str, env: dict[str, str] | None = None) -> dict:
    """Run one measured script (which sets `result`) in a fresh process: `result`, its own peak RSS, wall time."""
    started = time.monotonic()
    finished = subprocess.run([sys.executable, "-c", script + REPORT, *args], stdout=subprocess.PIPE, cwd=ROOT,
                              env=env)
    if finished.returncode != 0:
        raise SystemExit(f"measurement failed ({finished.returncode}): {finished.stdout.decode()}")
    result = json.loads(finished.stdout.decode().strip().splitlines()[-1])
    result["wall"] = time.monotonic() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000_000)
    parser.add_argument("--small", type=int, default=1_000_000)
    args = parser.parse_args()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())  # 1, 5, 15 minutes
    big = prepare_elsewhere(args.members, churn=True)
    small = prepare_elsewhere(args.small, churn=False)
    from revetl.warehouse.connection import sync_memory_limit

    limit = sync_memory_limit()
    sync = json.dumps(SYNC)
    ours = measure(MEASURE_REVETL, str(big), sync, limit)
    roomy = measure(MEASURE_REVETL, str(big), sync, "3GB")
    theirs = measure(MEASURE_PYTHON, str(big), sync)
    same = {k: ours[k] for k in ("adds", "changes", "removes")} == {k: theirs[k] for k in ("adds", "changes", "removes")}
    nochange = measure(MEASURE_REVETL, str(small), sync, limit)
    runs = {
        f"revetl `make_plan` (SQL in DuckDB), memory limit {limit}": ours,
        "revetl `make_plan`, memory limit 3GB": roomy,
        "Python: fetch both sides into dicts": theirs,
        f"revetl, no-change plan, {args.small:,} members, memory limit {limit}": nochange,
    }
    for label, r in runs.items():
        print(f"{label[:40]:40} {r['seconds']:7.2f} s  {r['cpu_s']:7.2f} CPU s  {r['rss_mb']:8,.0f} MB  "
              f"+{r['adds']:,} ~{r['changes']:,} -{r['removes']:,}")
    write_results(args, runs, ours, theirs, same, load)


def write_results(args, runs: dict, ours: dict, theirs: dict, same: bool, load: str) -> None:
    import duckdb

    machine = (
        f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
        f"duckdb {duckdb.__version__}, {dt.date.today().isoformat()}"
    )
    lines = [
        "",
        "## Plan (issue 3)",
        "",
        f"Machine: {machine}. Command: `.venv/bin/python bench/plan_bench.py`.",
        "",
        f"An audience of {args.members:,} members planned against a state of {args.members:,} acknowledged rows with "
        "1% adds, 1% removes and 1% changes of a mapped field. The setup runs in a process of its own; each "
        "measurement in a fresh process that does nothing else, whose peak RSS is its own VmHWM read at its end "
        "(not wait4's ru_maxrss, which carries over the peak of the process that started it). Targets: under 15 s "
        "and 3 GB; a no-change plan of a 1M audience under 2 s.",
        "",
        f"Load average when it started: {load}. \"CPU s\" is the measured process's own CPU time (user + system, "
        "its start-up included): on a machine shared with other work, plan s grows while CPU s stays.",
        "",
        "| approach | plan s | CPU s | peak RSS MB | adds | changes | removes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in runs.items():
        lines.append(f"| {label} | {r['seconds']:.2f} | {r['cpu_s']:.2f} | {r['rss_mb']:,.0f} | {r['adds']:,} | "
                     f"{r['changes']:,} | {r['removes']:,} |")
    lines += [
        "",
        f"Ratio (python / revetl): {theirs['seconds'] / ours['seconds']:.1f}x faster, "
        f"{theirs['rss_mb'] / ours['rss_mb']:.1f}x less memory. Same counts from both: {same}.",
        "",
    ]
    write_section("\n".join(lines))


if __name__ == "__main__":
    if sys.argv[1:2] == ["prepare"]:  # prepare_elsewhere(): the setup, in its own process
        prepare(int(sys.argv[2]), churn=sys.argv[3] == "churn")
    else:
        main()
