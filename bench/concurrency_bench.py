"""Benchmark for issue 13 item 5: two syncs and a build started in the same second, on the embedded warehouse.

Run by hand (not a test):  .venv/bin/python bench/concurrency_bench.py [--rows 100000] [--users 2000] [--repeat 3]

Setup (not timed): a copy of the project with events of `--users` generated people landed and built,
and two audiences of `--rows` members each (a model of synthetic rows, so that both read the
warehouse through ref()); the Braze emulator in its own process, without a rate limit.

Then, `--repeat` times, from empty sync state (each command is the real CLI in its own process):
- one after the other: `revetl sync a`, then `revetl sync b` (no build running);
- at once: `revetl sync a`, `revetl sync b` and `revetl build` started in the same second.
Reported: every command's exit code, each sync's wall time, the syncs' total time (one after the
other: the sum; at once: from the start until the later sync ended) and their ratio (target: at
most 1.3), the build's time. The median repeat is reported.

Results replace the section "## Syncs and a build at once (issue 13)" of bench/RESULTS.md.
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

import yaml
from project_copy import copy_project
from results_file import write_section

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "bench" / "work" / "concurrency"
REVETL = [sys.executable, "-m", "revetl"]
KEY = "bench-braze-key"


def prepare(rows: int, users: int) -> tuple[Path, dict[str, str]]:
    """A project copy with events landed and built, two audiences of `rows` members; returns (root, env)."""
    shutil.rmtree(WORK, ignore_errors=True)
    root = WORK / "project"
    copy_project(root)
    (root / "models" / "bench_members.sql").write_text(
        f"select 'b' || range as user_id, 'b' || range || '@example.com' as email, range % 2 as side\n"
        f"from range({rows * 2})\n"
    )
    (root / "audiences").mkdir()
    (root / "syncs").mkdir()
    for side, name in enumerate(("a", "b")):
        (root / "audiences" / f"{name}.sql").write_text(
            f"-- description: bench audience {name}\n-- key: user_id\n\n"
            f"select user_id, email from {{{{ ref('bench_members') }}}} where side = {side}\n"
        )
    env = {
        **os.environ,
        "REVETL_LANDING_DIR": str(WORK / "events"),
        "REVETL_WAREHOUSE": str(WORK / "warehouse.duckdb"),
        "REVETL_TARGET_DIR": str(WORK / "target"),
        "BRAZE_API_KEY": KEY,
        "COLUMNS": "200",
    }
    for args in (("generate", "--users", str(users), "--days", "30"), ("build",)):
        subprocess.run([*REVETL, "--project-dir", str(root), *args], env=env, check=True, capture_output=True)
    return root, env


def sync_files(root: Path, url: str) -> None:
    for name in ("a", "b"):
        raw = {
            "audience": name,
            "destination": {"type": "braze", "base_url": url, "api_key": "${BRAZE_API_KEY}", "unlimited": True},
            "identity": {"from": "user_id", "to": "external_id"},
            "fields": {"email": "email"},
            "membership": {"attribute": f"in_{name}"},
        }
        (root / "syncs" / f"{name}.yml").write_text(yaml.safe_dump(raw))


def start(root: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen([*REVETL, "--project-dir", str(root), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, started: float) -> dict:
    output, _ = process.communicate()
    return {"code": process.returncode, "seconds": time.monotonic() - started, "output": output[-2000:]}


def reset(root: Path, env: dict[str, str]) -> None:
    for name in ("a", "b"):
        subprocess.run([*REVETL, "--project-dir", str(root), "state", "reset", name, "--yes"], env=env,
                       check=True, capture_output=True)


def one_after_the_other(root: Path, env: dict[str, str]) -> dict:
    reset(root, env)
    runs = {}
    for name in ("a", "b"):
        started = time.monotonic()
        runs[name] = finish(start(root, env, "sync", name), started)
    return {"runs": runs, "total": sum(run["seconds"] for run in runs.values())}


def at_once(root: Path, env: dict[str, str]) -> dict:
    reset(root, env)
    started = time.monotonic()
    processes = {"a": start(root, env, "sync", "a"), "b": start(root, env, "sync", "b"),
                 "build": start(root, env, "build")}
    runs = {}
    pending = dict(processes)
    while pending:  # note each one's end as it comes
        for name, process in list(pending.items()):
            if process.poll() is not None:
                runs[name] = finish(process, started)
                del pending[name]
        time.sleep(0.01)
    return {"runs": runs, "total": max(runs["a"]["seconds"], runs["b"]["seconds"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root, env = prepare(args.rows, args.users)
    emulator = subprocess.Popen([*REVETL, "emulate", "braze", "--port", "0", "--no-rate-limit"], env=env,
                                stdout=subprocess.PIPE, text=True)
    try:
        url = json.loads(emulator.stdout.readline())["url"]
        sync_files(root, url)
        trials = []
        for trial in range(args.repeat):
            serial, concurrent = one_after_the_other(root, env), at_once(root, env)
            failed = {name: run["output"] for part in (serial, concurrent) for name, run in part["runs"].items()
                      if run["code"] != 0}
            if failed:
                raise SystemExit(f"a command failed: {failed}")
            trials.append((concurrent["total"] / serial["total"], serial, concurrent))
            print(f"trial {trial + 1}: one after the other {serial['total']:.1f} s, at once {concurrent['total']:.1f} s "
                  f"(build {concurrent['runs']['build']['seconds']:.1f} s): ratio {trials[-1][0]:.2f}", flush=True)
    finally:
        emulator.terminate()
        emulator.wait()
    ratio, serial, concurrent = sorted(trials, key=lambda t: t[0])[len(trials) // 2]
    ratios = ", ".join(f"{t[0]:.2f}" for t in trials)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    write_section(f"""## Syncs and a build at once (issue 13)

{dt.date.today()}, {machine}; `.venv/bin/python bench/concurrency_bench.py --rows {args.rows} --users {args.users} --repeat {args.repeat}`.
Two syncs of {args.rows:,} Braze adds each (the emulator in its own process, no rate limit), and a `revetl build` of
{args.users:,} generated people, each the real CLI in its own process, on one embedded DuckDB warehouse. Every command
exited 0 in every trial (before issue 13, all but the first to open the warehouse failed with "Could not set lock").
Median of {args.repeat} trials (ratios: {ratios}).

| | sync a (s) | sync b (s) | build (s) | syncs' total (s) |
|---|---:|---:|---:|---:|
| one after the other, no build | {serial['runs']['a']['seconds']:.1f} | {serial['runs']['b']['seconds']:.1f} | - | {serial['total']:.1f} |
| started in the same second, with a build | {concurrent['runs']['a']['seconds']:.1f} | {concurrent['runs']['b']['seconds']:.1f} | {concurrent['runs']['build']['seconds']:.1f} | {concurrent['total']:.1f} |

Syncs' total at once / one after the other: **{ratio:.2f}** (target: at most 1.3).
""")


if __name__ == "__main__":
    main()
