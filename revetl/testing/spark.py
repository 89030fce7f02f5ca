"""A Spark standalone cluster on loopback for tests and benchmarks: one master and N workers, each a JVM of
its own started from pyspark's own launcher (`bin/spark-class`), as a cluster's hosts run them.

    with SparkCluster(tmp_path, workers=2) as cluster:
        env["REVETL_SPARK_MASTER"] = cluster.url      # spark://127.0.0.1:PORT

Everything binds 127.0.0.1 (SPARK_LOCAL_IP; the web UIs too, on ports of their own). The workers' scratch
directories and logs go under `base`. Stopping kills every process the cluster started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from revetl.config import Project

__all__ = ["SparkCluster", "write_table"]

# argv: project root, table, Spark schema of its columns; stdin: the rows as JSON. Run in a process of its own,
# so that the caller never holds a JVM or the metastore while the revetl commands it starts use them.
_WRITE_TABLE = """
import json, sys
from pathlib import Path
from revetl.config import load_project
from revetl.warehouse.connection import spark_session, target_config
from revetl.warehouse.spark import stop_session

project = load_project(Path(sys.argv[1]))
spark = spark_session(project)
schema = target_config(project).get("schema") or "default"
spark.sql(f"create schema if not exists {schema}")
frame = spark.createDataFrame(json.load(sys.stdin), sys.argv[3])
frame.write.mode("overwrite").format("parquet").saveAsTable(f"{schema}.{sys.argv[2]}")
stop_session()
"""


def write_table(project: Project, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    """Make `rows` the whole of table `table` (`columns` as Spark declares them: "user_id string, ...") in the
    Spark warehouse of `project` (its target chosen by REVETL_TARGET, as the revetl commands choose it)."""
    done = subprocess.run([sys.executable, "-c", _WRITE_TABLE, str(project.root), table, columns],
                          input=json.dumps(rows), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"writing the Spark table {table} failed:\n{done.stderr[-3000:]}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SparkCluster:
    """A master and `workers` workers (`cores` and `memory` each) on 127.0.0.1."""

    def __init__(self, base: Path, workers: int = 2, cores: int = 1, memory: str = "1g") -> None:
        import pyspark

        self.base = Path(base)
        self.home = Path(pyspark.__file__).parent
        self.workers, self.cores, self.memory = workers, cores, memory
        self.port, self.ui_port = _free_port(), _free_port()
        self.url = f"spark://127.0.0.1:{self.port}"
        self._processes: list[subprocess.Popen[bytes]] = []

    def _start(self, name: str, *args: str) -> None:
        log = (self.base / f"{name}.log").open("wb")
        env = {**os.environ, "SPARK_HOME": str(self.home), "SPARK_LOCAL_IP": "127.0.0.1",
               "SPARK_LOG_DIR": str(self.base), "SPARK_WORKER_DIR": str(self.base / "work")}
        self._processes.append(subprocess.Popen([str(self.home / "bin" / "spark-class"), *args], env=env,
                                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def __enter__(self) -> SparkCluster:
        self.base.mkdir(parents=True, exist_ok=True)
        self._start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(self.port), "--webui-port", str(self.ui_port))
        for number in range(self.workers):
            self._start(f"worker-{number}", "org.apache.spark.deploy.worker.Worker", self.url,
                        "--host", "127.0.0.1", "--cores", str(self.cores), "--memory", self.memory,
                        "--webui-port", str(_free_port()), "--work-dir", str(self.base / f"work-{number}"))
        try:
            self._wait_for_workers(timeout=120)
        except BaseException:
            self.stop()
            raise
        return self

    def alive_workers(self) -> int:
        """How many workers the master counts alive (its JSON status page)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as answer:
            status = json.load(answer)
        return sum(1 for worker in status.get("workers", []) if worker.get("state") == "ALIVE")

    def _wait_for_workers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.alive_workers() >= self.workers:
                    return
            except OSError:
                pass  # the master is still starting
            if any(process.poll() is not None for process in self._processes):
                raise RuntimeError(f"a Spark process exited while the cluster started; see {self.base}/*.log")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.workers} Spark workers did not register within {timeout:g} s; "
                                   f"see {self.base}/*.log")
            time.sleep(0.5)

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self._processes.clear()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
