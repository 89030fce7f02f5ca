"""Benchmark for issue 15: PostgreSQL against DuckDB (the baseline), in the same run: load, build, plan, sync.

Run by hand (not a test):  .venv/bin/python bench/warehouse_bench.py [--users 10000] [--members 1000000]
                                [--sync-rows 100000] [--repeat 2] [--reuse-events] [--no-write]

A throwaway PostgreSQL cluster (revetl/testing/postgres.py: initdb + pg_ctl on a loopback port, fsync off
as in the tests) beside a DuckDB file; every step is the real CLI (or, for the plan, `make_plan` too) in a
process of its own, its wall time and peak RSS measured (wait4's ru_maxrss for the CLI, as build_bench; the
measured process's own VmHWM for `make_plan`, as plan_bench). This launcher never holds the data itself,
so the children's ru_maxrss is theirs. PostgreSQL's own memory (the server's processes) is not in it.

1. Load: `revetl generate --users N --days 90 --seed 7` (not timed), then `revetl --target postgres load`
   --repeat times into an empty `landing` schema (load_bench.py); DuckDB reads the files in place.
2. Build: `revetl build --as-of ...` of those events on DuckDB (from an empty warehouse file) and on
   PostgreSQL (from an empty `public` schema, the events loaded), alternating, --repeat times each.
3. Plan: an audience of M members against M acknowledged rows, 1% gone, 1% new, 1% changed, on each
   engine. The tables and the state are seeded through revetl itself (`Connection.ingest`, `state.migrate`,
   the rows of a first `plan_sync` acknowledged in a `state.transaction`), in a process of its own.
   Measured, alternating: `make_plan` alone in a fresh process, and `revetl plan bench --json`.
4. Sync: `revetl sync` of S adds (acknowledged state reset before each run) to the Braze emulator in its
   own process (`revetl emulate braze --port 0 --no-rate-limit`, the sync told `unlimited: true`),
   alternating; rows/s from the run's record (revetl_state.runs) as sync_bench.

Results replace the section "## Warehouses: PostgreSQL against DuckDB (issue 15)" of bench/RESULTS.md.
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
from pathlib import Path
from typing import TYPE_CHECKING

from build_bench import AS_OF, REVETL, model_seconds, run
from load_bench import check_loaded, generate, landed, time_loads
from plan_bench import measure
from sync_bench import KEY, emulator, write_sync

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "warehouses"
SECTION = "## Warehouses: PostgreSQL against DuckDB (issue 15)"
ENGINES = ("duckdb", "postgres")
TARGETS = {"duckdb": [], "postgres": ["--target", "postgres"]}

if TYPE_CHECKING:
    from revetl.testing.postgres import PostgresCluster, PostgresDatabase

# The plan's audience, in two versions (`churn`): 1% of members gone, 1% with a changed plan, 1% new.
AUDIENCE = """
def members(count, churn):
    import pyarrow as pa
    keep = [i for i in range(count) if not (churn and i % 100 == 0)]
    users = [f"user-{i}" for i in keep] + ([f"new-{i}" for i in range(count // 100)] if churn else [])
    plans = [("churned" if churn and i % 100 == 1 else ("free", "pro", "enterprise")[i % 3]) for i in keep]
    plans += ["pro"] * (len(users) - len(keep))
    return pa.table({"user_id": users, "email": [u + "@example.com" for u in users], "plan": plans})
"""

# argv: project root, target, members, sync rows. Seeds `members` (acknowledged as it was, then churned) and
# `recipients` (never sent) through revetl's own connection and state code.
PREPARE = AUDIENCE + """
import sys
from pathlib import Path
from revetl.config import load_project, load_sync
from revetl.sync import state
from revetl.sync.plan import plan_sync
from revetl.warehouse.connection import connect
from revetl.warehouse.dialect import Template

ACKNOWLEDGE = Template('''insert into revetl_state.acknowledged (sync, key, row_hash, payload, run_id, acknowledged_at)
    select $sync, key, row_hash, payload::json, 'setup', now() from revetl_diff''')
root, target, count, sent = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
project = load_project(root, target)
with connect(project) as connection:
    def replace(name, table):
        connection.execute(f"drop table if exists {name}")
        connection.ingest(name, table, temporary=False)
    replace("recipients", members(sent, churn=False))
    replace("members", members(count, churn=False))
    state.migrate(connection)
    plan = plan_sync(project, load_sync(project, "bench"), connection)
    assert plan.adds == count, plan
    with state.transaction(connection, changes="bench"):
        connection.execute(ACKNOWLEDGE, {"sync": "bench"})
    replace("members", members(count, churn=True))
    if target == "postgres":  # as autovacuum would have by the time a cron job plans
        connection.execute("analyze")
"""

MEASURE_PLAN = """
import sys, time
from pathlib import Path
from revetl.audiences.compile import compile_audience, load_audience
from revetl.config import load_project, load_sync
from revetl.sync.plan import make_plan
from revetl.warehouse.connection import connect, sync_memory_limit
project = load_project(Path(sys.argv[1]), sys.argv[2])
sync = load_sync(project, "bench")
sql = compile_audience(project, load_audience(project, sync.audience))
connection = connect(project, read_only=True, memory_limit=sync_memory_limit(), sandbox=True)
started = time.monotonic()
plan = make_plan(connection, sync, sql)
result = {"seconds": time.monotonic() - started, "adds": plan.adds, "changes": plan.changes, "removes": plan.removes}
"""

LAST_RUN = """
import json, sys
from pathlib import Path
from revetl.config import load_project
from revetl.sync import state
from revetl.warehouse.connection import connect
with connect(load_project(Path(sys.argv[1]), sys.argv[2]), read_only=True) as connection:
    last = state.runs(connection, sys.argv[3], limit=1)[0]
print(json.dumps({"seconds": last.duration, "rows": last.acked[0], "status": last.status}))
"""


def output(script: str, *args: str, env: dict[str, str]) -> str:
    """Run a setup or readout script in a process of its own (this launcher stays small); its stdout."""
    finished = subprocess.run([sys.executable, "-c", script, *args], env=env, cwd=ROOT, capture_output=True, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"script failed ({finished.returncode}):\n{finished.stderr[-3000:]}")
    return finished.stdout


def environments(base: Path, postgres: dict[str, str]) -> dict[str, dict[str, str]]:
    """Per engine, the environment of a revetl process whose files live under `base`."""
    common = dict(os.environ, REVETL_LANDING_DIR=str(WORK / "events"), REVETL_TARGET_DIR=str(base / "target"),
                  REVETL_WAREHOUSE=str(base / "warehouse.duckdb"), BRAZE_API_KEY=KEY)
    return {engine: {**common, **(postgres if engine == "postgres" else {}),
                     "REVETL_WORK_DIR": str(base / f"{engine}.revetl")} for engine in ENGINES}


def bench_load(cluster: PostgresCluster, database: PostgresDatabase, env: dict[str, str], repeat: int) -> dict:
    files, rows, size = landed(WORK / "events")
    loads = time_loads(cluster, database, env, rows, repeat)
    check_loaded(cluster, database, files, rows)
    seconds, peak_mb = min(loads)
    return {"events": rows, "files": files, "parquet_mb": size / 1e6, "seconds": seconds, "peak_mb": peak_mb,
            "rate": rows / seconds, "all": [s for s, _ in loads]}


def bench_build(cluster: PostgresCluster, database: PostgresDatabase, envs: dict[str, dict[str, str]],
                repeat: int) -> dict:
    base = WORK / "build"
    runs: dict[str, list[dict]] = {engine: [] for engine in ENGINES}
    for _ in range(repeat):
        for engine in ENGINES:
            if engine == "duckdb":  # from an empty warehouse file
                for name in ("warehouse.duckdb", "warehouse.duckdb.wal"):
                    (base / name).unlink(missing_ok=True)
            else:  # from an empty schema of models; the events stay loaded
                cluster.sql("drop schema public cascade; create schema public", database.name)
            seconds, peak_mb = run([*REVETL, *TARGETS[engine], "build", "--as-of", AS_OF], envs[engine])
            runs[engine].append({"seconds": seconds, "peak_mb": peak_mb, "models": model_seconds(base, engine)})
            print(json.dumps({"build": engine, "seconds": round(seconds, 1), "peak_mb": round(peak_mb)}), flush=True)
    import duckdb

    with duckdb.connect(str(base / "warehouse.duckdb"), read_only=True) as connection:
        duck = connection.execute("select (select count(*) from events), (select count(*) from profiles)").fetchall()
    served = cluster.sql("select (select count(*) from events), (select count(*) from profiles)", database.name)
    counts = {"duckdb": "|".join(map(str, duck[0])), "postgres": served.strip()}
    assert counts["duckdb"] == counts["postgres"], f"events|profiles differ between engines: {counts}"
    return {engine: summary(engine_runs, events_profiles=counts[engine]) for engine, engine_runs in runs.items()}


def summary(runs: list[dict], **extra) -> dict:
    """The fastest run, with every run's seconds."""
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "all": [r["seconds"] for r in runs], **extra}


def plan_project(root: Path) -> None:
    """A project of two audiences over tables the bench makes: `members` (planned), `recipients` (sent)."""
    shutil.rmtree(root, ignore_errors=True)
    for folder in ("audiences", "syncs", "models"):
        (root / folder).mkdir(parents=True)
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copy(ROOT / name, root / name)
    for audience, table in (("bench", "members"), ("recipients", "recipients")):
        (root / "models" / f"{table}.sql").write_text("-- placeholder: the bench makes this table itself\n")
        (root / "audiences" / f"{audience}.sql").write_text(
            f"-- description: bench {table}\n-- key: user_id\n\n"
            f"select user_id, email, plan from {{{{ ref('{table}') }}}}\n")
    write_sync(root, "http://127.0.0.1:9", name="bench", audience="bench")  # planned, never sent


def bench_plan(root: Path, envs: dict[str, dict[str, str]], members: int, repeat: int) -> dict:
    runs: dict[str, list[dict]] = {engine: [] for engine in ENGINES}
    cli: dict[str, list[dict]] = {engine: [] for engine in ENGINES}
    for _ in range(repeat):
        for engine in ENGINES:
            measured = measure(MEASURE_PLAN, str(root), engine, env=envs[engine])
            counts = (measured["adds"], measured["changes"], measured["removes"])
            assert counts == (members // 100,) * 3, f"{engine} planned {counts}"
            runs[engine].append({**measured, "peak_mb": measured["rss_mb"]})
            seconds, peak_mb = run([*REVETL, "--project-dir", str(root), *TARGETS[engine], "plan", "bench", "--json"],
                                   envs[engine])
            cli[engine].append({"seconds": seconds, "peak_mb": peak_mb})
            print(json.dumps({"plan": engine, "make_plan_s": round(measured["seconds"], 2),
                              "cpu_s": round(measured["cpu_s"], 2), "cli_s": round(seconds, 2)}), flush=True)
    return {engine: {**summary(runs[engine]), "cli": summary(cli[engine])} for engine in ENGINES}


def bench_sync(root: Path, envs: dict[str, dict[str, str]], rows: int, repeat: int) -> dict:
    runs: dict[str, list[dict]] = {engine: [] for engine in ENGINES}
    for _ in range(repeat):
        for engine in ENGINES:
            project = ["--project-dir", str(root), *TARGETS[engine]]
            with emulator("--no-rate-limit") as served:
                write_sync(root, served["url"], name="send", audience="recipients", unlimited=True)
                run([*REVETL, *project, "state", "reset", "send", "--yes"], envs[engine])
                wall, peak_mb = run([*REVETL, *project, "sync", "send"], envs[engine])
            last = json.loads(output(LAST_RUN, str(root), engine, "send", env=envs[engine]))
            assert last["rows"] == rows and last["status"] == "succeeded", f"{engine} sync: {last}"
            runs[engine].append({"seconds": last["seconds"], "wall": wall, "peak_mb": peak_mb,
                                 "rate": rows / last["seconds"], "emulator_cpu": served["cpu"]})
            print(json.dumps({"sync": engine, "seconds": round(last["seconds"], 2),
                              "rows_per_s": round(rows / last["seconds"]),
                              "peak_mb": round(peak_mb)}), flush=True)
    return {engine: summary(engine_runs) for engine, engine_runs in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000, help="people generated (~100 events each)")
    parser.add_argument("--members", type=int, default=1_000_000, help="audience planned, and rows acknowledged")
    parser.add_argument("--sync-rows", type=int, default=100_000, help="Braze adds synced from each engine")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each timing per engine; the fastest is kept")
    parser.add_argument("--reuse-events", action="store_true", help="keep events generated by an earlier run")
    parser.add_argument("--no-write", action="store_true", help="print the results, leave bench/RESULTS.md alone")
    args = parser.parse_args()
    from revetl.testing.postgres import PostgresCluster

    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    with PostgresCluster.start() as cluster:
        version = cluster.sql("show server_version").strip()
        built = cluster.database("bench")
        envs = environments(WORK / "build", built.env)
        generate(WORK, envs["duckdb"], args.users, args.reuse_events, end=AS_OF[:10])
        loaded = bench_load(cluster, built, envs["postgres"], args.repeat)
        builds = bench_build(cluster, built, envs, args.repeat)
        root = WORK / "project"
        plan_project(root)
        envs = environments(root, cluster.database("plans").env)
        for engine in ENGINES:
            seconds, _ = run([sys.executable, "-c", PREPARE, str(root), engine, str(args.members),
                              str(args.sync_rows)], envs[engine])
            print(json.dumps({"prepare": engine, "seconds": round(seconds, 1)}), flush=True)
        plans = bench_plan(root, envs, args.members, args.repeat)
        syncs = bench_sync(root, envs, args.sync_rows, args.repeat)
    write_results(args, version, load, loaded, builds, plans, syncs)


def figure(run: dict) -> str:
    """Best seconds and its peak RSS, every run's seconds."""
    return f"{run['seconds']:.1f} s, {run['peak_mb']:,.0f} MB (all: {', '.join(f'{s:.1f}' for s in run['all'])})"


def write_results(args, version: str, load: str, loaded: dict, builds: dict, plans: dict, syncs: dict) -> None:
    import duckdb

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    duck, pg = builds["duckdb"], builds["postgres"]
    events, profiles = map(int, duck["events_profiles"].split("|"))
    plan_duck, plan_pg = plans["duckdb"], plans["postgres"]
    sync_duck, sync_pg = syncs["duckdb"], syncs["postgres"]
    sync_rates = {engine: ", ".join(f"{args.sync_rows / s:,.0f}" for s in run["all"]) for engine, run in syncs.items()}
    share = sync_pg["rate"] / sync_duck["rate"]
    met = {True: "yes", False: "**no**"}
    command = (f".venv/bin/python bench/warehouse_bench.py --users {args.users} --members {args.members} "
               f"--sync-rows {args.sync_rows} --repeat {args.repeat}")
    lines = [
        SECTION,
        "",
        f"Machine: {os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.machine()}, Python "
        f"{platform.python_version()}, duckdb {duckdb.__version__}, PostgreSQL {version} (a throwaway local cluster "
        f"from revetl/testing/postgres.py: fsync off, shared_buffers 128MB, other settings default), "
        f"{dt.date.today().isoformat()}; load average at the start {load}. Command: `{command}`.",
        "",
        "Every step is the real CLI in a process of its own (the plan also as `make_plan` alone in a fresh "
        f"process, as plan_bench), PostgreSQL and DuckDB alternating in the same run; best of {args.repeat} each, "
        "all runs in brackets. Peak RSS is the revetl process's own: DuckDB works inside it, PostgreSQL in its "
        "server's processes, which are not counted.",
        "",
        "| step | size | DuckDB (baseline) | PostgreSQL | PostgreSQL / DuckDB | target | met |",
        "|---|---|---|---|---:|---|---|",
        f"| `revetl --target postgres load` | {loaded['events']:,} events, {loaded['files']} files, "
        f"{loaded['parquet_mb']:.0f} MB of Parquet | reads the files in place | {loaded['seconds']:.1f} s = "
        f"{loaded['rate']:,.0f} events/s, {loaded['peak_mb']:,.0f} MB (all: "
        f"{', '.join(f'{s:.1f}' for s in loaded['all'])}) | - | at least 100,000 events/s | "
        f"{met[loaded['rate'] >= 100_000]} |",
        f"| `revetl build --as-of {AS_OF}` | {loaded['events']:,} events landed; {events:,} in `events`, "
        f"{profiles:,} profiles, the same on both | {figure(duck)} | {figure(pg)} | "
        f"{pg['seconds'] / duck['seconds']:.2f}x | PostgreSQL under 120 s | {met[pg['seconds'] < 120]} |",
        f"| `make_plan` (fresh process; CPU s of the whole process) | {args.members:,} members against "
        f"{args.members:,} acknowledged, 1% gone, 1% new, 1% changed | {plan_duck['seconds']:.2f} s, "
        f"{plan_duck['cpu_s']:.1f} CPU s, {plan_duck['peak_mb']:,.0f} MB | {plan_pg['seconds']:.2f} s, "
        f"{plan_pg['cpu_s']:.1f} CPU s, {plan_pg['peak_mb']:,.0f} MB | "
        f"{plan_pg['seconds'] / plan_duck['seconds']:.2f}x "
        f"| PostgreSQL under 20 s | {met[plan_pg['seconds'] < 20]} |",
        f"| `revetl plan bench --json` | the same | {figure(plan_duck['cli'])} | {figure(plan_pg['cli'])} | "
        f"{plan_pg['cli']['seconds'] / plan_duck['cli']['seconds']:.2f}x | (the same, start-up included) | "
        f"{met[plan_pg['cli']['seconds'] < 20]} |",
        f"| `revetl sync` to the Braze emulator, no rate limit | {args.sync_rows:,} adds | "
        f"{sync_duck['rate']:,.0f} rows/s ({sync_duck['seconds']:.1f} s), {sync_duck['peak_mb']:,.0f} MB (all: "
        f"{sync_rates['duckdb']} rows/s) | {sync_pg['rate']:,.0f} rows/s ({sync_pg['seconds']:.1f} s), "
        f"{sync_pg['peak_mb']:,.0f} MB (all: {sync_rates['postgres']} rows/s) | {share:.2f} of the rows/s | "
        f"PostgreSQL at least 0.80 of DuckDB's rows/s | {met[share >= 0.8]} |",
        "",
        "Sync seconds are the run's own record (revetl_state.runs: sending and the state's update; a run is "
        "recorded from the end of its plan), as sync_bench; the emulator runs in its own process on the same cores.",
        "",
        "Slowest models of the fastest build (dbt's timing, seconds): DuckDB "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in slowest(duck["models"]))
        + "; PostgreSQL " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in slowest(pg["models"])) + ".",
        "",
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        from results_file import write_section

        write_section(section)


def slowest(models: dict[str, float], count: int = 6) -> list[tuple[str, float]]:
    return sorted(models.items(), key=lambda item: -item[1])[:count]


if __name__ == "__main__":
    main()
