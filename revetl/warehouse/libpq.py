"""How revetl reaches a PostgreSQL server: the database a target names, libpq's connection string, the
settings a session starts with, and one sentence when the server cannot be reached.

The password lives only in the connection string handed to libpq: never in `repr`, a message or a log.
Each session names itself `revetl HOST:PID` (`application_name`), which is what a refused lock shows.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc

from revetl.errors import ConfigError, WarehouseError, scrub

__all__ = ["Server", "session_settings"]


@dataclass(frozen=True)
class Server:
    """Where and how to reach one PostgreSQL database (profiles.yml's target). The password is kept out
    of `repr` and of every message."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    schema: str = "public"

    def __repr__(self) -> str:
        return f"Server({self.host}:{self.port}/{self.dbname} as {self.user})"

    def where(self) -> str:
        return f"PostgreSQL at {self.host}:{self.port}, database {self.dbname}"

    def conninfo(self, settings: Mapping[str, str]) -> str:
        """A libpq key=value connection string, server `settings` passed as `-c` options."""
        options = " ".join(f"-c {key}={_option(value)}" for key, value in settings.items())
        pairs = {"host": self.host, "port": str(self.port), "user": self.user, "password": self.password,
                 "dbname": self.dbname, "application_name": f"revetl {socket.gethostname()}:{os.getpid()}"[:63],
                 "connect_timeout": "10", "keepalives": "1", "keepalives_idle": "30", "options": options}
        return " ".join(f"{key}={_quote(value)}" for key, value in pairs.items())

    def open(self, settings: Mapping[str, str]) -> adbc.Connection:
        """A driver connection in autocommit mode, or one WarehouseError sentence (no password in it)."""
        try:
            return adbc.connect(self.conninfo(settings), autocommit=True)
        except adbc_driver_manager.Error as exc:
            raise WarehouseError(f"cannot connect to {self.where()}: {self._reason(exc)}") from None

    def _reason(self, exc: BaseException) -> str:
        text = self.scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        text = text.split("Failed to connect: ", 1)[-1]
        text = text.rsplit(" failed: ", 1)[-1]
        return re.sub(r"^(?:FATAL|ERROR):\s+", "", text)

    def scrub(self, text: str) -> str:
        return scrub(text, [self.password])


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _option(value: str) -> str:
    return value.replace("\\", "\\\\").replace(" ", "\\ ")


def _statement_timeout() -> str:
    raw = os.environ.get("REVETL_PG_STATEMENT_TIMEOUT", "900")
    try:
        return str(int(float(raw) * 1000))
    except ValueError:
        raise ConfigError(f"REVETL_PG_STATEMENT_TIMEOUT must be a number of seconds, not {raw!r}") from None


def session_settings(server: Server, *, read_only: bool, sandbox: bool) -> dict[str, str]:
    """The server settings a revetl session starts with."""
    settings = {"TimeZone": "UTC", "search_path": server.schema, "standard_conforming_strings": "on",
                "client_encoding": "UTF8"}
    if read_only:
        settings["default_transaction_read_only"] = "on"
    if sandbox:
        settings["statement_timeout"] = _statement_timeout()
    return settings
