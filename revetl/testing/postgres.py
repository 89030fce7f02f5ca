"""A throwaway PostgreSQL cluster for tests and benchmarks: `initdb` + `pg_ctl` in a temporary directory,
listening on a free loopback port, stopped and deleted afterwards.

    with PostgresCluster.start() as cluster:
        env = cluster.database("t1").env     # PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE

`initdb` refuses to run as root, so as root the cluster runs as an unprivileged system user
(`postgres` when it exists, else one created on first use). The server binaries are found through
`REVETL_PG_BINDIR`, `pg_config --bindir`, `/usr/lib/postgresql/*/bin` or PATH; where there are none
this raises with what to install (`.ci/run` installs Debian's `postgresql` package when missing).
The superuser has a random password (password authentication over TCP, as a real server has).
A watchdog process stops the server and deletes its directory when the process that started it ends,
even by SIGKILL: a killed test run leaves no server behind.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PostgresCluster", "PostgresDatabase", "server_binaries"]

SYSTEM_USER = "revetl-pg"  # created when running as root and there is no `postgres` user

# argv: owner pid, pg_ctl stop command (JSON), cluster root. Polls the owner; once it is gone, stops the
# server and deletes the cluster. Started in a session of its own, so a signal to the owner's group
# (Ctrl-C, pytest-timeout) does not reach it first.
_WATCHDOG = """
import json, os, shutil, subprocess, sys, time
owner, stop, root = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
while True:
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        break
    time.sleep(1)
if os.path.exists(os.path.join(root, "data", "postmaster.pid")):
    subprocess.run(stop, capture_output=True)
shutil.rmtree(root, ignore_errors=True)
"""


def server_binaries() -> Path:
    """The directory holding `initdb` and `pg_ctl`."""
    candidates = [os.environ.get("REVETL_PG_BINDIR", "")]
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        candidates.append(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                         check=True).stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    found = shutil.which("initdb")
    candidates.append(str(Path(found).resolve().parent) if found else "")
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) were not found: install Debian's "
                       "`postgresql` package, or set REVETL_PG_BINDIR")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _system_user() -> pwd.struct_passwd | None:
    """The unprivileged user the server runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", SYSTEM_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                   check=True, capture_output=True)
    return pwd.getpwnam(SYSTEM_USER)


@dataclass(frozen=True)
class PostgresDatabase:
    host: str
    port: int
    user: str
    password: str
    name: str

    @property
    def env(self) -> dict[str, str]:
        """The libpq variables that reach this database (revetl's `postgres` target reads them)."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user,
                "PGPASSWORD": self.password, "PGDATABASE": self.name}

    @property
    def uri(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.name}"


class PostgresCluster:
    """A running throwaway cluster; `stop()` (or leaving the `with` block) removes every trace of it."""

    def __init__(self, root: Path, port: int, password: str, bindir: Path, run_as: pwd.struct_passwd | None):
        self.root, self.port, self.password, self.bindir, self.run_as = root, port, password, bindir, run_as
        self.user = "revetl"
        self.host = "127.0.0.1"
        self._watchdog: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, settings: dict[str, str] | None = None) -> PostgresCluster:
        """initdb and start a cluster; `settings` are extra `postgres -c` settings."""
        bindir = server_binaries()
        run_as = _system_user()
        root = Path(tempfile.mkdtemp(prefix="revetl-pg-"))
        cluster = cls(root, _free_port(), secrets.token_hex(12), bindir, run_as)
        try:
            cluster._init(settings or {})
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        kwargs = {}
        if self.run_as is not None:
            kwargs = {"user": self.run_as.pw_uid, "group": self.run_as.pw_gid, "extra_groups": []}
        process = subprocess.run(command, capture_output=True, text=True, cwd=self.root,
                                 env={**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"}, **kwargs)
        if process.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({process.returncode}): {(process.stderr or process.stdout)[-2000:]}")
        return process

    def _init(self, settings: dict[str, str]) -> None:
        data, sockets = self.root / "data", self.root / "sockets"
        sockets.mkdir()
        password_file = self.root / "password"
        password_file.write_text(self.password + "\n")
        if self.run_as is not None:
            for path in (self.root, sockets, password_file):
                os.chown(path, self.run_as.pw_uid, self.run_as.pw_gid)
        self._run("initdb", "-D", str(data), "-U", self.user, f"--pwfile={password_file}",
                  "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync")
        password_file.unlink()
        options = {"listen_addresses": "127.0.0.1", "port": str(self.port), "unix_socket_directories": str(sockets),
                   "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "timezone": "UTC",
                   "max_connections": "100", "shared_buffers": "128MB", **settings}
        flags = " ".join(f"-c {key}={value}" for key, value in options.items())
        self._run("pg_ctl", "-D", str(data), "-l", str(self.root / "server.log"), "-o", flags, "-w", "-t", "60",
                  "start")
        stop = self._as_user([str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        self._watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(os.getpid()), json.dumps(stop),
                                           str(self.root)], start_new_session=True, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def _as_user(self, command: list[str]) -> list[str]:
        """`command` run as the cluster's system user (the watchdog has no Python-level setuid)."""
        if self.run_as is None:
            return command
        return ["setpriv", f"--reuid={self.run_as.pw_uid}", f"--regid={self.run_as.pw_gid}", "--clear-groups",
                *command]

    def database(self, name: str) -> PostgresDatabase:
        """A new empty database `name` in the cluster (created now; a name already taken is an error)."""
        self.sql(f'create database "{name}"')
        return PostgresDatabase(self.host, self.port, self.user, self.password, name)

    def sql(self, statement: str, database: str = "postgres") -> str:
        """Run one statement as the superuser through psql; its output, unaligned."""
        command = [str(self.bindir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                   "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database, "-c", statement]
        process = subprocess.run(command, capture_output=True, text=True, env={**os.environ,
                                                                                "PGPASSWORD": self.password})
        if process.returncode != 0:
            raise RuntimeError(f"psql failed: {process.stderr.strip()}")
        return process.stdout

    def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
        if (self.root / "data" / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def throwaway_database(name: str = "revetl") -> Iterator[PostgresDatabase]:
    """A cluster with one database, for a script: yields the database, stops the cluster after."""
    with PostgresCluster.start() as cluster:
        yield cluster.database(name)
