"""`revetl routes run` as a process: it yields the CPU to the collector (Linux's SCHED_IDLE by default; `--no-idle`
for the normal scheduler 10 steps of niceness lower, `--nice N` to choose, 0 to keep the priority it was started
with) and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

HOOK = """\
    destination: {type: webhook, base_url: "http://127.0.0.1:9/hook", secret: "nice-test-secret-0123456789"}
"""


def router_niceness(collect_helpers: Any, root: Path, base: Path, *options: str) -> tuple[int, dict[str, Any]]:
    """Start `revetl routes run OPTIONS`, read its niceness once it delivers, stop it; (niceness, start line).
    The start line also gets the router's scheduling policy, as `policy`."""
    log = base / f"router-{time.monotonic_ns()}.log"
    command = collect_helpers.revetl_command("routes", "run", *options, project_dir=root)
    router = subprocess.Popen(command, env=collect_helpers.collector_env(base), cwd=base,
                              stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "revetl routes delivering" not in log.read_text():
            assert router.poll() is None, log.read_text()
            time.sleep(0.05)
        niceness = os.getpriority(os.PRIO_PROCESS, router.pid)
        policy = os.sched_getscheduler(router.pid)
    finally:
        router.send_signal(signal.SIGTERM)
        assert router.wait(timeout=30) == 0, log.read_text()
    line = next(json.loads(text) for text in log.read_text().splitlines() if "revetl routes delivering" in text)
    return niceness, {**line, "policy": policy}


@pytest.mark.slow
def test_by_default_the_router_runs_only_on_cpu_time_nothing_else_wants(
        tmp_path: Path, route_project: Any, collect_helpers: Any) -> None:
    niceness, line = router_niceness(collect_helpers, route_project(hook=HOOK), tmp_path)
    assert line["policy"] == os.SCHED_IDLE and line["idle"] is True
    assert niceness == os.nice(0) and line["nice"] == niceness  # an idle router has no niceness to lower
    _, line = router_niceness(collect_helpers, route_project(hook=HOOK), tmp_path, "--idle")
    assert line["policy"] == os.SCHED_IDLE and line["idle"] is True


@pytest.mark.slow
def test_no_idle_or_nice_runs_the_router_niced_on_the_normal_scheduler(
        tmp_path: Path, route_project: Any, collect_helpers: Any) -> None:
    root = route_project(hook=HOOK)
    own, policy = os.nice(0), os.sched_getscheduler(0)
    niceness, line = router_niceness(collect_helpers, root, tmp_path, "--no-idle")
    assert niceness == min(19, own + 10) and line["nice"] == niceness
    assert line["policy"] == policy and line["idle"] is False
    niceness, line = router_niceness(collect_helpers, root, tmp_path, "--nice", "3")
    assert niceness == min(19, own + 3) and line["policy"] == policy and line["idle"] is False
    assert router_niceness(collect_helpers, root, tmp_path, "--no-idle", "--nice", "0")[0] == own
    both = subprocess.run(collect_helpers.revetl_command("routes", "run", "--idle", "--nice", "3", project_dir=root),
                          env=collect_helpers.collector_env(tmp_path), cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert both.returncode == 1 and "Traceback" not in both.stderr
    assert "`routes run --idle` and `--nice` do not go together" in both.stderr
