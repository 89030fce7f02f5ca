"""Routes benchmark, the outage on its own (issue 18): "with one destination returning 503 for 5 minutes, the
others' latency does not move and nothing is lost".

Run by hand:  .venv/bin/python bench/routes_outage.py  [--outage 300] [--before 60] [--after 60] [--rate 1000]
                  [--router-nice N | --router-idle]

routes_bench.py's set-up (Braze, Amplitude and webhook emulators in their own processes at niceness 19,
`revetl collect`, `revetl routes run` at its default priority unless told), with one paced load (--rate
events/s, 10 events a request every 10 ms) running throughout:

    before   --before seconds, every destination up: each route's lag p50/p99 (receipt to acknowledgement)
    outage   --outage seconds with the webhook answering 503 to everything; every `window` seconds (the time
             the routes' lag percentiles cover, their last 20,000 events) each route's status is read: its
             lag over that window, so the whole outage is sampled
    after    --after seconds once the webhook answers again: how long until it held every event the collector
             acknowledged before it recovered (catch-up), and the other routes' lag over the period

Then the load stops and every destination must end holding every acknowledged event, once each (Amplitude
and the webhook by id; Braze by purchases applied). The load average (`os.getloadavg`) is recorded at each
period's start: on a shared machine, compare each route's lag with its own before-outage figure of the run.
Writes the section "## Routes: a destination down (issue 18)" of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import routes_bench as rb
from collect_bench import Stats, machine
from results_file import write_section

SECTION = "## Routes: a destination down (issue 18)"
LAG_WINDOW_EVENTS = 20_000  # the events a route's lag percentiles cover (revetl/routes/store.py `Counters.lags`)


def lags(project: Path, env: dict[str, str]) -> dict[str, tuple[float | None, float | None, str, int]]:
    """Each route's (lag p50, lag p99, state, delivered) from `revetl routes status --json`."""
    return {name: (s["lag_p50_ms"], s["lag_p99_ms"], s["state"], s["delivered"])
            for name, s in rb.statuses(project, env).items()}


async def paced_with(host: str, port: int, rate: int, seconds: float, stats: Stats, every: float, sample) -> list:
    """The paced load for `seconds`, calling `sample()` (in a thread) every `every` seconds meanwhile."""
    load = asyncio.create_task(rb.paced_loop(host, port, rate, seconds, stats))
    samples, start = [], time.monotonic()
    while not load.done():
        await asyncio.wait([load], timeout=max(0.0, start + every * (len(samples) + 1) - time.monotonic()))
        if not load.done():
            samples.append(await asyncio.to_thread(sample))
    await load
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=300.0)
    parser.add_argument("--before", type=float, default=60.0)
    parser.add_argument("--after", type=float, default=60.0)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--router-nice", type=int, default=None)
    parser.add_argument("--router-idle", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.router_nice is not None:
        rb.ROUTER_OPTIONS.extend(["--nice", str(args.router_nice)])
    if args.router_idle:
        rb.ROUTER_OPTIONS.append("--idle")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(rb.REPO), os.environ.get("PYTHONPATH")]))
    window = LAG_WINDOW_EVENTS / args.rate
    started = [rb.start_emulator(name, options) for name, options in rb.EMULATORS.items()]
    urls = dict(zip(rb.EMULATORS, (url for _, url in started)))
    tmp = Path(tempfile.mkdtemp(prefix="revetl-routes-outage-"))
    project = tmp / "project"
    (project / "routes").mkdir(parents=True)
    shutil.copy(rb.REPO / "dbt_project.yml", project)
    (project / "revetl.yml").write_text((rb.REPO / "revetl.yml").read_text())
    for name, text in rb.ROUTES.items():
        (project / "routes" / f"{name}.yml").write_text(text)
    env = {**os.environ, "REVETL_LANDING_DIR": str(tmp / "events"), "REVETL_COLLECTOR_DIR": str(tmp / "collector"),
           "BRAZE_URL": urls["braze"], "AMP_URL": urls["amplitude"], "HOOK_URL": urls["webhook"]}
    os.environ.update(env)
    loads: dict[str, float] = {}
    router = rb.start_router(project, env, tmp / "router.log")
    collector, host, port, _ = rb.start_collector_in(project, tmp)
    total = 0
    try:
        loads["before"] = os.getloadavg()[0]
        stats = Stats()
        asyncio.run(rb.paced_loop(host, port, args.rate, args.before, stats))
        before = lags(project, env)
        print("before", before, flush=True)
        loads["outage"] = os.getloadavg()[0]
        httpx.post(f"{urls['webhook']}/_emulator/faults", json={"error_share": 1.0})
        during = asyncio.run(paced_with(host, port, args.rate, args.outage, stats, window, lambda: lags(project, env)))
        httpx.post(f"{urls['webhook']}/_emulator/faults", json={"error_share": 0.0})
        recovered_at, acked_by_then = time.monotonic(), stats.total_acked
        for sample in during:
            print("during", sample, flush=True)
        loads["after"] = os.getloadavg()[0]
        caught: list[float] = []

        def catch_up() -> None:
            if not caught and rb.delivered({"webhook": urls["webhook"]})["webhook"] >= acked_by_then:
                caught.append(time.monotonic() - recovered_at)

        asyncio.run(paced_with(host, port, args.rate, args.after, stats, 0.5, catch_up))
        after = lags(project, env)
        print("after", after, flush=True)
        total = stats.total_acked
        held, _ = rb.wait_drained(urls, total, timeout=900)
        catch_up()
        print(f"caught up {caught}; acknowledged {total}, held {held}", flush=True)
    finally:
        if router.poll() is None:
            rb.stop(router)
        if collector.poll() is None:
            collector.send_signal(signal.SIGTERM)
            collector.wait(timeout=120)
        for process, _ in started:
            process.terminate()
    if not args.no_write:
        write_section(section(args, loads, before, during, after, caught, total, held, window))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def section(args, loads, before, during, after, caught, total, held, window) -> str:
    rows = []
    for name in rb.ROUTES:
        samples = [sample[name] for sample in during]
        p50s = [s[0] for s in samples if s[0] is not None]
        p99s = [s[1] for s in samples if s[1] is not None]
        spread = (f"{_ms(statistics.median(p50s))} / {_ms(statistics.median(p99s))} (worst {_ms(max(p99s))})"
                  if p99s else "-")
        if all(s[3] == before[name][3] for s in samples):  # its lag is the last before the outage: nothing new
            spread = "nothing acknowledged"
        states = ", ".join(sorted({s[2] for s in samples}))
        rows.append(f"| {name} | {_ms(before[name][0])} / {_ms(before[name][1])} | {spread} | {states} | "
                    f"{_ms(after[name][0])} / {_ms(after[name][1])} | {held[name.removeprefix('to_')]:,} |")
    router = (f"the normal scheduler at niceness {args.router_nice} (`routes run --nice {args.router_nice}`)"
              if args.router_nice is not None else "SCHED_IDLE (`routes run`'s default"
              + (", `--idle` given)" if args.router_idle else ")"))
    options = (f"--outage {args.outage:g} --before {args.before:g} --after {args.after:g} --rate {args.rate}"
               + ("" if args.router_nice is None else f" --router-nice {args.router_nice}")
               + (" --router-idle" if args.router_idle else ""))
    caught_text = f"{caught[0]:.1f} s" if caught else "not within the run"
    return (
        f"{SECTION}\n\n`.venv/bin/python bench/routes_outage.py {options}` on {dt.date.today().isoformat()} at "
        f"{dt.datetime.now(dt.timezone.utc):%H:%M} UTC.  \nMachine: {machine()}; 1-minute load average at the start "
        f"of before / outage / after: {loads['before']:.2f}, {loads['outage']:.2f}, {loads['after']:.2f}. Router: "
        f"{router}; emulators at niceness 19; the collector, the router, the emulators and the load generator on "
        f"these cores.\n\n"
        f"{args.rate:,} events/s throughout: {args.before:g} s with every destination up, then the webhook answering "
        f"503 to every request for {args.outage:g} s, then {args.after:g} s with it up again. Lag is each route's, from "
        f"the collector's receipt to the destination's acknowledgement, p50 / p99 in ms over its last 20,000 events; "
        f"during the outage it was read every {window:g} s ({len(during)} readings: their median p50 / p99, and the "
        f"worst p99). The webhook caught up (held every event acknowledged before it recovered) "
        f"**{caught_text}** after recovering; at the end every destination held **all {total:,} acknowledged "
        f"events** (Amplitude and the webhook counted once per id, Braze by purchases applied) or the table says "
        f"otherwise.\n\n"
        f"| route | before p50 / p99 | during the outage p50 / p99 | states during it | after p50 / p99 | "
        f"events held at the end (of {total:,}) |\n|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__":
    sys.exit(main())
