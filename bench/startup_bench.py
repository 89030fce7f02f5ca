"""Benchmark for issue 14's start-up targets: what `revetl --help` and a sync with nothing to send cost.

Run by hand (not a test):  .venv/bin/python bench/startup_bench.py [--baseline SRC] [--repeat 9] [--drt]

A cron line that fires every minute runs `revetl sync NAME`; most minutes there is nothing to send, so
that run should cost next to nothing (targets: `revetl --help` under 0.5 s; a no-op sync under 0.6 s
wall and 120 MB peak RSS).

Setup (not timed): a copy of the project with one audience of 1,000 members (a model of synthetic
rows, read through ref()), built once; the Braze emulator in its own process. For each code version
(this checkout, and `--baseline SRC`, a source tree such as a git worktree of an older commit, put first
on PYTHONPATH) the warehouse is copied, and its first sync sends the 1,000 adds.

Then, `--repeat` times each, alternating versions (so that both see the same machine): `revetl --help`
and `revetl sync a` with nothing to send, each the real CLI in its own process. Reported: the median
wall time and the median peak RSS (from wait4) of each, and the ratio to the baseline.

This checkout keeps the SQL it rendered between runs (revetl/warehouse/rendered.py, in a store of the
benchmark's own here): its first sync fills the store, so the no-op runs measured are a cron line's usual
minute. The row "store emptied" is the same code with the store deleted before each run: the first
minute after an edit or an upgrade of revetl, sqlglot, Jinja or DuckDB.

`--drt` adds issue 14's yardstick, measured in the same loop: drt-core's run with nothing to send, the same
members posted to the same emulator (bench/drt_noop.py; its virtualenv is built once, in the work directory,
and kept), and this checkout's no-op sync over it, the median of the per-repeat ratios (target: 0.6 / 0.75 s).

Results replace the section "## Start-up (issue 14)" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import yaml
from drt_noop import DRT_LABEL, drt_project, drt_venv, last_run, requests_received
from project_copy import copy_project
from results_file import write_section

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "startup"
REVETL = [sys.executable, "-m", "revetl"]
KEY = "bench-braze-key"
STORE = WORK / "sql-store"
COLD = "this checkout, store emptied"
COLD_STORE = WORK / "sql-store-emptied"
DRT_VENV = WORK / "drt-venv"  # kept between runs (the rest of WORK is not)
DRT = WORK / "drt"


def prepare(rows: int) -> tuple[Path, dict[str, str]]:
    """A built project copy with one audience `a` of `rows` members; returns (root, env)."""
    for path in WORK.glob("*"):
        if path != DRT_VENV:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    root = WORK / "project"
    copy_project(root)
    (root / "models" / "bench_members.sql").write_text(
        f"select 'b' || range as user_id, 'b' || range || '@example.com' as email from range({rows})\n"
    )
    (root / "audiences").mkdir()
    (root / "syncs").mkdir()
    (root / "audiences" / "a.sql").write_text(
        "-- description: bench audience\n-- key: user_id\n\nselect user_id, email from {{ ref('bench_members') }}\n"
    )
    env = {**os.environ, "REVETL_LANDING_DIR": str(WORK / "events"), "REVETL_TARGET_DIR": str(WORK / "target"),
           "REVETL_WAREHOUSE": str(WORK / "warehouse.duckdb"), "BRAZE_API_KEY": KEY, "COLUMNS": "200",
           "REVETL_CACHE_DIR": str(STORE)}
    # A user's Python keeps compiled bytecode (pip compiles a wheel at install; an editable install writes
    # __pycache__ on first run): a shell's PYTHONDONTWRITEBYTECODE would time compiling every module of
    # every version on every run instead. The first (untimed) sync of each version writes its caches.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for args in (("generate", "--users", "200", "--days", "7"), ("build",)):
        subprocess.run([*REVETL, "--project-dir", str(root), *args], env=env, check=True, capture_output=True)
    return root, env


def version_env(env: dict[str, str], label: str, source: str | None) -> dict[str, str]:
    """The environment of one code version: its own warehouse copy, its source first on the path."""
    warehouse = WORK / f"warehouse-{label}.duckdb"
    shutil.copy(WORK / "warehouse.duckdb", warehouse)
    mine = {**env, "REVETL_WAREHOUSE": str(warehouse)}
    if source:
        mine["PYTHONPATH"] = source
    return mine


# Runs each measured process and reports it. A child's peak RSS (wait4's ru_maxrss) is at least the peak RSS of
# the process that spawned it (Linux keeps the pre-exec peak), and this benchmark's own process outgrows a `--help`
# (25 MB): the processes are spawned by this small one instead (python -S: about 10 MB).
SPAWNER = """
import json, os, subprocess, sys, time
for line in sys.stdin:
    command, env, cwd = json.loads(line)
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    print(json.dumps([seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime,
                      os.waitstatus_to_exitcode(status), output.decode(errors="replace")[-2000:]]), flush=True)
"""
_spawner: subprocess.Popen[str] | None = None


def measure(command: list[str], env: dict[str, str], cwd: Path = WORK) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MB, CPU seconds: user + system) of one process; it must exit 0."""
    global _spawner
    if _spawner is None:
        _spawner = subprocess.Popen([sys.executable, "-S", "-c", SPAWNER], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)
    # cwd: `python -m` puts the working directory first on sys.path, before PYTHONPATH's source tree
    assert _spawner.stdin is not None and _spawner.stdout is not None
    _spawner.stdin.write(json.dumps([[str(part) for part in command], env, str(cwd)]) + "\n")
    _spawner.stdin.flush()
    seconds, rss, cpu, returncode, output = json.loads(_spawner.stdout.readline())
    if returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{output}")
    return seconds, rss, cpu


def measure_drt(command: list[str], env: dict[str, str], url: str, rows: int) -> tuple[float, float, float]:
    """One `drt run` measured as revetl's are; it must have read `rows` rows and sent them (none: nothing)."""
    before = requests_received(url)
    figures = measure(command, env, DRT)
    run, sent = last_run(DRT), requests_received(url) - before
    if (run["status"], run["rows_extracted"], run["rows_synced"], sent > 0) != ("success", rows, rows, rows > 0):
        raise SystemExit(f"drt's run was to read and send {rows} rows: it ended {run['status']}, read "
                         f"{run['rows_extracted']} rows, synced {run['rows_synced']}, and sent {sent} requests")
    return figures


def drt_ratios(revetl: list[tuple[float, float, float]], drt: list[tuple[float, float, float]], rows: int) -> str:
    """The paragraph on drt-core's row: what it runs, and this checkout's no-op syncs over drt's, repeat by repeat."""
    walls, rsss, cpus = ([mine[index] / theirs[index] for mine, theirs in zip(revetl, drt)] for index in range(3))
    wall, rss, cpu = map(statistics.median, (walls, rsss, cpus))
    return f"""
{DRT_LABEL} (`--drt`, bench/drt_noop.py): `drt run --select members` in a virtualenv
of its own (DuckDB pinned to revetl's version), first in each repeat, seconds before this checkout's no-op sync. Its
sync reads the same {rows:,} members (bench_members in a copy of the warehouse, with the `updated_at` column drt's
incremental mode needs) and posts them to the same Braze emulator's /users/track, 75 a request, through drt's
generic `rest_api` destination (drt has no Braze one). drt's DuckDB source has no snapshot diff, so its no-op is
`mode: incremental` on `cursor_field: updated_at`: its query filters on the watermark the first run kept and
returns no row (revetl plans: its members against its state, in the warehouse). Each measured run is checked:
success, no row read, no request received by the emulator. Issue 14's yardstick: drt's no-op took 0.75 s where
revetl's target is 0.6 s, so the target ratio is at most 0.80.

revetl (this checkout) / drt-core, a no-op run, median of the {len(drt)} per-repeat ratios: **wall {wall:.2f},
CPU {cpu:.2f}**, peak RSS {rss:.2f} (each repeat's wall {", ".join(f"{r:.2f}" for r in walls)}; CPU
{", ".join(f"{r:.2f}" for r in cpus)}).
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--baseline", help="source tree of the code to compare with (put first on PYTHONPATH)")
    parser.add_argument("--baseline-label", default="baseline")
    parser.add_argument("--drt", action="store_true", help=f"also measure {DRT_LABEL} (issue 14's yardstick)")
    args = parser.parse_args()
    root, env = prepare(args.rows)
    if args.drt:
        drt_venv(DRT_VENV)
    versions: dict[str, str | None] = {"this checkout": None, COLD: None}
    if args.baseline:
        versions[args.baseline_label] = args.baseline
    emulator = subprocess.Popen([*REVETL, "emulate", "braze", "--port", "0", "--no-rate-limit"], env=env,
                                stdout=subprocess.PIPE, text=True)
    figures: dict[str, dict[str, list[tuple[float, float, float]]]] = {label: {"help": [], "sync": []}
                                                                       for label in versions}
    figures[DRT_LABEL] = {"help": [], "sync": []}
    load_before = os.getloadavg()
    try:
        url = json.loads(emulator.stdout.readline())["url"]
        sync = {"audience": "a", "identity": {"from": "user_id", "to": "external_id"}, "fields": {"email": "email"},
                "destination": {"type": "braze", "base_url": url, "api_key": "${BRAZE_API_KEY}", "unlimited": True},
                "membership": {"attribute": "in_a"}}
        (root / "syncs" / "a.yml").write_text(yaml.safe_dump(sync))
        envs = {}
        for index, (label, source) in enumerate(versions.items()):
            envs[label] = version_env(env, f"v{index}", source)
            if label == COLD:
                envs[label]["REVETL_CACHE_DIR"] = str(COLD_STORE)
            measure([*REVETL, "--project-dir", str(root), "sync", "a"], envs[label])  # sends the adds
        if args.drt:
            drt, drt_env = drt_project(DRT, WORK / "warehouse.duckdb", url, env, DRT_VENV)
            measure_drt(drt, drt_env, url, args.rows)  # sends the adds
        for _ in range(args.repeat):
            if args.drt:  # next to this checkout's no-op sync: the two make a pair
                figures[DRT_LABEL]["sync"].append(measure_drt(drt, drt_env, url, 0))
            for label in versions:
                figures[label]["help"].append(measure([*REVETL, "--help"], envs[label]))
                if label == COLD:
                    shutil.rmtree(COLD_STORE, ignore_errors=True)
                figures[label]["sync"].append(measure([*REVETL, "--project-dir", str(root), "sync", "a"], envs[label]))
    finally:
        emulator.terminate()
        emulator.wait()

    def median(label: str, what: str, index: int) -> float:
        return statistics.median(run[index] for run in figures[label][what])

    rows = []
    base = args.baseline_label if args.baseline else None
    for label in [*versions, DRT_LABEL] if args.drt else versions:
        cells, against = [], base if label in versions and label != base else None  # drt's row: no ratio
        for what in ("help", "sync"):
            if not figures[label][what]:  # drt's --help: not measured
                cells += ["–"] * 3
                continue
            for index, unit in ((0, "s"), (2, "s"), (1, "MB")):
                value = median(label, what, index)
                ratio = f" ({value / median(against, what, index):.2f}x)" if against else ""
                cells.append(f"{value:.0f} {unit}{ratio}" if unit == "MB" else f"{value:.2f} {unit}{ratio}")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    load = "load average (1, 5, 15 min) at the start {:.1f}, {:.1f}, {:.1f}; at the end {:.1f}, {:.1f}, {:.1f}".format(
        *load_before, *os.getloadavg())
    baseline = f" `--baseline {args.baseline}` is {args.baseline_label}." if args.baseline else ""
    yardstick = drt_ratios(figures["this checkout"]["sync"], figures[DRT_LABEL]["sync"], args.rows) if args.drt else ""
    print(yardstick, flush=True)
    drt_option = " --drt" if args.drt else ""
    write_section(f"""## Start-up (issue 14)

{dt.date.today()}, {machine}; `.venv/bin/python bench/startup_bench.py --repeat {args.repeat}{drt_option}`.{baseline}
{load}.
Each the real CLI in its own process, the versions alternating; medians of {args.repeat} (CPU: user + system time
of the process, from wait4, which the machine's load moves less than the wall time). A no-op sync is
`revetl sync a` when its {args.rows:,} members were all acknowledged by the previous run (Braze emulator),
with the SQL its previous run rendered kept (revetl/warehouse/rendered.py); "store emptied": the same code
with that store deleted before each run (the first run after an edit or upgrade).
Targets: `--help` under 0.5 s; a no-op sync under 0.6 s and 120 MB.

| code | `--help` wall | `--help` CPU | `--help` peak RSS | no-op sync wall | no-op sync CPU | no-op sync peak RSS |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}
{yardstick}""")


if __name__ == "__main__":
    main()
