"""Benchmark for issue 17's scheduler target: `revetl schedule run` with nothing due returns in under 1 s.

Run by hand (not a test):  .venv/bin/python bench/schedule_bench.py [--syncs 20] [--repeat 9]

`revetl schedule run` is meant for a crontab line that fires every minute; most minutes nothing is due,
and that minute must cost next to nothing.

Setup (not timed): a copy of the project with `--syncs` sync files, each scheduled (hourly, every six hours,
daily, alternating) and one saying `after: build` with `build: {schedule: ...}` in revetl.yml, and a first
`revetl schedule run` that answers every job's current window (the syncs fail at once: there is no audience
table; a failed run answers its window like any other).

Then, `--repeat` times each, alternating: `revetl --help` (the floor of any command), `revetl schedule run`
with nothing due (the cache beside the warehouse says so), and the same with the cache deleted first (the
warehouse is read to find that nothing is due). Each is the real CLI in its own process; each run of
`schedule run` must print nothing and exit 0 (nothing ran). Reported: median wall time, CPU time and peak RSS.

Results replace the section "## Scheduler (issue 17)" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from project_copy import copy_project
from results_file import write_section

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "schedule"
REVETL = [sys.executable, "-m", "revetl"]
SCHEDULES = ("0 * * * *", "0 */6 * * *", "30 4 * * *")


def prepare(syncs: int) -> tuple[Path, dict[str, str]]:
    """A project copy with `syncs` scheduled sync files, every job's window answered; returns (root, env)."""
    shutil.rmtree(WORK, ignore_errors=True)
    root = WORK / "project"
    copy_project(root)
    settings = yaml.safe_load((root / "revetl.yml").read_text()) or {}
    settings["build"] = {"schedule": "15 * * * *"}
    (root / "revetl.yml").write_text(yaml.safe_dump(settings))
    (root / "audiences").mkdir()
    (root / "syncs").mkdir()
    (root / "audiences" / "a.sql").write_text(
        "-- description: bench audience\n-- key: user_id\n\nselect user_id, email from {{ ref('profiles') }}\n")
    for index in range(syncs):
        sync = {"audience": "a", "identity": {"from": "user_id", "to": "external_id"}, "fields": {"email": "email"},
                "destination": {"type": "braze", "base_url": "http://127.0.0.1:9", "api_key": "${BRAZE_API_KEY:-x}"},
                "membership": {"attribute": f"in_a{index}"}, "schedule": SCHEDULES[index % len(SCHEDULES)]}
        if index == 0:
            sync = {**sync, "after": "build"}
        (root / "syncs" / f"s{index:02d}.yml").write_text(yaml.safe_dump(sync, sort_keys=False))
    env = {**os.environ, "REVETL_LANDING_DIR": str(WORK / "events"), "REVETL_TARGET_DIR": str(WORK / "target"),
           "REVETL_WAREHOUSE": str(WORK / "warehouse.duckdb"), "COLUMNS": "200"}
    first = subprocess.run([*REVETL, "--project-dir", str(root), "schedule", "run"], env=env, capture_output=True,
                           text=True)
    if "schedule run at" not in first.stdout:
        raise SystemExit(f"the first tick ran nothing:\n{first.stdout}\n{first.stderr}")
    return root, env


def measure(command: list[str], env: dict[str, str], quiet: bool) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MB, CPU seconds) of one process; it must exit 0 (and print nothing when `quiet`)."""
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=WORK, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0 or (quiet and output.strip()):
        raise SystemExit(f"{' '.join(command)} ran something or failed:\n{output.decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--syncs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    root, env = prepare(args.syncs)
    tick = [*REVETL, "--project-dir", str(root), "schedule", "run"]
    caches = WORK / "target" / "schedule"
    figures: dict[str, list[tuple[float, float, float]]] = {"help": [], "cached": [], "uncached": []}
    for _ in range(args.repeat):
        figures["help"].append(measure([*REVETL, "--help"], env, quiet=False))
        figures["cached"].append(measure(tick, env, quiet=True))
        shutil.rmtree(caches)
        figures["uncached"].append(measure(tick, env, quiet=True))
    labels = {"help": "`revetl --help` (the floor)", "cached": "`schedule run`, nothing due",
              "uncached": "`schedule run`, nothing due, no cache (reads the warehouse)"}
    rows = []
    for key, label in labels.items():
        wall = statistics.median(run[0] for run in figures[key])
        rss = statistics.median(run[1] for run in figures[key])
        cpu = statistics.median(run[2] for run in figures[key])
        rows.append(f"| {label} | {wall:.2f} s | {cpu:.2f} s | {rss:.0f} MB |")
        print(rows[-1], flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    write_section(f"""## Scheduler (issue 17)

{dt.date.today()}, {machine}, shared with other work (load average {load} at the end);
`.venv/bin/python bench/schedule_bench.py --syncs {args.syncs} --repeat {args.repeat}`. A project of {args.syncs}
scheduled syncs (one `after: build`, the build on its own schedule), every current window answered by a first
tick. Each the real CLI in its own process, alternating; medians of {args.repeat}. Target: `revetl schedule run`
with nothing due under 1 s. On a machine this loaded every command's wall time is several times its CPU time
(`--help` takes 0.30 s wall on a quiet one, "Start-up (issue 14)"); CPU time (user + system) is the figure that
travels.

| command | wall | CPU | peak RSS |
|---|---:|---:|---:|
{chr(10).join(rows)}
""")


if __name__ == "__main__":
    main()
