"""Benchmark for issue 16: Spark (`local[2]`) beside DuckDB (the baseline) and PostgreSQL, in one run: build, identity, plan, sync.

Run by hand (not a test):  .venv/bin/python bench/spark_bench.py [--users 10000] [--small-users 1000]
                                [--nodes 1000000] [--members 1000000] [--sync-rows 100000] [--repeat 2]
                                [--reuse-events] [--no-write] [--steps build,identity,plan,sync]

Every step is the real CLI in a process of its own, the three engines alternating within each repeat; the best
of --repeat is kept, every run listed. The machine is shared, so only figures measured side by side are compared.
A Spark command starts its own JVM (the session revetl and dbt share, revetl/warehouse/spark.py), so every Spark
figure includes that start-up unless it says otherwise; it is measured apart (a session alone, and a build of
one tiny model) so that fixed and per-row costs can be told apart. Peak memory: wait4's ru_maxrss of the revetl
process (as build_bench) and, sampled every 0.2 s, the RSS of its whole process tree: on Spark the JVM is a child
of revetl's process and holds the data, so only the tree's figure counts there.

1. Build: `revetl generate --users N --days 90 --seed 7 --end 2026-11-01` (not timed), loaded once into
   PostgreSQL (`revetl --target postgres load`), then `revetl build --as-of ...` on DuckDB (from an empty file),
   PostgreSQL (from an empty `public` schema) and Spark (from an empty REVETL_SPARK_DIR); per-model seconds from
   dbt's run_results; events|profiles asserted equal on all three. Once, a Spark build of --small-users' events
   (per-model fixed against per-row cost), a Spark session alone, and `revetl --target spark build --select
   build_info` (a model of two constants: the CLI's fixed cost).
2. Identity: build_bench.synthetic_graph (a random graph, seeded) as int_identity_nodes/int_identity_edges in each
   warehouse, `revetl build --select identity_graph` on each; seconds, rounds against 3*log2(n) (the
   identity_graph__cc_stats of each engine), and each engine's identity_graph compared with DuckDB's.
3. Plan: `members` against its acknowledged previous version (1% gone, new, changed) as warehouse_bench; on Spark
   the tables are Spark tables and the state is seeded in the state's DuckDB file (SparkState). `make_plan` alone
   in a fresh process (on Spark, the session started before the clock) and `revetl plan bench --json`.
4. Sync: `revetl sync` of S adds to the Braze emulator (no rate limit), state reset before each run; rows/s from
   the run's record (revetl_state.runs), as warehouse_bench.

Results replace the section "## Spark against DuckDB and PostgreSQL (issue 16)" of bench/RESULTS.md.
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
import threading
import time
from pathlib import Path

import spark_scripts as scripts
from build_bench import AS_OF, REVETL, model_seconds
from load_bench import generate, landed
from plan_bench import measure
from sync_bench import KEY, emulator, write_sync
from warehouse_bench import LAST_RUN, MEASURE_PLAN, PREPARE, output, plan_project, slowest

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "spark"
ENGINES = ("duckdb", "postgres", "spark")
TARGETS = {"duckdb": [], "postgres": ["--target", "postgres"], "spark": ["--target", "spark"]}
MASTER = "local[2]"
STEPS = ("build", "identity", "plan", "sync")


def tree_rss_mb(pid: int) -> float:
    """RSS of `pid` and every process under it, MB."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, ()))
        try:
            with open(f"/proc/{current}/statm") as statm:
                total += int(statm.read().split()[1])
        except (OSError, IndexError, ValueError):
            pass
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def run(command: list[str], env: dict[str, str]) -> dict:
    """build_bench.run (wall seconds, wait4's peak RSS) plus the peak RSS of the whole process tree, sampled."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = [0.0]

    def sample() -> None:
        while process.returncode is None:
            peak[0] = max(peak[0], tree_rss_mb(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = process.stdout.read()  # drain before waiting, or a full pipe blocks the child
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.monotonic() - started
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.decode()[-3000:]}")
    return {"seconds": seconds, "peak_mb": usage.ru_maxrss / 1024, "tree_mb": peak[0]}


def environments(base: Path, postgres: dict[str, str], landing: Path | None = None) -> dict[str, dict[str, str]]:
    """Per engine, the environment of a revetl process whose files live under `base` (Spark: local[2])."""
    common = dict(os.environ, REVETL_LANDING_DIR=str(landing or WORK / "events"), REVETL_TARGET_DIR=str(base / "target"),
                  REVETL_WAREHOUSE=str(base / "warehouse.duckdb"), REVETL_SPARK_DIR=str(base / "spark"),
                  REVETL_SPARK_MASTER=MASTER, BRAZE_API_KEY=KEY)
    return {engine: {**common, **(postgres if engine == "postgres" else {}),
                     "REVETL_WORK_DIR": str(base / f"{engine}.revetl")} for engine in ENGINES}


def spark(env: dict[str, str], operations: list[dict], root: Path = ROOT) -> dict:
    """Operations in one Spark session of a process of its own (spark_scripts.SPARK)."""
    return json.loads(output(scripts.SPARK, str(root), json.dumps(operations), env=env).strip().splitlines()[-1])


def counts(engine: str, env: dict[str, str]) -> tuple[str, float | None]:
    """events|profiles of the last build; on Spark also the seconds its session took to start."""
    if engine == "spark":
        answer = spark(env, [{"op": "sql", "sql": scripts.COUNTS_SQL}])
        return "|".join(map(str, answer["results"][0][0])), answer["session_s"]
    return "|".join(map(str, json.loads(output(scripts.COUNTS, str(ROOT), engine, env=env)))), None


def empty_warehouse(engine: str, env: dict[str, str], cluster, database: str) -> None:
    if engine == "duckdb":
        for suffix in ("", ".wal"):
            Path(env["REVETL_WAREHOUSE"] + suffix).unlink(missing_ok=True)
    elif engine == "postgres":  # the events stay loaded
        cluster.sql("drop schema public cascade; create schema public", database)
    else:
        shutil.rmtree(env["REVETL_SPARK_DIR"], ignore_errors=True)


def build(engine: str, env: dict[str, str], base: Path, *select: str) -> dict:
    measured = run([*REVETL, *TARGETS[engine], "build", "--as-of", AS_OF, *select], env)
    return {**measured, "models": model_seconds(base, engine)}


def bench_build(cluster, args) -> dict:
    base = WORK / "build"
    database = cluster.database("build")
    envs = environments(base, database.env)
    files, rows, size = landed(WORK / "events")
    run([*REVETL, "--target", "postgres", "load"], envs["postgres"])
    runs: dict[str, list[dict]] = {engine: [] for engine in ENGINES}
    found: dict[str, str] = {}
    for _ in range(args.repeat):
        for engine in ENGINES:
            empty_warehouse(engine, envs[engine], cluster, database.name)
            runs[engine].append(build(engine, envs[engine], base))
            found[engine], _ = counts(engine, envs[engine])
            print(json.dumps({"build": engine, **{k: round(v, 1) for k, v in runs[engine][-1].items() if k != "models"},
                              "events|profiles": found[engine]}), flush=True)
    assert len(set(found.values())) == 1, f"events|profiles differ between engines: {found}"
    # Spark's fixed costs: its session alone (on the built metastore), and the CLI building one tiny model.
    _, session_s = counts("spark", envs["spark"])
    tiny = run([*REVETL, "--target", "spark", "build", "--select", "build_info"], envs["spark"])
    result = {engine: summary(engine_runs) for engine, engine_runs in runs.items()}
    result.update(events=rows, files=files, parquet_mb=size / 1e6, events_profiles=found["spark"],
                  session_s=session_s, tiny=tiny)
    if args.small_users:
        result["small"] = bench_small_spark(args.small_users, args.reuse_events)
    print(json.dumps({"session_s": round(session_s, 1), "tiny_build_s": round(tiny["seconds"], 1)}), flush=True)
    return result


def bench_small_spark(users: int, reuse: bool) -> dict:
    """One Spark build of fewer events: with the full-size build, each model's fixed and per-row cost."""
    base = WORK / "small"
    envs = environments(base, {}, landing=base / "events")
    generate(base, envs["spark"], users, reuse, end=AS_OF[:10])
    _, rows, _ = landed(base / "events")
    shutil.rmtree(base / "spark", ignore_errors=True)
    measured = build("spark", envs["spark"], base)
    print(json.dumps({"small_build": "spark", "events": rows, "seconds": round(measured["seconds"], 1)}), flush=True)
    return {**measured, "events": rows, "users": users}


def summary(runs: list[dict], **extra) -> dict:
    """The fastest run, with every run's seconds (warehouse_bench.summary)."""
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "all": [r["seconds"] for r in runs], **extra}


def bench_identity(cluster, args) -> dict:
    base = WORK / "graph"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    graph = Path(output(scripts.SYNTHETIC, str(ROOT / "bench"), str(base), str(args.nodes), str(args.edges),
                        env=dict(os.environ)).strip().splitlines()[-1])
    envs = environments(base, cluster.database("graph").env, landing=base / "events")
    land_one_event(base / "events")
    for engine in ("duckdb", "postgres"):
        output(scripts.GRAPH, str(ROOT), engine, str(graph), env=envs[engine])
    spark(envs["spark"], [{"op": "from_parquet", "table": table, "path": str(graph / f"{table}.parquet")}
                          for table in ("int_identity_nodes", "int_identity_edges")]
          + [{"op": "empty", "table": "identity_conflicts",
              "columns": "identifier_type string, identifier_value string, reason string"}])
    import pyarrow.parquet as pq

    nodes = pq.ParquetFile(graph / "int_identity_nodes.parquet").metadata.num_rows
    edges = pq.ParquetFile(graph / "int_identity_edges.parquet").metadata.num_rows
    runs: dict[str, list[dict]] = {engine: [] for engine in ENGINES}
    for _ in range(args.repeat):
        for engine in ENGINES:
            measured = build(engine, envs[engine], base, "--select", "identity_graph")
            export = base / "graphs" / engine
            shutil.rmtree(export, ignore_errors=True)
            if engine == "spark":
                answer = spark(envs[engine], [
                    {"op": "sql", "sql": "select rounds, seconds from identity_graph__cc_stats"},
                    {"op": "to_parquet", "path": str(export),
                     "sql": "select identifier_type, identifier_value, profile_id from identity_graph"}])
                rounds, cc_s = answer["results"][0][0]
            else:
                export.mkdir(parents=True)
                rounds, cc_s = json.loads(output(scripts.EXPORT_GRAPH, str(ROOT), engine, str(export / "graph.parquet"),
                                                 env=envs[engine]))
            runs[engine].append({**measured, "seconds": measured["models"]["identity_graph"], "wall": measured["seconds"],
                                 "rounds": int(rounds), "cc_s": float(cc_s)})
            print(json.dumps({"identity": engine, "model_s": round(runs[engine][-1]["seconds"], 1),
                              "wall": round(measured["seconds"], 1), "rounds": rounds, "cc_s": round(cc_s, 1)}),
                  flush=True)
    compared = json.loads(output(scripts.COMPARE, str(base / "graphs"), env=dict(os.environ)))
    same = {engine: c["rows"] == nodes == c["duckdb_rows"] and c["pairs"] == c["ours"] == c["theirs"]
            for engine, c in compared.items()}
    identical = {engine: c["same_id"] == nodes for engine, c in compared.items()}
    print(json.dumps({"compared": compared, "same_partition": same}), flush=True)
    assert all(same.values()), f"the partitions differ: {compared}"
    return {"nodes": nodes, "edges": edges, "bound": 3 * math.log2(nodes), "same": same, "identical": identical,
            **{engine: summary(engine_runs) for engine, engine_runs in runs.items()}}


def land_one_event(events: Path) -> None:
    """revetl build checks that something has landed; identity_graph reads none of it (as build_bench)."""
    from revetl.landing.events import normalize
    from revetl.landing.parquet import write_rows

    write_rows(events, [normalize({"type": "track", "event": "x", "userId": "u", "messageId": "m"},
                                  dt.datetime.now(dt.timezone.utc))])


def prepare_plans(root: Path, envs: dict[str, dict[str, str]], args) -> None:
    """The plan's tables and state on each engine: warehouse_bench.PREPARE on DuckDB and PostgreSQL; on Spark the
    same rows as Spark tables (through Parquet files) and the state seeded the same way in its DuckDB file."""
    for engine in ("duckdb", "postgres"):
        seconds = run([sys.executable, "-c", PREPARE, str(root), engine, str(args.members), str(args.sync_rows)],
                      envs[engine])["seconds"]
        print(json.dumps({"prepare": engine, "seconds": round(seconds, 1)}), flush=True)
    files = root / "parquet"
    files.mkdir(exist_ok=True)
    for name, count, churn in (("recipients", args.sync_rows, 0), ("members", args.members, 0),
                               ("members_churned", args.members, 1)):
        output(scripts.MEMBERS_FILE, str(files / f"{name}.parquet"), str(count), str(churn), env=envs["spark"])
    started = time.monotonic()
    spark(envs["spark"], [
        {"op": "from_parquet", "table": "recipients", "path": str(files / "recipients.parquet")},
        {"op": "from_parquet", "table": "members", "path": str(files / "members.parquet")},
        {"op": "acknowledge", "sync": "bench", "count": args.members},
        {"op": "from_parquet", "table": "members", "path": str(files / "members_churned.parquet")}], root=root)
    print(json.dumps({"prepare": "spark", "seconds": round(time.monotonic() - started, 1)}), flush=True)


def bench_plan(root: Path, envs: dict[str, dict[str, str]], args) -> dict:
    runs: dict[str, list[dict]] = {engine: [] for engine in ENGINES}
    cli: dict[str, list[dict]] = {engine: [] for engine in ENGINES}
    for _ in range(args.repeat):
        for engine in ENGINES:
            measured = measure(scripts.measure_plan(MEASURE_PLAN, engine), str(root), engine, env=envs[engine])
            planned = (measured["adds"], measured["changes"], measured["removes"])
            assert planned == (args.members // 100,) * 3, f"{engine} planned {planned}"
            runs[engine].append({**measured, "peak_mb": measured["rss_mb"]})
            cli[engine].append(run([*REVETL, "--project-dir", str(root), *TARGETS[engine], "plan", "bench", "--json"],
                                   envs[engine]))
            print(json.dumps({"plan": engine, "make_plan_s": round(measured["seconds"], 2),
                              "session_s": round(measured.get("session_s", 0), 1),
                              "cli_s": round(cli[engine][-1]["seconds"], 1)}), flush=True)
    return {engine: {**summary(runs[engine]), "cli": summary(cli[engine])} for engine in ENGINES}


def bench_sync(root: Path, envs: dict[str, dict[str, str]], args) -> dict:
    """The sync's run record covers sending and the state's update, not the plan before it (sync/apply.py starts
    the record once planned), and on Spark the plan is where the audience is read from Spark. So its make_plan
    is measured too, as bench_plan measures it (a fresh process, Spark's session started before the clock), and
    rows/s are given three ways: the record's, plan + record (the engine's whole per-row cost), the command's."""
    runs: dict[str, list[dict]] = {engine: [] for engine in ENGINES}
    for _ in range(args.repeat):
        for engine in ENGINES:
            project = ["--project-dir", str(root), *TARGETS[engine]]
            with emulator("--no-rate-limit") as served:
                write_sync(root, served["url"], name="send", audience="recipients", unlimited=True)
                run([*REVETL, *project, "state", "reset", "send", "--yes"], envs[engine])
                planned = measure(scripts.measure_plan(MEASURE_PLAN, engine, "send"), str(root), engine,
                                  env=envs[engine])
                assert planned["adds"] == args.sync_rows, f"{engine} planned {planned}"
                measured = run([*REVETL, *project, "sync", "send"], envs[engine])
            last = json.loads(output(LAST_RUN, str(root), engine, "send", env=envs[engine]))
            assert last["rows"] == args.sync_rows and last["status"] == "succeeded", f"{engine} sync: {last}"
            runs[engine].append({**measured, "wall": measured["seconds"], "record": last["seconds"],
                                 "plan": planned["seconds"], "seconds": planned["seconds"] + last["seconds"],
                                 "rate": args.sync_rows / (planned["seconds"] + last["seconds"]),
                                 "record_rate": args.sync_rows / last["seconds"],
                                 "wall_rate": args.sync_rows / measured["seconds"], "emulator_cpu": served["cpu"]})
            print(json.dumps({"sync": engine, **{key: round(value, 2) for key, value in runs[engine][-1].items()}}),
                  flush=True)
    return {engine: summary(engine_runs) for engine, engine_runs in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000, help="people generated (~100 events each)")
    parser.add_argument("--small-users", type=int, default=1_000, help="a second, smaller Spark build (0: none)")
    parser.add_argument("--nodes", type=int, default=1_000_000, help="identifiers of the random graph")
    parser.add_argument("--edges", type=int, help="edges drawn for the random graph (default 0.8 x nodes)")
    parser.add_argument("--members", type=int, default=1_000_000, help="audience planned, and rows acknowledged")
    parser.add_argument("--sync-rows", type=int, default=100_000, help="Braze adds synced from each engine")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each timing per engine; the fastest is kept")
    parser.add_argument("--reuse-events", action="store_true", help="keep events generated by an earlier run")
    parser.add_argument("--steps", default=",".join(STEPS), help="the steps to run (all of them to write RESULTS.md)")
    parser.add_argument("--no-write", action="store_true", help="print the results, leave bench/RESULTS.md alone")
    args = parser.parse_args()
    args.edges = args.edges or args.nodes * 4 // 5
    steps = args.steps.split(",")
    from revetl.testing.postgres import PostgresCluster

    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    started = time.monotonic()
    results: dict[str, dict] = {}
    with PostgresCluster.start() as cluster:
        version = cluster.sql("show server_version").strip()
        if "build" in steps:
            generate(WORK, dict(os.environ, REVETL_LANDING_DIR=str(WORK / "events")), args.users, args.reuse_events,
                     end=AS_OF[:10])
            results["build"] = bench_build(cluster, args)
        if "identity" in steps:
            results["identity"] = bench_identity(cluster, args)
        if "plan" in steps or "sync" in steps:
            root = WORK / "project"
            plan_project(root)
            envs = environments(root, cluster.database("plans").env)
            prepare_plans(root, envs, args)
            if "plan" in steps:
                results["plan"] = bench_plan(root, envs, args)
            if "sync" in steps:
                results["sync"] = bench_sync(root, envs, args)
    minutes = (time.monotonic() - started) / 60
    kept = WORK / "results.json"
    if set(steps) < set(STEPS) and kept.exists():  # steps run again: the other steps' figures and run stay
        results = {**json.loads(kept.read_text()), **results}
        results.setdefault("reruns", []).append({"steps": steps, "load": load, "minutes": minutes})
    else:
        results.update(args=vars(args), load=load, version=version, minutes=minutes)
    kept.write_text(json.dumps(results, indent=1, default=str))
    if set(results) >= set(STEPS) and "args" in results:
        from spark_results import write_results

        write_results(results, write=not args.no_write)


if __name__ == "__main__":
    main()
