"""Benchmark for issue 6 (Salesforce half): 200k upserts through the sync engine to the Salesforce emulator.

Run by hand (not a test):  .venv/bin/python bench/salesforce_bench.py [--rows 200000] [--concurrency 4]

Setup (not timed): a project with the repo's dbt settings under bench/work/salesforce, its warehouse
holding one table of N people (user_id, email, name, plan). The emulator runs in its own process
(`python -m revetl.emulators salesforce --port 0 --no-rate-limit`; its first stdout line gives the
URL). Each run is `apply_audience` in its own process (wall time, peak RSS from wait4):

1. first sync, checkbox membership: N adds; target calls = ceil(N / 200) upserts + 1 token, no more;
2. the same sync again with nothing changed: no calls at all;
3. 1% of the people change plan: ceil(changes / 200) + 1;
4. first sync of another sync, Campaign membership: per batch an upsert and a CampaignMember
   create, plus the token and the campaign's lookup by name.

Calls are counted twice: by the engine (`RunResult.requests`, retries included) and by the
emulator (`/_emulator/stats`). Results replace the "## Salesforce (issue 6)" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from results_file import write_section

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "salesforce"
SECTION = "## Salesforce (issue 6)"

RUN = """
import json, sys, time
from pathlib import Path
from revetl.sync.apply import apply_audience
from revetl.config import SyncConfig, load_project
from revetl.destinations import load_destination
project = load_project(Path(sys.argv[1]))
sync = SyncConfig.model_validate(json.loads(sys.argv[2]))
destination = load_destination(sync)
started = time.monotonic()
r = apply_audience(project, sync, destination, "select * from people")
print(json.dumps({"seconds": time.monotonic() - started, "status": r.status, "acked": sum(r.acked.values()),
                  "failed": r.failed, "requests": r.requests, "retries": r.retries, "message": r.message}))
"""


def environment() -> dict[str, str]:
    """The environment that points a revetl process at the bench's own warehouse and directories."""
    return {**os.environ, "REVETL_WAREHOUSE": str(WORK / "warehouse.duckdb"),
            "REVETL_LANDING_DIR": str(WORK / "events"), "REVETL_TARGET_DIR": str(WORK / "target"),
            "REVETL_COLLECTOR_DIR": str(WORK / "collector")}


def prepare(rows: int) -> Path:
    """A fresh project and warehouse with `rows` people."""
    import duckdb

    if WORK.exists():
        shutil.rmtree(WORK)
    project = WORK / "project"
    project.mkdir(parents=True)
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copy(ROOT / name, project / name)
    connection = duckdb.connect(str(WORK / "warehouse.duckdb"))
    connection.execute(
        """create table people as
           select 'user-' || i as user_id, 'person' || i || '@example.com' as email, 'Person ' || i as name,
                  (['free', 'pro', 'enterprise'])[i % 3 + 1] as plan
           from range(?) t(i)""", [rows])
    connection.close()
    return project


def change_one_percent() -> int:
    import duckdb

    connection = duckdb.connect(str(WORK / "warehouse.duckdb"))
    connection.execute("update people set plan = 'churned' where hash(user_id) % 100 = 1")
    changed = connection.execute("select count(*) from people where plan = 'churned'").fetchone()[0]
    connection.close()
    return changed


class Emulator:
    """`revetl emulate salesforce` in its own process."""

    def __enter__(self) -> Emulator:
        command = [sys.executable, "-m", "revetl.emulators", "salesforce", "--port", "0", "--no-rate-limit"]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=ROOT, env=environment())
        self.url = json.loads(self.process.stdout.readline())["url"]  # type: ignore[union-attr]
        return self

    def calls(self) -> int:
        stats = httpx.get(f"{self.url}/_emulator/stats", timeout=30).json()
        return stats["requests_total"]

    def cpu_seconds(self) -> float:
        """User + system CPU the emulator process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def sync(name: str, url: str, concurrency: int, membership: dict) -> dict:
    return {"name": name, "path": f"syncs/{name}.yml", "audience": "bench",
            "destination": {"type": "salesforce", "base_url": url, "client_id": "dev-client",
                            "client_secret": "dev-secret", "concurrency": concurrency},
            "identity": {"from": "user_id", "to": "Revetl_User_Id__c"},
            "fields": {"email": "Email", "name": "LastName", "plan": "Plan__c"}, "membership": membership}


def measure(project: Path, config: dict, emulator: Emulator) -> dict:
    """One sync run in its own process: its JSON line, peak RSS (MB) and the emulator's count of calls."""
    before, cpu_before = emulator.calls(), emulator.cpu_seconds()
    process = subprocess.Popen([sys.executable, "-c", RUN, str(project), json.dumps(config)],
                               stdout=subprocess.PIPE, cwd=ROOT, env=environment())
    out = process.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"run failed ({status}): {out.decode()}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    result.update(rss_mb=usage.ru_maxrss / 1024, server_calls=emulator.calls() - before,
                  cpu=usage.ru_utime + usage.ru_stime, server_cpu=emulator.cpu_seconds() - cpu_before)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--no-write", action="store_true", help="Print only; leave bench/RESULTS.md alone.")
    args = parser.parse_args()
    project = prepare(args.rows)
    runs: list[tuple[str, int, dict, float]] = []  # (label, target calls, result, emulator RSS)
    with Emulator() as emulator:
        config = sync("bench_checkbox", emulator.url, args.concurrency, {"checkbox": "In_Bench__c"})
        runs.append((f"first sync, {args.rows:,} adds, checkbox", math.ceil(args.rows / 200) + 1,
                     measure(project, config, emulator), emulator.peak_rss_mb()))
        runs.append(("same sync again, nothing changed", 0, measure(project, config, emulator), emulator.peak_rss_mb()))
        changed = change_one_percent()
        runs.append((f"{changed:,} changes (1%)", math.ceil(changed / 200) + 1, measure(project, config, emulator),
                     emulator.peak_rss_mb()))
    with Emulator() as emulator:
        config = sync("bench_campaign", emulator.url, args.concurrency, {"campaign": "Power Users"})
        runs.append((f"first sync, {args.rows:,} adds, campaign", 2 * math.ceil(args.rows / 200) + 2,
                     measure(project, config, emulator), emulator.peak_rss_mb()))
    for label, target, r, server_rss in runs:
        print(f"{label:38} {r['seconds']:7.2f} s {r['acked'] / max(r['seconds'], 1e-9):9,.0f} rows/s  "
              f"calls {r['requests']:,} (server {r['server_calls']:,}, target {target:,})  "
              f"RSS {r['rss_mb']:,.0f} MB  CPU {r['cpu']:.1f} + {r['server_cpu']:.1f} s  {r['status']}")
    if not args.no_write:
        write_results(args, runs)


def write_results(args: argparse.Namespace, runs: list[tuple[str, int, dict, float]]) -> None:
    import duckdb

    machine = (f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}, "
               f"duckdb {duckdb.__version__}, {dt.date.today().isoformat()}")
    lines = [
        SECTION, "",
        f"Machine: {machine}; its cores are shared with other sessions' work. Command: "
        f"`.venv/bin/python bench/salesforce_bench.py --rows {args.rows} --concurrency {args.concurrency}`.",
        "",
        f"{args.rows:,} people synced with `apply_audience` (in its own process; peak RSS from wait4) to the "
        "Salesforce emulator in another process (`revetl emulate salesforce --port 0 --no-rate-limit`), "
        f"Contacts upserted by External ID, 200 per sObject Collections call, {args.concurrency} calls in flight. "
        "Calls: as the engine counted them (retries included) and as the emulator received them. "
        "Target: calls = ceil(rows / 200) plus the token, no more.",
        "",
        "| run | rows | seconds | rows/s | calls | emulator calls | target calls | peak RSS MB | emulator RSS MB "
        "| CPU s: sync / emulator | status |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for label, target, r, server_rss in runs:
        rate = r["acked"] / r["seconds"] if r["acked"] else 0
        lines.append(f"| {label} | {r['acked']:,} | {r['seconds']:.2f} | {rate:,.0f} | {r['requests']:,} | "
                     f"{r['server_calls']:,} | {target:,} | {r['rss_mb']:,.0f} | {server_rss:,.0f} | "
                     f"{r['cpu']:.1f} / {r['server_cpu']:.1f} | {r['status']} |")
    first, target = runs[0][2], runs[0][1]
    lines += [
        "",
        f"**Calls.** First sync: {first['requests']:,} for a target of {target:,} "
        f"({first['requests'] - target:+,}). Every upsert carries 200 records but the last: `apply._produce` carries "
        "the rows left over from one Arrow record batch into the next (DuckDB hands back uneven ones, e.g. 2,880 "
        "then 17,120; before that fix each seam cost a short batch, 1,002 calls). "
        "A campaign add costs a second call per batch (the CampaignMember create); the token and the campaign's "
        "lookup by name are once per run. A run with nothing to send makes no call, not even for a token.",
        "",
        "**Where the time goes.** Both processes are CPU-bound on the two shared cores (the CPU column): the sync "
        "process spends its time turning Arrow rows into records, JSON and state writes, the emulator validating "
        "and storing every record; more calls in flight (8) was slower, not faster, on this machine.",
        "",
    ]
    write_section("\n".join(lines))


if __name__ == "__main__":
    main()
