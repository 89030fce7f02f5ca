"""Segment-compatible HTTP collector: `revetl collect` lands events sent by Segment and RudderStack SDKs.

    settings.py   `collect:` in revetl.yml -> CollectorConfig (write keys expanded, never printed)
    protocol.py   the Tracking API as data: endpoints, limits, auth, request body -> landing rows
    app.py        the ASGI app: routing, limits, auth, responses, access log
    workers.py    parser processes: decode, parse and normalize request bodies off the event loop
    dedupe.py     recently landed message ids, so a client's retry is not landed twice
    log.py        write-ahead log: append-only segments, group-committed fsync before each 200
    pipeline.py   the write path on the event loop: log, then roll into Parquet every N s / M events
    roller.py     a closed segment -> Parquet exactly once; start-up recovery after a crash
    server.py     the process: lock, recover, listen, serve, flush on SIGTERM
    lines.py      structured (JSON) log lines
"""

from __future__ import annotations

from revetl.collect.server import run, serve
from revetl.collect.settings import CollectorConfig

__all__ = ["CollectorConfig", "run", "serve"]
