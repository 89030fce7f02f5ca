"""Benchmark for issue 15: `revetl load` of about 1M landed events into PostgreSQL (target: 100,000 events/s).

Run by hand (not a test):  .venv/bin/python bench/load_bench.py [--users 10000] [--repeat 3] [--reuse-events]
                                [--results]

Generates `revetl generate --users N --days 90 --seed 7` into bench/work/load/events (not timed;
--reuse-events keeps those already there), starts a throwaway PostgreSQL cluster
(revetl/testing/postgres.py: initdb + pg_ctl on a loopback port, fsync off as in the tests), and times
`revetl --target postgres load` in its own process --repeat times, each into an empty `landing` schema,
keeping the fastest (wall time, peak RSS from wait4). Then times the run that finds every file loaded
already (what `revetl build` pays each time on an unchanged landing directory), and checks that the
table holds every landed row once. Prints one JSON line per run and a summary; with --results the section
"## Load into PostgreSQL (issue 15)" of bench/RESULTS.md is replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
from build_bench import run  # (wall seconds, peak RSS in MB) of a command in its own process

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "load"
REVETL = [str(Path(sys.executable).with_name("revetl"))]
SECTION = "## Load into PostgreSQL (issue 15)"

if TYPE_CHECKING:
    from revetl.testing.postgres import PostgresCluster, PostgresDatabase


def landed(events: Path) -> tuple[int, int, int]:
    """(files, rows, bytes) landed under `events`."""
    files = sorted(events.glob("**/*.parquet"))
    return len(files), sum(pq.ParquetFile(path).metadata.num_rows for path in files), \
        sum(path.stat().st_size for path in files)


def generate(work: Path, env: dict[str, str], users: int, reuse: bool, end: str | None = None) -> None:
    """`revetl generate --users N --days 90 --seed 7` into work/events (not timed), unless `reuse` finds some."""
    if reuse and any((work / "events").glob("**/*.parquet")):
        return
    shutil.rmtree(work, ignore_errors=True)
    seconds, _ = run([*REVETL, "generate", "--users", str(users), "--days", "90", "--seed", "7",
                      *(["--end", end] if end else [])], env)
    print(json.dumps({"generate_s": round(seconds, 1)}), flush=True)


def time_loads(cluster: PostgresCluster, database: PostgresDatabase, env: dict[str, str], rows: int,
               repeat: int) -> list[tuple[float, float]]:
    """`revetl --target postgres load` `repeat` times, each into an empty `landing` schema: (seconds, peak MB)."""
    loads = []
    for attempt in range(repeat):
        cluster.sql("drop schema if exists landing cascade", database.name)
        seconds, peak_mb = run([*REVETL, "--target", "postgres", "load"], env)
        loads.append((seconds, peak_mb))
        print(json.dumps({"attempt": attempt + 1, "load_s": round(seconds, 2), "events_per_s": round(rows / seconds),
                          "peak_mb": round(peak_mb)}), flush=True)
    return loads


def check_loaded(cluster: PostgresCluster, database: PostgresDatabase, files: int, rows: int) -> None:
    """landing.events holds every landed row once, and the ledger every file."""
    ledger = cluster.sql("select count(*) from landing.loaded_files", database.name).strip()
    stored = cluster.sql("select count(*), count(distinct (filename, file_row_number)) from landing.events",
                         database.name).strip()
    assert stored == f"{rows}|{rows}", f"landing.events holds {stored}, not {rows} rows once each"
    assert ledger == str(files), f"the ledger holds {ledger} files, not {files}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--reuse-events", action="store_true")
    parser.add_argument("--results", action="store_true", help="Rewrite this benchmark's section of RESULTS.md.")
    args = parser.parse_args()

    from revetl.testing.postgres import PostgresCluster

    env = dict(os.environ, REVETL_LANDING_DIR=str(WORK / "events"), REVETL_TARGET_DIR=str(WORK / "target"),
               REVETL_WORK_DIR=str(WORK / "work"), REVETL_WAREHOUSE=str(WORK / "warehouse.duckdb"))
    generate(WORK, env, args.users, args.reuse_events)
    files, rows, size = landed(WORK / "events")

    with PostgresCluster.start() as cluster:
        database = cluster.database("bench")
        env.update(database.env)
        loads = time_loads(cluster, database, env, rows, args.repeat)
        again_s, again_mb = run([*REVETL, "--target", "postgres", "load"], env)
        check_loaded(cluster, database, files, rows)
        table_mb = int(cluster.sql("select pg_total_relation_size('landing.events')", database.name)) / 1e6

    best_s, best_mb = min(loads)
    summary = {"events": rows, "files": files, "parquet_mb": round(size / 1e6, 1), "table_mb": round(table_mb, 1),
               "load_s": round(best_s, 2), "events_per_s": round(rows / best_s), "peak_mb": round(best_mb),
               "all_load_s": [round(s, 2) for s, _ in loads], "already_loaded_s": round(again_s, 2),
               "already_loaded_mb": round(again_mb)}
    print(json.dumps(summary), flush=True)
    if args.results:
        from results_file import write_section

        write_section(f"""{SECTION}

`.venv/bin/python bench/load_bench.py --users {args.users} --repeat {args.repeat}` on {platform.machine()},
{os.cpu_count()} cores, Python {platform.python_version()}, a throwaway local PostgreSQL cluster (fsync off).

| events | files | Parquet | table | `revetl load` (best of {args.repeat}) | events/s | peak RSS | nothing new to load |
|---:|---:|---:|---:|---:|---:|---:|---:|
| {rows:,} | {files} | {size / 1e6:.0f} MB | {table_mb:.0f} MB | {best_s:.1f} s | {rows / best_s:,.0f} | {best_mb:.0f} MB | {again_s:.2f} s |
""")


if __name__ == "__main__":
    main()
