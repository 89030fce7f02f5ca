"""Named locks on PostgreSQL: a session-level advisory lock, held by a session of its own for a block.

Two hosts running cron against one warehouse share no file system, so the per-sync lock lives in the
warehouse: `pg_try_advisory_lock(key)`, `key` a stable 64-bit hash of the lock's name, taken on a
dedicated session that stays open (idle) for the block and ends with it. The server releases the lock
when that session ends, however it ends: a SIGKILLed process's socket closes at once; a host that
vanishes is noticed by TCP keepalives within about a minute (set on the session). A second taker is
refused at once and told who holds it: the holder's `application_name` (revetl sets "revetl HOST:PID"),
its backend pid and client address, as far as pg_stat_activity shows them to the asking role.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Mapping

from revetl.errors import QueryError
from revetl.warehouse.base import Connection

__all__ = ["advisory_lock", "advisory_locked", "lock_key"]

# The lock's session: idle for as long as the block runs, so no idle or statement timeout may end it, and
# keepalives every 20 s (3 missed: gone) so that a host that dies frees its locks.
_SETTINGS = {"TimeZone": "UTC", "statement_timeout": "0", "idle_session_timeout": "0",
             "idle_in_transaction_session_timeout": "0", "tcp_keepalives_idle": "20",
             "tcp_keepalives_interval": "10", "tcp_keepalives_count": "3"}

_HELD = """select l.pid, a.application_name, host(a.client_addr)
    from pg_locks l left join pg_stat_activity a on a.pid = l.pid
    where l.locktype = 'advisory' and l.granted and l.objsubid = 1
      and l.database = (select oid from pg_database where datname = current_database())
      and l.classid::bigint = $1 and l.objid::bigint = $2"""


def lock_key(name: str) -> int:
    """The advisory lock key of `name`: the first 8 bytes of its BLAKE2b hash, as a signed 64-bit integer
    (the same on every host and Python version)."""
    digest = hashlib.blake2b(f"revetl:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _halves(key: int) -> list[int]:
    """(classid, objid): how pg_locks shows a bigint advisory key."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return [unsigned >> 32, unsigned & 0xFFFF_FFFF]


@contextlib.contextmanager
def advisory_lock(open_session: Callable[[Mapping[str, str]], Connection], name: str,
                  refuse: Callable[[str], Exception]) -> Iterator[None]:
    """Hold the lock `name` for the block on a session `open_session(settings)` opens, or raise
    `refuse(holder)` at once."""
    key = lock_key(name)
    session = open_session(_SETTINGS)
    try:
        if not session.scalar("select pg_try_advisory_lock($1)", [key]):
            raise refuse(_holder(session, key))
        try:
            yield
        finally:
            with contextlib.suppress(QueryError):  # a lost session has released it already
                session.scalar("select pg_advisory_unlock($1)", [key])
    finally:
        session.close()


def advisory_locked(connection: Connection, name: str) -> bool:
    """Whether some session holds the lock `name` now."""
    return bool(connection.fetchall(_HELD, _halves(lock_key(name))))


def _holder(session: Connection, key: int) -> str:
    """Who holds the lock, in a few words ("process 4321 on web-1, server pid 77 from 10.0.0.5")."""
    rows = session.fetchall(_HELD, _halves(key))
    if not rows:
        return "another session, which has just released it"
    pid, application, address = rows[0]
    where = f"server pid {pid}" + (f" from {address}" if address else "")
    if application and application.startswith("revetl ") and ":" in application:
        host, _, process = application[len("revetl "):].rpartition(":")
        return f"process {process} on {host}, {where}"
    return f"{application}, {where}" if application else where
