"""Routes benchmark (issue 18): the collector with three routes on, and what reaches the destinations.

Run by hand:  .venv/bin/python bench/routes_bench.py  [--seconds 20] [--rate 1000] [--outage 60]
                  [--backlog 45000] [--braze-limit 30] [--router-nice N] [--router-idle]

The Braze, Amplitude and webhook emulators each run in their own process, `revetl collect` and
`revetl routes run` in theirs; the load generator is collect_bench's (keep-alive clients on loopback
sending Segment batches of realistic `Order Completed` events to `/v1/batch`). The emulators stand in for
the vendors' remote servers, which take no CPU from the collector's host: they run at niceness 19, so that
on a small machine they take only what the collector and the router leave. The router runs at `revetl routes
run`'s default, SCHED_IDLE (only on CPU time nothing else wants; --router-idle says so explicitly), or, with
--router-nice N, on the normal scheduler N steps of niceness below the collector.

1. Throughput: clients send flat out for --seconds: the collector's events/s and request latency with the
   three routes on; then each destination's delivery rate while it had a backlog, against its limit.
2. Latency: --rate events/s, paced (10 events a request every 10 ms), for --seconds: each route's lag
   from the collector's receipt to the destination's acknowledgement (p50, p99), from its status.
3. Outage: the same paced load while the webhook answers 5xx for --outage seconds: the other routes' lag
   during it, and once it is over every destination holds every event the collector acknowledged.
4. Rate limit: with the router stopped, a backlog of --backlog events is collected (a project and collector
   of its own, one route to a Braze emulator of its own holding Braze's limit shape scaled down to
   --braze-limit requests per 3 s, the route told the same limit); then the router starts, and the requests
   the emulator accepted per second while the backlog drained are compared with the limit, 429s counted.
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
from collect_bench import Stats, body_template, cpu_and_rss, drive, machine, percentile, start_collector
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
LIMITED_ROUTE = "braze_limited"
LIMITED = ("destination: {type: braze, base_url: \"${BRAZE_LIMITED_URL}\", api_key: dev-braze-key, "
           "rate_limit: {requests: %d, per_seconds: 3}}\n")
EMULATOR_NICENESS = 19
ROUTER_OPTIONS: list[str] = []  # `--nice N`, `--idle` as given; else `routes run`'s default


def start_emulator(name: str, options: dict) -> tuple[subprocess.Popen[bytes], str]:
    code = (f"import os; os.nice({EMULATOR_NICENESS}); from revetl.emulators import serve; "
            f"serve({name!r}, port=0, options={options!r})")
    process = subprocess.Popen([PYTHON, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())["url"]


def delivered(urls: dict[str, str], exact: bool = False) -> dict[str, int]:
    """Events each destination took: Braze purchases (one product an event), Amplitude and webhook events.

    By default the emulators' counters of applied objects, a small answer to poll while the load runs (a
    resent event counts again there); `exact`: the events Amplitude and the webhook hold, once per id,
    read from their whole event lists (hundreds of MB of JSON after phase 1: at the end of a phase only).
    """
    counts = {name: httpx.get(f"{url}/_emulator/stats").json()["applied"].get(
        "purchases" if name == "braze" else "events", 0) for name, url in urls.items()}
    if exact:
        for name in ("amplitude", "webhook"):
            counts[name] = httpx.get(f"{urls[name]}/_emulator/events", timeout=120).json()["count"]
    return counts


def start_router(project: Path, env: dict[str, str], log: Path,
                 routes: tuple[str, ...] = tuple(ROUTES)) -> subprocess.Popen[bytes]:
    """`revetl routes run`, returned once every route has written a status (it is delivering)."""
    command = [PYTHON, "-m", "revetl", "--project-dir", str(project), "routes", "run", "--log-every", "5",
               *ROUTER_OPTIONS]
    started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    process = subprocess.Popen(command, env=env, stderr=open(log, "ab"), stdout=subprocess.DEVNULL)
    state = Path(env["REVETL_COLLECTOR_DIR"]) / "routes"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            ready = [json.loads((state / name / "status.json").read_text()) for name in routes]
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


async def post_batch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, body: bytes) -> bool:
    """One `/v1/batch` request on a keep-alive connection; True when the collector answered 200."""
    writer.write(f"POST /v1/batch HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    status = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return b" 200 " in status


def batch_body(template: str, rid: str) -> bytes:
    return (template % {"rid": rid, "sent": dt.datetime.now(dt.timezone.utc).isoformat()}).encode()


async def paced_loop(host: str, port: int, rate: int, seconds: float, stats: Stats) -> None:
    """`rate` events/s on one connection: a request of rate/100 events every 10 ms."""
    per_request = max(1, rate // 100)
    template = body_template(per_request)
    reader, writer = await asyncio.open_connection(host, port)
    start, sequence = time.monotonic(), 0
    while time.monotonic() - start < seconds:
        sequence += 1
        if await post_batch(reader, writer, host, batch_body(template, f"paced-{time.time_ns()}-{sequence}")):
            stats.total_acked += per_request
        await asyncio.sleep(max(0.0, start + sequence * 0.01 - time.monotonic()))
    writer.close()


async def send_events(host: str, port: int, events: int, connections: int = 4) -> int:
    """`events` events (rounded up to requests of 100) over `connections` connections; the events acknowledged."""
    template = body_template(100)
    requests = -(-events // 100)
    acked = [0]

    async def one(name: str, count: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        for sequence in range(count):
            if await post_batch(reader, writer, host, batch_body(template, f"backlog-{name}-{sequence}")):
                acked[0] += 100
        writer.close()

    await asyncio.gather(*(one(f"c{i}", requests // connections + (i < requests % connections))
                           for i in range(connections)))
    return acked[0]


def drain_at_limit(tmp: Path, url: str, backlog: int, limit: int) -> dict[str, float]:
    """Phase 4: a backlog collected while no router runs, then drained by one route under `limit` requests
    per 3 s (the emulator's fixed windows and the route's own limiter); requests accepted per second."""
    base = tmp / "limit"
    project = base / "project"
    (project / "routes").mkdir(parents=True)
    shutil.copy(REPO / "dbt_project.yml", project)
    (project / "revetl.yml").write_text((REPO / "revetl.yml").read_text())
    (project / "routes" / f"{LIMITED_ROUTE}.yml").write_text(LIMITED % limit)
    env = {**os.environ, "REVETL_LANDING_DIR": str(base / "events"), "REVETL_COLLECTOR_DIR": str(base / "collector"),
           "BRAZE_LIMITED_URL": url}
    collector, host, port, _ = start_collector(base, 10.0, 20_000, None, project)
    router = None
    try:
        acked = asyncio.run(send_events(host, port, backlog))
        load = os.getloadavg()[0]
        router = start_router(project, env, base / "router.log", (LIMITED_ROUTE,))
        deadline = time.monotonic() + backlog / (limit / 3 * 75) * 3 + 120
        while time.monotonic() < deadline:
            stats = httpx.get(f"{url}/_emulator/stats").json()
            if stats["applied"].get("purchases", 0) >= acked:
                break
            time.sleep(1.0)
        status = statuses(project, env)[LIMITED_ROUTE]
    finally:
        if router is not None:
            stop(router)
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=120)
    by_status = stats["requests"].get("POST /users/track", {})
    accepted = sum(count for code, count in by_status.items() if code.startswith("2"))
    span = stats["last_request_at"] - stats["first_request_at"]
    rate = (accepted - 1) / span if span > 0 else float("nan")  # requests after the first, over the span
    result = {"load": load, "backlog": acked, "held": stats["applied"].get("purchases", 0), "requests": accepted,
              "seconds": span, "rate": rate, "share": rate / (limit / 3), "events_rate": accepted * 75 / span if span else 0.0,
              "status_429": by_status.get("429", 0), "retried": status["retried"],
              "dead_lettered": status["dead_lettered"]}
    print(f"4. {result}")
    return result


def wait_drained(urls: dict[str, str], total: int, timeout: float) -> tuple[dict[str, int], float]:
    """Poll the destinations until each holds `total` events (counted once each); what they hold, and the
    monotonic time at which the last of them had taken `total`."""
    deadline = time.monotonic() + timeout
    reached = float("nan")
    while time.monotonic() < deadline:
        if all(count >= total for count in delivered(urls).values()):
            reached = time.monotonic() if reached != reached else reached
            held = delivered(urls, exact=True)
            if all(count >= total for count in held.values()):
                return held, reached
            time.sleep(2.0)  # resent events counted twice above: wait on the exact counts
        time.sleep(0.5)
    return delivered(urls, exact=True), reached


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
    parser.add_argument("--backlog", type=int, default=45_000, help="events collected before the router starts (4)")
    parser.add_argument("--braze-limit", type=int, default=30, help="requests per 3 s at the limited Braze (4)")
    parser.add_argument("--router-nice", type=int, default=None, help="`routes run --nice` (default: SCHED_IDLE)")
    parser.add_argument("--router-idle", action="store_true", help="`routes run --idle` (SCHED_IDLE)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.router_nice is not None:
        ROUTER_OPTIONS.extend(["--nice", str(args.router_nice)])
    if args.router_idle:
        ROUTER_OPTIONS.append("--idle")
    # Every child (emulators, collector, router) imports this checkout's revetl, whatever the venv holds.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    loads: dict[int, float] = {}
    started = [start_emulator(name, options) for name, options in EMULATORS.items()]
    urls = dict(zip(EMULATORS, (url for _, url in started)))
    limited, limited_url = start_emulator("braze", {"rate_limit": args.braze_limit, "rate_window": 3.0})
    started.append((limited, limited_url))
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
        loads[1] = os.getloadavg()[0]
        sampler.start()
        router_cpu = cpu_and_rss([router.pid])[0][0]
        stats, measured, cpu, _ = asyncio.run(drive(host, port, args.clients, 100, 2.0, args.seconds, collector.pid))
        router_cores = (cpu_and_rss([router.pid])[0][0] - router_cpu) / (measured + 2.0)  # warm-up included
        rate, p99 = stats.acked / measured, percentile(stats.latencies, 0.99) * 1000
        collector_cores, collector_us = sum(cpu) / measured, sum(cpu) / max(stats.acked, 1) * 1e6
        total = stats.total_acked
        held, _ = wait_drained(urls, total, timeout=900)
        sampling.set()
        sampler.join()
        drain = {name: backlog_rate(points) for name, points in during_load.items()}
        print(f"1. collector {rate:,.0f} events/s, p99 {p99:.1f} ms with 3 routes ({collector_cores:.2f} cores, "
              f"{collector_us:.0f} µs per event; router {router_cores:.2f} cores); drain rates {drain}; held {held}")
        # 2. paced latency, fresh router counters
        stop(router)
        router = start_router(project, env, router_log)
        paced_stats = Stats()
        loads[2] = os.getloadavg()[0]
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
        loads[3] = os.getloadavg()[0]
        asyncio.run(paced_loop(host, port, args.rate, args.outage, outage_stats))
        total += outage_stats.total_acked
        time.sleep(1.5)
        during = statuses(project, env)
        httpx.post(f"{urls['webhook']}/_emulator/faults", json={"error_share": 0.0})
        recovered_at = time.monotonic()
        held, reached = wait_drained(urls, total, timeout=900)
        caught_up = reached - recovered_at
        print("3. during the outage", {k: (v["lag_p50_ms"], v["lag_p99_ms"], v["state"]) for k, v in during.items()},
              f"caught up in {caught_up:.1f}s; acknowledged {total}, held {held}")
        stop(router)
        collector.send_signal(signal.SIGTERM)
        collector.wait(timeout=120)
        # 4. a backlog drained under Braze's limit shape
        limit = drain_at_limit(tmp, limited_url, args.backlog, args.braze_limit)
        loads[4] = limit["load"]
    finally:
        if router.poll() is None:
            stop(router)
        if collector.poll() is None:
            collector.send_signal(signal.SIGTERM)
            collector.wait(timeout=120)
        for process, _ in started:
            process.terminate()
    if args.no_write:
        return
    lines = "".join(f"| {name} | {drain[name]:,.0f} | {lag[f'to_{name}']['lag_p50_ms']} / "
                    f"{lag[f'to_{name}']['lag_p99_ms']} | {during[f'to_{name}']['lag_p50_ms']} / "
                    f"{during[f'to_{name}']['lag_p99_ms']} | {held[name]:,} |\n" for name in urls)
    per_window = args.braze_limit
    write_section(
        f"{SECTION}\n\n"
        f"`.venv/bin/python bench/routes_bench.py --seconds {args.seconds:g} --rate {args.rate} --outage "
        f"{args.outage:g} --backlog {args.backlog} --braze-limit {args.braze_limit}"
        f"{'' if args.router_nice is None else f' --router-nice {args.router_nice}'}"
        f"{' --router-idle' if args.router_idle else ''}` on "
        f"{dt.date.today().isoformat()}.  \nMachine: {machine()}; 1-minute load average at the start of phases 1-4: "
        f"{', '.join(f'{loads[n]:.2f}' for n in sorted(loads))}. The collector, the router ("
        f"{f'at niceness {args.router_nice}' if args.router_nice is not None else 'SCHED_IDLE, `routes run`'}"
        f"{' --idle' if args.router_idle else ''}), the emulators and the load generator all ran on these cores; the emulators, standing in "
        f"for the vendors' remote servers (which take no CPU from the collector's host), at niceness 19.\n\n"
        f"1. With three routes on (Braze, Amplitude, webhook), the collector accepted **{rate:,.0f} events/s, p99 "
        f"{p99:.1f} ms** ({args.clients} clients flat out, 100 events a request; target ≥ 20,000 with p99 < 100 ms); "
        f"it used {collector_cores:.2f} cores ({collector_us:.0f} µs of CPU per event), the router "
        f"{router_cores:.2f}; the routes delivered their backlog from the log after the load (first column).\n"
        f"2. At {args.rate:,} events/s, lag from the collector's receipt to the destination's acknowledgement per "
        f"route (p50 / p99, ms; target p99 < 2 s).\n"
        f"3. Webhook answering 5xx for {args.outage:g} s at the same rate: the others' lag during it; it caught up "
        f"{caught_up:.1f} s after recovering; every destination then held all {total:,} acknowledged events.\n\n"
        f"| destination | delivered events/s, from its first to its last event of phase 1 | lag at {args.rate:,}/s p50 / p99 (ms) | "
        f"lag during the webhook's outage p50 / p99 (ms) | events held at the end |\n|---|---|---|---|---|\n{lines}\n"
        f"4. Rate limit (target: each destination receives ≥ 90% of its published limit when the backlog allows). "
        f"Braze publishes 3,000 requests per 3 s of at most 75 objects each, 75,000 events/s, more than one router "
        f"maps on 2 cores shared with its collector (Braze's mapping costs ~85 µs of CPU per event), so the limit's "
        f"shape is scaled down: a Braze emulator holding {per_window} requests per fixed 3-s window (its "
        f"`rate_limit: {per_window}, rate_window: 3.0`), the route told the same limit (`rate_limit: {{requests: "
        f"{per_window}, per_seconds: 3}}`). A backlog of {limit['backlog']:,} `Order Completed` events (one purchase "
        f"each, 75 a request) was collected while no router ran, then the router started: the emulator accepted "
        f"{limit['requests']:,} requests in {limit['seconds']:.1f} s, **{limit['rate']:.2f} requests/s, "
        f"{limit['share']:.1%} of the limit's {per_window / 3:g}/s** ({limit['events_rate']:,.0f} events/s of "
        f"{per_window * 25:,}), with {limit['status_429']} answers 429 (requests retried: {limit['retried']}); it "
        f"then held {limit['held']:,} of the {limit['backlog']:,} events, dead letters {limit['dead_lettered']}.\n"
    )


def start_collector_in(project: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], str, int, Path]:
    """collect_bench's collector, but for the project with routes (so it keeps its log for them)."""
    import collect_bench

    collect_bench.REPO = project  # its command runs `revetl --project-dir REPO collect`
    collect_bench.REPO.joinpath(".venv").symlink_to(REPO / ".venv")
    return start_collector(tmp, 10.0, 20_000, None, project)


if __name__ == "__main__":
    sys.exit(main())
