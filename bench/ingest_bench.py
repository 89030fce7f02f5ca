"""Ingest benchmark: a gzip bomb of blank lines, and ordinary JSON lines (issue 13).

Run by hand:  .venv/bin/python bench/ingest_bench.py  [--blank-mib 1024] [--events 200000]

1. Writes a gzip of about 1 MB that expands to `--blank-mib` MiB of newlines with three events
   around them (one line broken), and times `revetl ingest` on it in a subprocess: blank lines
   must cost what reading them costs.
2. Writes `--events` realistic track events as plain JSON lines and times `revetl ingest` on them
   (the ordinary case the blank-line skipping must not slow down).

Each figure is the best of `--runs` wall-clock times; the section "## Ingest (issue 13)" of
bench/RESULTS.md is rewritten (other sections are left as they are).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_file import write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Ingest (issue 13)"
MIB = 1 << 20


def track(message_id: str, index: int) -> dict[str, object]:
    return {
        "type": "track", "event": "Order Completed", "userId": f"user-{index % 997}", "messageId": message_id,
        "timestamp": "2026-01-01T12:00:00.000Z", "receivedAt": "2026-01-01T12:00:01.000Z",
        "properties": {"order_id": f"o-{index}", "revenue": 25.5, "currency": "USD"},
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}, "ip": "203.0.113.7"},
    }


def write_blank_bomb(path: Path, mib: int) -> int:
    """A gzip of `mib` MiB of newlines around three events; returns its size in bytes."""
    blank = b"\n" * MIB
    with gzip.open(path, "wb", compresslevel=9) as out:
        out.write((json.dumps(track("bomb-1", 1)) + "\n").encode())
        for _ in range(mib // 2):
            out.write(blank)
        out.write(b"{broken\n")
        for _ in range(mib - mib // 2):
            out.write(blank)
        out.write((json.dumps(track("bomb-2", 2)) + "\n").encode())
    return path.stat().st_size


def write_events(path: Path, count: int) -> int:
    with open(path, "w") as out:
        for i in range(count):
            out.write(json.dumps(track(f"m-{i:09d}", i)) + "\n")
    return path.stat().st_size


def time_ingest(source: Path, base: Path, runs: int) -> tuple[float, str]:
    """Best wall time of `revetl ingest SOURCE` over `runs` runs (fresh landing dir each), and its last line."""
    best, last = float("inf"), ""
    for run in range(runs):
        env = {**os.environ, "REVETL_LANDING_DIR": str(base / f"events-{run}"), "COLUMNS": "200"}
        command = [sys.executable, "-m", "revetl", "--project-dir", str(REPO), "ingest", str(source)]
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        best = min(best, time.perf_counter() - started)
        last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr.strip()
    return best, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blank-mib", type=int, default=1024, help="MiB of blank lines in the gzip bomb")
    parser.add_argument("--events", type=int, default=200_000, help="ordinary events to ingest")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="revetl-ingest-bench-") as tmp:
        base = Path(tmp)
        bomb = base / "blank.jsonl.gz"
        bomb_bytes = write_blank_bomb(bomb, args.blank_mib)
        bomb_s, bomb_line = time_ingest(bomb, base / "bomb", args.runs)
        events = base / "events.jsonl"
        events_bytes = write_events(events, args.events)
        events_s, events_line = time_ingest(events, base / "plain", args.runs)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"""{SECTION}

`.venv/bin/python bench/ingest_bench.py --blank-mib {args.blank_mib} --events {args.events} --runs {args.runs}` on {dt.date.today().isoformat()}.  
Machine: {cores} cores ({platform.machine()}), Python {platform.python_version()}, Linux {platform.release()}; cores shared with other sessions' work. Best of {args.runs} wall-clock runs of `revetl ingest` in a subprocess (start-up included).

| input | size on disk | expands to | `revetl ingest` | says |
|---|---|---|---|---|
| gzip of blank lines around 3 lines | {bomb_bytes / 1e6:.1f} MB | {args.blank_mib:,} MiB, {args.blank_mib * MIB:,} lines | {bomb_s:.1f} s ({args.blank_mib / bomb_s:,.0f} MiB/s) | {bomb_line} |
| {args.events:,} track events, JSON lines | {events_bytes / 1e6:.1f} MB | - | {events_s:.1f} s ({args.events / events_s:,.0f} events/s) | {events_line} |
"""
    write_section(text)
    print(text)


if __name__ == "__main__":
    main()
