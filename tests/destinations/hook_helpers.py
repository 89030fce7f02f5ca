"""What the webhook and Slack tests share: a batch sent through a mock transport, an emulator process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence

import httpx

from revetl.destinations import Destination, Row, RowResult
from revetl.testing import FakeClock


def send(destination: Destination, rows: Sequence[Row], answer: Callable[[httpx.Request], httpx.Response],
         clock: FakeClock | None = None) -> tuple[list[RowResult], list[httpx.Request]]:
    """`destination.send(rows)` against `answer` (offline); the results and the requests it made."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    async def main() -> list[RowResult]:
        async with destination.connect(transport=httpx.MockTransport(handler),
                                       clock=(clock or FakeClock()).clock) as http:
            return await destination.send(http, rows)

    return asyncio.run(main()), seen


@contextlib.contextmanager
def emulator_process(name: str, env: dict[str, str]) -> Iterator[str]:
    """`revetl emulate NAME --port 0` in its own process (stopped with SIGTERM); its URL."""
    process = subprocess.Popen([sys.executable, "-m", "revetl", "emulate", name, "--port", "0"],
                               stdout=subprocess.PIPE, text=True, env={**os.environ, **env})
    try:
        assert process.stdout is not None
        yield json.loads(process.stdout.readline())["url"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
