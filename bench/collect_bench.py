"""Collector benchmark: events per second landed through `/v1/batch` (issue 5).

Run by hand:  .venv/bin/python bench/collect_bench.py  [--seconds 20] [--clients 8] [--batch 100]

Starts `revetl collect` in its own process (temporary landing and log directories), drives it with
several concurrent keep-alive clients on loopback sending Segment batches of `--batch` events
(realistic track payloads, unique message ids), then stops it with SIGTERM and checks that every
acknowledged event is in the landed Parquet. Reports events/s, request latency percentiles, the
collector's peak RSS and CPU time, and writes the section "## Collector (issue 5)" of
bench/RESULTS.md (other sections are left as they are).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import duckdb
from results_file import RESULTS, write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Collector (issue 5)"
WRITE_KEY = "bench-write-key"


def event_template(index: int) -> str:
    """One track event as JSON text, with `%(rid)s` where the request id goes (unique message ids)."""
    event = {
        "type": "track",
        "event": "Order Completed",
        "userId": f"user-{index % 997}",
        "anonymousId": str(uuid.UUID(int=index + 1)),
        "messageId": f"MID-{index:03d}",
        "timestamp": "2026-01-01T12:00:00.000+00:00",
        "properties": {
            "order_id": f"o-{index}",
            "revenue": 25.5 + index,
            "currency": "USD",
            "products": [{"sku": f"sku-{index % 13}", "quantity": 1 + index % 3, "price": 12.75}],
        },
        "context": {
            "library": {"name": "analytics-python", "version": "2.4.0"},
            "ip": "203.0.113.7",
            "userAgent": "Mozilla/5.0 (X11; Linux x86_64) bench",
        },
        "integrations": {},
    }
    return json.dumps(event).replace(f'"MID-{index:03d}"', f'"%(rid)s-{index:03d}"')


def body_template(batch: int) -> str:
    events = ", ".join(event_template(i) for i in range(batch))
    return '{"batch": [' + events + '], "sentAt": "%(sent)s", "writeKey": "' + WRITE_KEY + '"}'


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.acked = 0  # in the measured window
        self.total_acked = 0  # whole run, warm-up included
        self.errors = 0
        self.measuring = False


async def client(host: str, port: int, template: str, name: str, stats: Stats, stop_at: float) -> None:
    """One keep-alive connection sending batches back to back until `stop_at`."""
    reader, writer = await asyncio.open_connection(host, port)
    sequence = 0
    batch_events = template.count("%(rid)s")
    while time.monotonic() < stop_at:
        sequence += 1
        sent = dt.datetime.now(dt.timezone.utc).isoformat()
        body = (template % {"rid": f"{name}-{sequence}", "sent": sent}).encode()
        head = (
            f"POST /v1/batch HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        started = time.perf_counter()
        writer.write(head + body)
        status_line = await reader.readline()
        length = 0
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        elapsed = time.perf_counter() - started
        ok = status_line.split(b" ")[1:2] == [b"200"]
        stats.total_acked += batch_events if ok else 0
        if stats.measuring:
            stats.latencies.append(elapsed)
            if ok:
                stats.acked += batch_events
            else:
                stats.errors += 1
    writer.close()


async def drive(
    host: str, port: int, clients: int, batch: int, warmup: float, seconds: float, pid: int
) -> tuple[Stats, float, list[float], int]:
    template = body_template(batch)
    stats = Stats()
    peak = [0]
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_memory(pid, peak, stop))
    begin = time.monotonic()
    stop_at = begin + warmup + seconds
    tasks = [asyncio.create_task(client(host, port, template, f"c{i}", stats, stop_at)) for i in range(clients)]
    await asyncio.sleep(warmup)
    pids = process_tree(pid)
    cpu_before = cpu_and_rss(pids)[0]
    stats.measuring = True
    measure_start = time.monotonic()
    await asyncio.sleep(seconds)
    stats.measuring = False
    measured = time.monotonic() - measure_start
    cpu = [after - before for after, before in zip(cpu_and_rss(pids)[0], cpu_before)]
    await asyncio.gather(*tasks)
    stop.set()
    await watcher
    return stats, measured, cpu, peak[0]


def start_collector(
    tmp: Path, flush_seconds: float, flush_events: int, workers: int | None, project_dir: Path = REPO
) -> tuple[subprocess.Popen[bytes], str, int, Path]:
    env = {
        **os.environ,
        "REVETL_LANDING_DIR": str(tmp / "events"),
        "REVETL_COLLECTOR_DIR": str(tmp / "collector"),
        "REVETL_WRITE_KEY_WEB": WRITE_KEY,
        "REVETL_WRITE_KEY_SERVER": WRITE_KEY + "-server",
    }
    log_path = tmp / "collector.log"
    command = [
        str(REPO / ".venv" / "bin" / "revetl"), "--project-dir", str(project_dir), "collect", "--port", "0",
        "--flush-seconds", str(flush_seconds), "--flush-events", str(flush_events),
        *(["--workers", str(workers)] if workers is not None else []),
    ]
    process = subprocess.Popen(command, env=env, stderr=open(log_path, "wb"), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log_path.read_text().splitlines():
            if '"url"' in line:
                url = json.loads(line)["url"]
                host, port = re.match(r"http://([^:]+):(\d+)", url).groups()
                return process, host, int(port), log_path
        if process.poll() is not None:
            raise SystemExit(f"collector exited early:\n{log_path.read_text()}")
        time.sleep(0.05)
    process.kill()
    raise SystemExit("collector did not start within 30 s")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def cpu_and_rss(pids: list[int]) -> tuple[list[float], int]:
    """CPU seconds of each process, and their summed resident memory in bytes."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu, rss = [], 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cpu.append((int(fields[11]) + int(fields[12])) / tick)
            rss += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            cpu.append(0.0)
    return cpu, rss


async def watch_memory(pid: int, peak: list[int], stop: asyncio.Event) -> None:
    """Sample the summed RSS of the collector's process tree every 0.2 s."""
    while not stop.is_set():
        peak[0] = max(peak[0], cpu_and_rss(process_tree(pid))[1])
        await asyncio.sleep(0.2)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def machine() -> str:
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    return (
        f"{os.cpu_count()} cores ({platform.processor() or platform.machine()}), {mem_kb / 1024 / 1024:.0f} GiB RAM, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )


def run_once(args: argparse.Namespace, project_dir: Path = REPO) -> dict[str, float]:
    """One collector process, driven for warm-up + measured seconds, then SIGTERM and checked."""
    with tempfile.TemporaryDirectory(prefix="revetl-collect-bench-") as tmp_name:
        tmp = Path(tmp_name)
        process, host, port, log_path = start_collector(
            tmp, args.flush_seconds, args.flush_events, args.workers, project_dir)
        try:
            stats, measured, cpu, peak_tree = asyncio.run(
                drive(host, port, args.clients, args.batch, args.warmup, args.seconds, process.pid)
            )
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=120)
        rows, distinct = duckdb.sql(
            f"select count(*), count(distinct message_id) from read_parquet('{tmp}/events/**/*.parquet')"
        ).fetchall()[0]
        workers = json.loads(next(line for line in log_path.read_text().splitlines() if '"url"' in line))["workers"]
    if code != 0 or rows != distinct or rows != stats.total_acked:
        raise SystemExit(f"exit code {code}; {stats.total_acked} acknowledged, {rows} landed, {distinct} distinct")
    result = {
        "rate": stats.acked / measured,
        "p50": percentile(stats.latencies, 0.50) * 1000,
        "p99": percentile(stats.latencies, 0.99) * 1000,
        "max": max(stats.latencies) * 1000,
        "peak_mib": peak_tree / 2**20,
        "server_cpu": cpu[0] / measured,
        "worker_cpu": sum(cpu[1:]) / measured,
        "us_per_event": sum(cpu) / max(stats.acked, 1) * 1e6,
        "errors": stats.errors,
        "landed": rows,
        "workers": workers,
    }
    print(
        f"{result['rate']:,.0f} events/s ({result['rate'] / args.batch:,.0f} requests/s); latency p50 "
        f"{result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, max {result['max']:.1f} ms; peak RSS "
        f"{result['peak_mib']:.0f} MiB (server + {workers} workers); CPU used {result['server_cpu']:.2f} + "
        f"{result['worker_cpu']:.2f} cores ({result['us_per_event']:.0f} µs per event); "
        f"{rows} acknowledged = landed, once each; {stats.errors} non-200"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured duration of each run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=3, help="independent runs (the median is reported)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--flush-seconds", type=float, default=10.0)
    parser.add_argument("--flush-events", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=None, help="parser processes (default: the collector's)")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()

    results = [run_once(args) for _ in range(args.runs)]
    median = sorted(results, key=lambda r: r["rate"])[len(results) // 2]
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(f"median run: {median['rate']:,.0f} events/s, p99 {median['p99']:.1f} ms; "
          f"load generator CPU {own.ru_utime + own.ru_stime:.1f}s in all")
    if args.no_write:
        return
    rows = "".join(
        f"| {n} | {r['rate']:,.0f} | {r['p50']:.1f} / {r['p99']:.1f} | {r['peak_mib']:.0f} | "
        f"{r['server_cpu'] + r['worker_cpu']:.2f} | {r['us_per_event']:.0f} |\n"
        for n, r in enumerate(results, 1)
    )
    write_section(
        f"{SECTION}\n\n"
        f"`.venv/bin/python bench/collect_bench.py --runs {args.runs} --seconds {args.seconds:g} "
        f"--clients {args.clients} --batch {args.batch}` on {dt.date.today().isoformat()}.  \n"
        f"Machine: {machine()}. Its cores are shared with other sessions' work (\"cores used\" below is what "
        f"the collector got), and the load generator (one asyncio process, {args.clients} keep-alive "
        f"connections on loopback) ran on it too.\n\n"
        f"Events landed through `/v1/batch`, {args.batch} realistic `track` events per request (~500 bytes each), "
        f"unique message ids; collector with {median['workers']} parser worker processes, rolls every "
        f"{args.flush_seconds:g} s or {args.flush_events} events, access log on. A 200 is sent only after the "
        f"batch is fsync'd in the write-ahead log; after SIGTERM every acknowledged event was in Parquet, once.\n\n"
        f"| run | events/s | latency p50 / p99 (ms) | peak RSS, server + workers (MiB) | cores used | "
        f"CPU µs per event |\n|---|---|---|---|---|---|\n{rows}\n"
        f"**Median: {median['rate']:,.0f} events/s, p99 {median['p99']:.1f} ms, peak RSS "
        f"{median['peak_mib']:.0f} MiB** (target: ≥ 20,000 events/s with p99 < 100 ms).\n\n"
        f"Throughput is bounded by CPU: each event costs the figure in the last column (about two thirds of it "
        f"in the parser workers, mostly `revetl.landing.events.normalize`), so events/s ≈ cores available ÷ that cost; "
        f"a run where a neighbour held a core shows it in the \"cores used\" column (with one core taken by other work "
        f"the same code lands about 16,000 events/s).\n\n"
        f"Server choice (measured 2026-11-23 with this benchmark, CPU of the server process per event, the "
        f"figure that does not depend on the neighbours): uvicorn + httptools + uvloop 22 µs, uvicorn + h11 + "
        f"uvloop 27 µs, httptools + asyncio loop 25 µs, h11 + asyncio 30 µs. Normalizing in the server process "
        f"itself (`--workers 0`) reached 20,100 events/s with p99 82 ms on the quiet machine (the event loop is "
        f"one core): too close to the target, hence the parser worker processes.\n\n"
    )
    print(f"wrote {SECTION!r} in {RESULTS}")


if __name__ == "__main__":
    sys.exit(main())
