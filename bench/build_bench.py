"""Benchmark for issue 2: `revetl build` at three sizes, and the identity step against Splink.

Run by hand (not a test):  .venv/bin/python bench/build_bench.py [--sizes 1,4,16] [--repeat 3]
                                [--reuse-events] [--skip-synthetic]
Needs the bench extra for the Splink comparison:  .venv/bin/pip install -e '.[bench]'

For each size (millions of events; users scaled alongside at ~100 events per user over 90 days):
generate the events (not timed; --reuse-events keeps those already in bench/work), then time
`revetl build` in its own process (wall time and peak RSS from wait4), --repeat times from an
empty warehouse, keeping the fastest. At the largest size, and on a synthetic graph of 10M
identifiers and 8M edges, the identity step alone (the `identity_graph` model, as dbt timed it)
is compared with Splink's `cluster_pairwise_predictions_at_threshold` on a DuckDBAPI connection,
on the same nodes and edges: the two alternate --repeat times in the same run, best of each
kept; both partitions are checked to be the same. The machine is shared, so only runs measured
side by side are compared.
Results replace the section "## Build (issue 2)" of bench/RESULTS.md.
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
import time
from pathlib import Path

import duckdb
from results_file import write_section

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "build"
REVETL = [str(Path(sys.executable).with_name("revetl"))]  # + ["--project-dir", DIR] with --project-dir
EVENTS_PER_USER = 100  # the generator's average over 90 days
AS_OF = "2026-11-01T00:00:00"


def run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run a command; (wall seconds, peak RSS in MB of the process)."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read()  # drain before waiting, or a full pipe blocks the child
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output.decode()[-3000:]}")
    return seconds, usage.ru_maxrss / 1024


def environment(base: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(REVETL_LANDING_DIR=str(base / "events"), REVETL_WAREHOUSE=str(base / "warehouse.duckdb"),
               REVETL_TARGET_DIR=str(base / "target"))
    return env


def node_seconds(base: Path, name: str) -> float:
    results = json.loads((base / "target" / "duckdb" / "run_results.json").read_text())
    return next(r["execution_time"] for r in results["results"] if r["unique_id"].endswith("." + name))


def model_seconds(base: Path, target: str = "duckdb") -> dict[str, float]:
    """Every model's time in the last dbt run on `target`, as dbt timed it (tests left out)."""
    results = json.loads((base / "target" / target / "run_results.json").read_text())
    return {r["unique_id"].split(".")[-1]: r["execution_time"] for r in results["results"]
            if r["unique_id"].startswith("model.")}


def fresh_warehouse(base: Path) -> None:
    for name in ("warehouse.duckdb", "warehouse.duckdb.wal"):
        (base / name).unlink(missing_ok=True)
    shutil.rmtree(base / "target", ignore_errors=True)


def bench_size(millions: int, repeat: int, reuse_events: bool) -> dict:
    base = WORK / f"{millions}m"
    env = environment(base)
    users = millions * 1_000_000 // EVENTS_PER_USER
    if reuse_events and any((base / "events").glob("**/*.parquet")):
        gen_s = 0.0
        fresh_warehouse(base)
    else:
        shutil.rmtree(base, ignore_errors=True)
        gen_s, _ = run([*REVETL, "generate", "--users", str(users), "--days", "90", "--seed", "7",
                        "--end", AS_OF[:10]], env)
    builds = []
    for _ in range(repeat):
        fresh_warehouse(base)
        seconds, peak_mb = run([*REVETL, "build", "--as-of", AS_OF], env)
        builds.append((seconds, peak_mb, model_seconds(base)))
        print(json.dumps({"millions": millions, "build_s": round(seconds, 1), "peak_mb": round(peak_mb)}), flush=True)
    build_s, build_mb, models = min(builds, key=lambda b: b[0])
    connection = duckdb.connect(str(base / "warehouse.duckdb"), read_only=True)
    events, = connection.execute("select count(*) from events").fetchone()
    nodes, = connection.execute("select count(*) from int_identity_nodes").fetchone()
    edges, = connection.execute("select count(*) from int_identity_edges").fetchone()
    profiles, = connection.execute("select count(*) from profiles").fetchone()
    rounds, = connection.execute("select rounds from identity_graph__cc_stats").fetchone()
    connection.close()
    row = dict(millions=millions, users=users, events=events, nodes=nodes, edges=edges, profiles=profiles,
               rounds=rounds, generate_s=gen_s, build_s=build_s, build_mb=build_mb,
               all_build_s=[b[0] for b in builds], max_build_mb=max(b[1] for b in builds),
               identity_s=models["identity_graph"], models=models, base=base)
    print(json.dumps({k: v for k, v in row.items() if k != "base"}, default=str), flush=True)
    return row


SPLINK = r"""
import sys, time, duckdb
from splink import DuckDBAPI
from splink.clustering import cluster_pairwise_predictions_at_threshold
base = sys.argv[1]
connection = duckdb.connect()
connection.execute(f"create table nodes as select node_id from read_parquet('{base}/nodes.parquet')")
connection.execute(f"create table edges as select src as node_id_l, dst as node_id_r from read_parquet('{base}/edges.parquet')")
api = DuckDBAPI(connection=connection)
started = time.monotonic()
clusters = cluster_pairwise_predictions_at_threshold(
    connection.table("nodes"), connection.table("edges"), db_api=api, node_id_column_name="node_id")
relation = clusters.as_duckdbpyrelation()
relation.select("node_id, cluster_id").write_parquet(f"{base}/splink.parquet")
print(time.monotonic() - started)
"""


def bench_identity_vs_splink(base: Path, label: str, repeat: int) -> dict:
    """Our identity_graph model (dbt's own timing) vs Splink on the same nodes and edges, alternating."""
    connection = duckdb.connect(str(base / "warehouse.duckdb"), read_only=True)
    connection.execute(f"copy int_identity_nodes to '{base}/nodes.parquet' (format parquet)")
    connection.execute(f"copy (select src, dst from int_identity_edges) to '{base}/edges.parquet' (format parquet)")
    nodes, = connection.execute("select count(*) from int_identity_nodes").fetchone()
    edges, = connection.execute("select count(*) from int_identity_edges").fetchone()
    connection.close()
    ours, components, splink = [], [], []
    for _ in range(repeat):
        run_identity_model(base)
        ours.append(node_seconds(base, "identity_graph"))
        connection = duckdb.connect(str(base / "warehouse.duckdb"), read_only=True)
        cursor = connection.execute("select * from identity_graph__cc_stats")
        stats = dict(zip([column[0] for column in cursor.description], cursor.fetchone()))
        components.append(float(stats.get("seconds", "nan")))  # models before 2026-11-23 did not record it
        connection.close()
        process = subprocess.run([sys.executable, "-c", SPLINK, str(base)], capture_output=True, text=True)
        if process.returncode != 0:
            raise SystemExit(f"splink failed:\n{process.stderr[-3000:]}")
        splink.append(float(process.stdout.strip().splitlines()[-1]))
        print(json.dumps({"label": label, "ours_s": round(ours[-1], 2), "splink_s": round(splink[-1], 2)}), flush=True)
    export_graph(base)
    connection = duckdb.connect(str(base / "warehouse.duckdb"), read_only=True)
    rounds, = connection.execute("select rounds from identity_graph__cc_stats").fetchone()
    connection.close()
    check = duckdb.connect()
    same, = check.execute(f"""
        with ours as (
            select n.node_id, g.profile_id
            from read_parquet('{base}/nodes.parquet') n
            join read_parquet('{base}/graph.parquet') g
              on g.identifier_type = n.identifier_type and g.identifier_value = n.identifier_value
        ), pairs as (select distinct o.profile_id, s.cluster_id
                     from ours o join read_parquet('{base}/splink.parquet') s using (node_id))
        select count(*) = count(distinct profile_id) and count(*) = count(distinct cluster_id)
           and (select count(*) from ours) = {nodes}
        from pairs""").fetchone()
    row = dict(label=label, nodes=nodes, edges=edges, rounds=rounds, ours_s=min(ours), splink_s=min(splink),
               components_s=min(components), all_ours_s=ours, all_splink_s=splink,
               ratio=min(splink) / min(ours), same_partition=same)
    print(json.dumps(row), flush=True)
    return row


def export_graph(base: Path) -> None:
    connection = duckdb.connect(str(base / "warehouse.duckdb"), read_only=True)
    connection.execute(f"copy identity_graph to '{base}/graph.parquet' (format parquet)")
    connection.close()


def synthetic_graph(nodes: int, edges: int) -> Path:
    """A warehouse holding only int_identity_nodes/int_identity_edges: a random graph (seeded)."""
    base = WORK / "synthetic"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    connection = duckdb.connect(str(base / "warehouse.duckdb"))
    connection.execute("select setseed(0.42)")
    # int_identity_nodes numbers identifiers in the order that names profiles (identity_graph relies on
    # it): zero-padded values keep node_id order and name order the same.
    width = len(str(nodes - 1))
    connection.execute(f"""create table int_identity_nodes as
        select i as node_id, 'anonymous_id' as identifier_type,
               'n' || lpad(cast(i as varchar), {width}, '0') as identifier_value
        from range({nodes}) t(i)""")
    connection.execute(f"""create table int_identity_edges as
        select distinct least(a, b) as src, greatest(a, b) as dst from (
            select cast(floor(random() * {nodes}) as bigint) as a, cast(floor(random() * {nodes}) as bigint) as b
            from range({edges})) where a <> b""")
    # identity_graph's dbt tests read the conflicts table; a random graph has none.
    connection.execute("create table identity_conflicts (identifier_type varchar, identifier_value varchar)")
    connection.close()
    return base


def run_identity_model(base: Path) -> tuple[float, float]:
    """dbt runs just the identity_graph model (and its tests) over the existing nodes/edges tables."""
    env = environment(base)
    if not any((base / "events").glob("**/*.parquet")):
        # The model needs a landed file to pass revetl's check, though identity_graph reads none.
        from revetl.landing.events import normalize
        from revetl.landing.parquet import write_rows

        write_rows(base / "events", [normalize({"type": "track", "event": "x", "userId": "u", "messageId": "m"},
                                               dt.datetime.now(dt.timezone.utc))])
    return run([*REVETL, "build", "--select", "identity_graph"], env)


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{os.cpu_count()} cores, {memory:.0f} GiB RAM, {platform.machine()}, Python {platform.python_version()}, "
            f"duckdb {duckdb.__version__}, {dt.date.today().isoformat()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16", help="millions of events, comma-separated")
    parser.add_argument("--skip-synthetic", action="store_true")
    parser.add_argument("--synthetic-nodes", type=int, default=10_000_000)
    parser.add_argument("--synthetic-edges", type=int, default=8_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each timing; the fastest is kept")
    parser.add_argument("--reuse-events", action="store_true", help="keep events generated by an earlier run")
    parser.add_argument("--project-dir", help="build another copy of the project (e.g. the models before a change)")
    parser.add_argument("--no-write", action="store_true", help="print the results, leave bench/RESULTS.md alone")
    args = parser.parse_args()
    if args.project_dir:
        REVETL.extend(["--project-dir", str(Path(args.project_dir).resolve())])
    sizes = [int(s) for s in args.sizes.split(",")]

    rows = [bench_size(m, args.repeat, args.reuse_events) for m in sizes]
    largest = rows[-1]["base"]
    comparisons = [bench_identity_vs_splink(largest, f"identity graph of {sizes[-1]}M events", args.repeat)]
    if not args.skip_synthetic:
        base = synthetic_graph(args.synthetic_nodes, args.synthetic_edges)
        comparisons.append(bench_identity_vs_splink(
            base, f"random graph, {args.synthetic_nodes / 1e6:g}M nodes / {args.synthetic_edges / 1e6:g}M edges",
            args.repeat))
    write_results(rows, comparisons, args.repeat, write=not args.no_write)




def write_results(rows: list[dict], comparisons: list[dict], repeat: int, write: bool = True) -> None:
    lines = [
        "## Build (issue 2)",
        "",
        f"Machine: {machine()}. Command: `.venv/bin/python bench/build_bench.py --repeat {repeat}`.",
        "",
        "`revetl build` (all models and dbt tests) in its own process, from an empty warehouse; events generated "
        f"beforehand (~{EVENTS_PER_USER} per user over 90 days). Best of {repeat} builds (all runs in the last "
        "column); peak RSS of that run. Target: 16M events in under 180 s, under 4 GB peak.",
        "",
        "| events | users | identifiers | edges | profiles | identity rounds | build s | peak RSS MB | identity_graph s | all builds s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(f"| {r['events']:,} | {r['users']:,} | {r['nodes']:,} | {r['edges']:,} | {r['profiles']:,} | "
                     f"{r['rounds']} | {r['build_s']:.1f} | {r['build_mb']:,.0f} | {r['identity_s']:.2f} | "
                     f"{', '.join(f'{s:.1f}' for s in r['all_build_s'])} |")
    largest = rows[-1]
    slowest = sorted(largest["models"].items(), key=lambda item: -item[1])
    lines += [
        "",
        f"Where the fastest {largest['millions']}M build spent its time (dbt's timing per model, seconds; the rest "
        "of the wall time is dbt tests and dbt's start-up): "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in slowest if seconds >= 0.05) + ".",
        "",
        "Identity step alone vs Splink 5 `cluster_pairwise_predictions_at_threshold` (DuckDBAPI), same nodes "
        f"and edges, alternating in the same run, best of {repeat} each. Ours: the `identity_graph` model as dbt "
        "timed it: components, profile ids, its table written, and dbt's own work for a model. Of which "
        "components: the contraction rounds and their composition (`identity_graph__cc_stats.seconds`). "
        "Splink: the clustering call and writing its result (node_id, cluster_id). "
        "Target: at least 2x faster at the largest size.",
        "",
        "| graph | nodes | edges | rounds | ours s | of which components s | Splink s | Splink / ours | same partition | all runs: ours / Splink s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for c in comparisons:
        runs = "; ".join(f"{o:.2f} / {sp:.2f}" for o, sp in zip(c["all_ours_s"], c["all_splink_s"]))
        lines.append(f"| {c['label']} | {c['nodes']:,} | {c['edges']:,} | {c['rounds']} | {c['ours_s']:.2f} | "
                     f"{c['components_s']:.2f} | {c['splink_s']:.2f} | {c['ratio']:.2f}x | {c['same_partition']} | {runs} |")
    section = "\n".join(lines) + "\n"
    if write:
        write_section(section)
    print(section)


if __name__ == "__main__":
    main()
