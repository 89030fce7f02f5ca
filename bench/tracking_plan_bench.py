"""Tracking plans benchmark (issue 19): the validator alone, the collector and `revetl ingest`, each with a
50-event plan in force and with no plan, side by side.

Run by hand:  .venv/bin/python bench/tracking_plan_bench.py  [--seconds 20] [--runs 3] [--events 200000]

1. The validator: events judged per second by revetl's compiled checks (governance/schema.py) against
   fastjsonschema's compiled validator on the same schema (when fastjsonschema is installed; it is not a
   dependency), for a valid event and for one with three violations (fastjsonschema stops at the first).
2. The collector: bench/collect_bench.py's load (8 keep-alive clients, batches of 100 `Order Completed`
   events) against a copy of the project with no plan, then with a plan of 50 events governing the
   clients' source; medians of `--runs` runs.
3. `revetl ingest`: `--events` events of the demo generator's mix as JSON lines, with no source (no plan)
   and with `--source app` under a 50-event plan (the shipped plan's 7 events and 43 more); best of
   `--runs`.

Writes the section "## Tracking plans (issue 19)" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from collect_bench import machine, run_once
from results_file import write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Tracking plans (issue 19)"

ORDER_COMPLETED = {
    "required": ["order_id", "revenue", "currency"],
    "properties": {
        "order_id": {"type": "string"},
        "revenue": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
        "products": {"type": "array", "items": {"type": "object", "required": ["sku"], "properties": {
            "sku": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}, "price": {"type": "number"}}}},
    },
}


def fifty_event_plan(sources: list[str]) -> dict[str, Any]:
    """The shipped plan's events, `Order Completed`, and filler events up to 50, each with five properties."""
    shipped = yaml.safe_load((REPO / "tracking_plans" / "stackwise.yml").read_text())
    events = dict(shipped["events"])
    events["Order Completed"] = {"properties": ORDER_COMPLETED}
    for index in range(50 - len(events)):
        events[f"Feature {index:02d} Used"] = {"properties": {"required": ["feature"], "properties": {
            "feature": {"type": "string"}, "plan": {"type": "string", "enum": ["free", "starter", "pro", "enterprise"]},
            "count": {"type": "integer", "minimum": 0}, "ratio": {"type": "number"}, "beta": {"type": "boolean"}}}}
    return {**shipped, "sources": sources, "events": events}


def project_copy(base: Path, plan: dict[str, Any] | None) -> Path:
    root = base / ("planned" if plan else "unplanned")
    root.mkdir(parents=True)
    for name in ("dbt_project.yml", "profiles.yml", "revetl.yml", "traits.yml"):
        shutil.copy(REPO / name, root / name)
    if plan:
        (root / "tracking_plans").mkdir()
        (root / "tracking_plans" / "fifty.yml").write_text(yaml.safe_dump(plan, sort_keys=False))
    return root


def validator_rates(seconds: float = 2.0) -> dict[str, float]:
    """Events judged per second by each validator, for a valid event and for one with violations."""
    from revetl.governance.schema import compile_schema

    schema = {"type": "object", "additionalProperties": False, **ORDER_COMPLETED}
    good = {"order_id": "o-1", "revenue": 25.5, "currency": "USD",
            "products": [{"sku": "sku-1", "quantity": 1, "price": 12.75}]}
    bad = {"order_id": 7, "revenue": -1, "currency": "usd", "products": []}
    ours = compile_schema(schema, "properties")
    rates = {"ours_valid": _rate(lambda: ours(good, []), seconds),
             "ours_invalid": _rate(lambda: ours(bad, []), seconds)}
    try:
        import fastjsonschema
    except ImportError:
        return rates
    theirs = fastjsonschema.compile(schema)

    def judge(value: dict[str, Any]) -> None:
        try:
            theirs(value)
        except fastjsonschema.JsonSchemaValueException:
            pass

    rates["fast_valid"] = _rate(lambda: judge(good), seconds)
    rates["fast_invalid"] = _rate(lambda: judge(bad), seconds)
    return rates


def _rate(call: Any, seconds: float) -> float:
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(1000):
            call()
        count += 1000
    return count / (time.perf_counter() - started)


def collector(args: argparse.Namespace, base: Path) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for label, plan in (("off", None), ("50-event plan", fifty_event_plan(["web"]))):
        root = project_copy(base / "collect", plan) if plan else project_copy(base / "collect-off", None)
        runs = [run_once(args, root) for _ in range(args.runs)]
        results[label] = {key: statistics.median(run[key] for run in runs) for key in ("rate", "p50", "p99", "us_per_event")}
    return results


def ingest(args: argparse.Namespace, base: Path) -> dict[str, tuple[float, float, str]]:
    """(best wall seconds, best CPU seconds, what it said) per plan; the two alternate run by run, so that a
    change of load on the shared machine falls on both."""
    jsonl = base / "events.jsonl"
    env = {**os.environ, "REVETL_LANDING_DIR": str(base / "gen"), "COLUMNS": "200"}
    users = max(1, args.events // 100)  # about 101 events per user over 90 days
    subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(REPO), "generate", "--users", str(users),
                    "--days", "90", "--jsonl", str(jsonl), "--end", "2026-06-01"], check=True, env=env,
                   capture_output=True)
    planned = project_copy(base / "ingest", fifty_event_plan(["app"]))
    out: dict[str, tuple[float, float, str]] = {}
    for run in range(args.runs):
        for label, extra in (("off", []), ("50-event plan", ["--source", "app"])):
            env["REVETL_LANDING_DIR"] = str(base / f"ingest-{label[:3]}-{run}" / "events")
            command = [sys.executable, "-m", "revetl", "--project-dir", str(planned), "ingest", *extra, str(jsonl)]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True, env=env)
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            best_wall, best_cpu, _ = out.get(label, (float("inf"), float("inf"), ""))
            out[label] = (min(best_wall, wall), min(best_cpu, cpu), " ".join(result.stdout.split()))
    out["lines"] = (float(sum(1 for _ in open(jsonl))), 0.0, "")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured duration of each collector run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--events", type=int, default=200_000, help="events ingested")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    args.flush_seconds, args.flush_events, args.workers = 10.0, 20_000, None
    # Every child (collector, ingest) imports this checkout's revetl, whatever the venv holds.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))

    loads = [os.getloadavg()[0]]
    rates = validator_rates()
    print(json.dumps(rates))
    with tempfile.TemporaryDirectory(prefix="revetl-plan-bench-") as tmp:
        loads.append(os.getloadavg()[0])
        collected = collector(args, Path(tmp))
        print(json.dumps(collected))
        loads.append(os.getloadavg()[0])
        ingested = ingest(args, Path(tmp))
        print(json.dumps(ingested))

    lines = int(ingested.pop("lines")[0])  # type: ignore[arg-type]
    off, on = collected["off"], collected["50-event plan"]
    fast = (f"{rates['fast_valid']:,.0f} / {rates['fast_invalid']:,.0f} (first error only)"
            if "fast_valid" in rates else "not installed")
    ingest_rows = "\n".join(
        f"| {label} | {wall:.1f} s ({lines / wall:,.0f} events/s) | {cpu:.1f} s ({lines / cpu:,.0f} events/s) | {said} |"
        for label, (wall, cpu, said) in ingested.items())
    loss_wall = 1 - ingested["off"][0] / ingested["50-event plan"][0]
    loss_cpu = 1 - ingested["off"][1] / ingested["50-event plan"][1]
    text = f"""{SECTION}

`.venv/bin/python bench/tracking_plan_bench.py --seconds {args.seconds:g} --runs {args.runs} --events {args.events}` on {dt.date.today().isoformat()}.  
Machine: {machine()}; 1-minute load average at the start of the validator, collector and ingest parts: {", ".join(f"{load:.2f}" for load in loads)}.

Validator alone (one core, `Order Completed`'s schema: 4 properties, an array of objects), events judged per second, valid / with violations:
revetl's compiled checks {rates['ours_valid']:,.0f} / {rates['ours_invalid']:,.0f} (every violation, classified); fastjsonschema {fast}.

Collector (`/v1/batch`, {args.clients} clients, {args.batch} events per request; median of {args.runs} runs of {args.seconds:g} s):

| plan | events/s | p50 | p99 | CPU per event |
|---|---|---|---|---|
| off | {off['rate']:,.0f} | {off['p50']:.1f} ms | {off['p99']:.1f} ms | {off['us_per_event']:.0f} µs |
| 50 events, governing the clients' source | {on['rate']:,.0f} | {on['p50']:.1f} ms | {on['p99']:.1f} ms | {on['us_per_event']:.0f} µs |

`revetl ingest` of {lines:,} generated events (the demo's mix, with its flaws), best of {args.runs} runs, plan off and on
alternating, start-up included; CPU is the process's user + system time, the steadier measure on a shared machine:

| plan | wall | CPU | says |
|---|---|---|---|
{ingest_rows}

Ingest speed lost with the plan in force: {loss_cpu:.1%} by CPU time, {loss_wall:.1%} by wall time (target: at most 15%).
"""
    if not args.no_write:
        write_section(text)
    print(text)


if __name__ == "__main__":
    main()
