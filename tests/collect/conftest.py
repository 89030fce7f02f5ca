"""Fixtures for the collector tests: a real `revetl collect` process on a free loopback port.

Every collector gets its own landing directory, write-ahead log and warehouse under a temporary
directory (passed through the environment, as the root `project` fixture does), and the write
keys below instead of the development defaults in revetl.yml.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest

REPO = Path(__file__).resolve().parents[2]
WEB_KEY = "test-web-key-0f3a"
SERVER_KEY = "test-server-key-9b1c"
START_TIMEOUT_S = 90


def collector_env(base: Path) -> dict[str, str]:
    """Environment for a collector (and `revetl build`) whose every path is under `base`."""
    return {
        **os.environ,
        "REVETL_LANDING_DIR": str(base / "events"),
        "REVETL_COLLECTOR_DIR": str(base / "collector"),
        "REVETL_WAREHOUSE": str(base / "warehouse.duckdb"),
        "REVETL_TARGET_DIR": str(base / "target"),
        "REVETL_WRITE_KEY_WEB": WEB_KEY,
        "REVETL_WRITE_KEY_SERVER": SERVER_KEY,
        "PYTHONUNBUFFERED": "1",
    }


def revetl_command(*args: str, project_dir: Path = REPO) -> list[str]:
    """`revetl --project-dir PROJECT_DIR ARGS...` with this interpreter."""
    return [sys.executable, "-c", "from revetl.cli import main; main()", "--project-dir", str(project_dir), *args]


def project_with_collect_settings(directory: Path, **settings: Any) -> Path:
    """A copy of the repository's project whose `collect:` settings are changed by `settings`."""
    import yaml

    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dbt_project.yml", directory / "dbt_project.yml")
    raw = yaml.safe_load((REPO / "revetl.yml").read_text())
    raw["collect"].update(settings)
    (directory / "revetl.yml").write_text(yaml.safe_dump(raw))
    return directory


@dataclass
class Collector:
    """A running `revetl collect` process and where it writes."""

    base: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def landing_dir(self) -> Path:
        return Path(self.env["REVETL_LANDING_DIR"])

    @property
    def log_dir(self) -> Path:
        return Path(self.env["REVETL_COLLECTOR_DIR"])

    def lines(self) -> list[dict[str, Any]]:
        """The collector's structured log lines so far."""
        out = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send `sig` and wait for the process to end; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def children(self) -> list[int]:
        """Pids of the collector's child processes (its parser workers)."""
        return child_pids(self.process.pid)

    def landed(self) -> list[dict[str, Any]]:
        """Every row in the landed Parquet files (duplicates included)."""
        return landed_rows(self.landing_dir)

    def wait_landed(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        """Rows landed, once there are at least `count` (or the timeout passed)."""
        deadline = time.monotonic() + timeout
        rows = self.landed()
        while len(rows) < count and time.monotonic() < deadline:
            time.sleep(0.1)
            rows = self.landed()
        return rows


def landed_rows(landing_dir: Path) -> list[dict[str, Any]]:
    """Every row of every landed Parquet file under `landing_dir`."""
    if not any(Path(landing_dir).glob("received_date=*/*.parquet")):
        return []
    relation = duckdb.sql(
        f"select * exclude (received_date) from read_parquet('{landing_dir}/*/*.parquet', hive_partitioning = true)"
    )
    return [dict(zip(relation.columns, row)) for row in relation.fetchall()]


def child_pids(pid: int) -> list[int]:
    """Live processes whose parent is `pid` (Linux /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(stat.parent.name))
    return children


def start_collector(
    base: Path, *options: str, expect_start: bool = True, data: Path | None = None, project_dir: Path = REPO
) -> Collector:
    """Start `revetl collect --port 0 OPTIONS...` and wait for its start-up line.

    Its landing directory and write-ahead log are under `data` if given (its stderr stays in `base`).
    """
    base.mkdir(parents=True, exist_ok=True)
    log_path = base / f"collector-{time.monotonic_ns()}.log"
    env = collector_env(base)
    if data is not None:
        env.update(REVETL_LANDING_DIR=str(data / "events"), REVETL_COLLECTOR_DIR=str(data / "collector"))
    process = subprocess.Popen(
        revetl_command("collect", "--port", "0", *options, project_dir=project_dir),
        env=env, stdout=subprocess.DEVNULL, stderr=open(log_path, "wb"), cwd=base,
    )
    collector = Collector(base=base, process=process, log_path=log_path, env=env)
    if not expect_start:
        return collector
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in collector.lines():
            if "url" in line:
                collector.url = line["url"]
                return collector
        if process.poll() is not None:
            raise AssertionError(f"revetl collect exited with {process.returncode}:\n{log_path.read_text()}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"revetl collect did not start in {START_TIMEOUT_S}s:\n{log_path.read_text()}")


@pytest.fixture
def collector_factory(tmp_path: Path) -> Iterator[Any]:
    """`start(*options, base=None, data=None)` -> Collector; every collector started is killed at the end."""
    started: list[Collector] = []

    def start(
        *options: str, base: Path | None = None, expect_start: bool = True, data: Path | None = None
    ) -> Collector:
        collector = start_collector(base or tmp_path, *options, expect_start=expect_start, data=data)
        started.append(collector)
        return collector

    yield start
    for collector in started:
        if collector.process.poll() is None:
            collector.process.kill()
            collector.process.wait(timeout=30)


@pytest.fixture(scope="module")
def http_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """One collector shared by a test module (one parser worker, rolls every 0.2 s)."""
    collector = start_collector(tmp_path_factory.mktemp("collector"), "--workers", "1", "--flush-seconds", "0.2")
    yield collector
    if collector.process.poll() is None:
        collector.stop()


@pytest.fixture
def keys() -> dict[str, str]:
    """The write keys the test collectors accept, by source name."""
    return {"web": WEB_KEY, "server": SERVER_KEY}


@pytest.fixture
def start_revetl() -> Any:
    """`run(base, *args)` -> CompletedProcess of `revetl ARGS...` with `base`'s environment."""

    def run(base: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            revetl_command(*args), env=collector_env(base), capture_output=True, text=True, timeout=timeout, cwd=base
        )

    return run
