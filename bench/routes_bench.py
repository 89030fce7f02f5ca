"""Routes benchmark (issue 18): the collector with three routes on, and what reaches the destinations.

Run by hand:  .venv/bin/python bench/routes_bench.py  [--seconds 20] [--rate 1000] [--outage 60]

The Braze, Amplitude and webhook emulators each run in their own process, `revetl collect` and
`revetl routes run` in theirs; the load generator is collect_bench's (keep-alive clients on loopback
sending Segment batches of realistic `Order Completed` events to `/v1/batch`).

1. Throughput: clients send flat out for --seconds: the collector's events/s and request latency with the
   three routes on; then each destination's delivery rate while it had a backlog, against its limit.
2. Latency: --rate events/s, paced (10 events a request every 10 ms), for --seconds: each route's lag
   from the collector's receipt to the destination's acknowledgement (p50, p99), from its status.
3. Outage: the same paced load while the webhook answers 5xx for --outage seconds: the other routes' lag
   during it, and once it is over every destination holds every event the collector acknowledged.
Writes the section "## Routes (issue 18)" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from collect_bench import Stats, body_template, client, drive, machine, percentile, start_collector
from results_file import write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Routes (issue 18)"
PYTHON = str(REPO / ".venv" / "bin" / "python")
ROUTES = {
    "to_braze": "destination: {type: braze, base_url: \"${BRAZE_URL}\", api_key: dev-braze-key}\n",
    "to_amplitude": "destination: {type: amplitude, base_url: \"${AMP_URL}\", api_key: dev-amplitude-key, "
                    "batch_size: 1000, unlimited: true}\n",
    "to_webhook": "destination: {type: webhook, base_url: \"${HOOK_URL}/webhook\", secret: dev-webhook-secret-0123, "
                  "batch_size: 500, unlimited: true}\n",
}
EMULATORS = {"braze": {}, "amplitude": {"eps_threshold": 10**9}, "webhook": {"max_rows": 10_000}}


def start_emulator(name: str, options: dict) -> tuple[subprocess.Popen[bytes], str]:
    code = f"from revetl.emulators import serve; serve({name!r}, port=0, options={options!r})"
    process = subprocess.Popen([PYTHON, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())["url"]


def delivered(urls: dict[str, str]) -> dict[str, int]:
    """Events each destination holds: Braze purchases (one product an event), Amplitude and webhook events."""
    braze = httpx.get(f"{urls['braze']}/_emulator/stats").json()["applied"].get("purchases", 0)
    return {"braze": braze, "amplitude": httpx.get(f"{urls['amplitude']}/_emulator/events").json()["count"],
            "webhook": httpx.get(f"{urls['webhook']}/_emulator/events").json()["count"]}


def start_router(project: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`revetl routes run`, returned once every route has written a status (it is delivering)."""
    command = [PYTHON, "-m", "revetl", "--project-dir", str(project), "routes", "run", "--log-every", "5"]
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    process = subprocess.Popen(command, env=env, stderr=open(log, "ab"), stdout=subprocess.DEVNULL)
    state = Path(env["REVETL_COLLECTOR_DIR"]) / "routes"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ready = [json.loads((state / name / "status.json").read_text()) for name in ROUTES]
        except (OSError, ValueError):
            ready = []
        if ready and all(status["since"] >= started for status in ready):
            return process
        time.sleep(0.1)
    raise SystemExit(f"the router did not start:\n{log.read_text()[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


def statuses(project: Path, env: dict[str, str]) -> dict[str, dict]:
    done = subprocess.run([PYTHON, "-m", "revetl", "--project-dir", str(project), "routes", "status", "--json"],
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


async def paced_loop(host: str, port: int, rate: int, seconds: float, stats: Stats) -> None:
    """`rate` events/s on one connection: a request of rate/100 events every 10 ms."""
    per_request = max(1, rate // 100)
    template = body_template(per_request)
    reader, writer = await asyncio.open_connection(host, port)
    start, sequence = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        sequence += 1
        body = (template % {"rid": f"paced-{time.time_ns()}-{sequence}",
                            "sent": dt.datetime.now(dt.timezone.utc).isoformat()}).encode()
        writer.write(f"POST /v1/batch HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        status = await reader.readline()
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        stats.total_acked += per_request if b" 200 " in status else 0
        await asyncio.sleep(max(0.0, start + sequence * 0.01 - time.monotonic()))
    writer.close()


def wait_drained(urls: dict[str, str], total: int, timeout: float) -> dict[str, list[tuple[float, int]]]:
    """Poll the destinations until each holds `total` events; the (time, count) samples of each."""
    samples: dict[str, list[tuple[float, int]]] = {name: [] for name in urls}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.monotonic()
        counts = delivered(urls)
        for name, count in counts.items():
            samples[name].append((now, count))
        if all(count >= total for count in counts.values()):
            break
        time.sleep(0.5)
    return samples


def backlog_rate(points: list[tuple[float, int]]) -> float:
    """Events/s between the first and the last sample where the count moved (the destination was busy)."""
    moving = [(t, c) for (t, c), (_, before) in zip(points[1:], points) if c != before]
    if len(moving) < 2:
        return float("nan")
    (t0, c0), (t1, c1) = moving[0], moving[-1]
    return (c1 - c0) / (t1 - t0) if t1 > t0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--outage", type=float, default=60.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = [start_emulator(name, options) for name, options in EMULATORS.items()]
    urls = dict(zip(EMULATORS, (url for _, url in started)))
    tmp = Path(tempfile.mkdtemp(prefix="revetl-routes-bench-"))
    project = tmp / "project"
    (project / "routes").mkdir(parents=True)
    shutil.copy(REPO / "dbt_project.yml", project)
    (project / "revetl.yml").write_text((REPO / "revetl.yml").read_text())
    for name, text in ROUTES.items():
        (project / "routes" / f"{name}.yml").write_text(text)
    env = {**os.environ, "REVETL_LANDING_DIR": str(tmp / "events"), "REVETL_COLLECTOR_DIR": str(tmp / "collector"),
           "BRAZE_URL": urls["braze"], "AMP_URL": urls["amplitude"], "HOOK_URL": urls["webhook"]}
    os.environ.update(env)
    router_log = tmp / "router.log"
    router = start_router(project, env, router_log)
    collector, host, port, _ = start_collector_in(project, tmp)
    try:
        # 1. flat out
        during_load: dict[str, list[tuple[float, int]]] = {name: [] for name in urls}
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                now, counts = time.monotonic(), delivered(urls)
                for name, count in counts.items():
                    during_load[name].append((now, count))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample)
        sampler.start()
        stats, measured, cpu, _ = asyncio.run(drive(host, port, args.clients, 100, 2.0, args.seconds, collector.pid))
        rate, p99 = stats.acked / measured, percentile(stats.latencies, 0.99) * 1000
        total = stats.total_acked
        wait_drained(urls, total, timeout=900)
        sampling.set()
        sampler.join()
        drain = {name: backlog_rate(points) for name, points in during_load.items()}
        held = delivered(urls)
        print(f"1. collector {rate:,.0f} events/s, p99 {p99:.1f} ms with 3 routes; drain rates {drain}; held {held}")
        # 2. paced latency, fresh router counters
        stop(router)
        router = start_router(project, env, router_log)
        paced_stats = Stats()
        asyncio.run(paced_loop(host, port, args.rate, args.seconds, paced_stats))
        total += paced_stats.total_acked
        wait_drained(urls, total, timeout=300)
        time.sleep(1.5)
        lag = statuses(project, env)
        print("2. lag", {k: (v["lag_p50_ms"], v["lag_p99_ms"]) for k, v in lag.items()})
        # 3. outage on the webhook
        stop(router)
        router = start_router(project, env, router_log)
        httpx.post(f"{urls['webhook']}/_emulator/faults", json={"error_share": 1.0})
        outage_stats = Stats()
        asyncio.run(paced_loop(host, port, args.rate, args.outage, outage_stats))
        total += outage_stats.total_acked
        time.sleep(1.5)
        during = statuses(project, env)
        httpx.post(f"{urls['webhook']}/_emulator/faults", json={"error_share": 0.0})
        recovered_at = time.monotonic()
        wait_drained(urls, total, timeout=900)
        caught_up = time.monotonic() - recovered_at
        held = delivered(urls)
        print("3. during the outage", {k: (v["lag_p50_ms"], v["lag_p99_ms"], v["state"]) for k, v in during.items()},
              f"caught up in {caught_up:.1f}s; acknowledged {total}, held {held}")
    finally:
        stop(router)
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=120)
        for process, _ in started:
            process.terminate()
    if args.no_write:
        return
    lines = "".join(f"| {name} | {drain[name]:,.0f} | {lag[f'to_{name}']['lag_p50_ms']} / "
                    f"{lag[f'to_{name}']['lag_p99_ms']} | {during[f'to_{name}']['lag_p50_ms']} / "
                    f"{during[f'to_{name}']['lag_p99_ms']} | {held[name]:,} |\n" for name in urls)
    write_section(
        f"{SECTION}\n\n"
        f"`.venv/bin/python bench/routes_bench.py --seconds {args.seconds:g} --rate {args.rate} --outage "
        f"{args.outage:g}` on {dt.date.today().isoformat()}.  \nMachine: {machine()}, shared with other sessions' "
        f"work while it ran: figures are indicative. The collector, the router, the three emulators and the load "
        f"generator all ran on these cores.\n\n"
        f"1. With three routes on (Braze, Amplitude, webhook), the collector accepted **{rate:,.0f} events/s, p99 "
        f"{p99:.1f} ms** ({args.clients} clients flat out, 100 events a request; target ≥ 20,000 with p99 < 100 ms).\n"
        f"2. At {args.rate:,} events/s, lag from the collector's receipt to the destination's acknowledgement per "
        f"route (p50 / p99, ms; target p99 < 2 s).\n"
        f"3. Webhook answering 5xx for {args.outage:g} s at the same rate: the others' lag during it; it caught up "
        f"{caught_up:.1f} s after recovering; every destination then held all {total:,} acknowledged events.\n\n"
        f"| destination | delivered events/s, from its first to its last event of phase 1 | lag at {args.rate:,}/s p50 / p99 (ms) | "
        f"lag during the webhook's outage p50 / p99 (ms) | events held at the end |\n|---|---|---|---|---|\n{lines}\n"
    )


def start_collector_in(project: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], str, int, Path]:
    """collect_bench's collector, but for the project with routes (so it keeps its log for them)."""
    import collect_bench

    collect_bench.REPO = project  # its command runs `revetl --project-dir REPO collect`
    collect_bench.REPO.joinpath(".venv").symlink_to(REPO / ".venv")
    return start_collector(tmp, 10.0, 20_000, None)


if __name__ == "__main__":
    sys.exit(main())
