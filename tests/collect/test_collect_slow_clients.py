"""Slow and silent clients against a real `revetl collect`, over raw sockets.

The collector runs with a read timeout and an idle timeout of one second (`collect:` settings in
revetl.yml). A connection that sends nothing, or stops in the middle of its request, is closed
(unanswered, so that the SDKs retry). A client that is slow but keeps sending is served.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Collector, project_with_collect_settings, start_collector

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("collect_slow_clients")]

# Far longer than the one-second timeouts: a server that never closes is caught, a slow machine is not.
PATIENCE_S = 30


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    base = tmp_path_factory.mktemp("slow-clients")
    project = project_with_collect_settings(base / "project", read_timeout_seconds=1, idle_timeout_seconds=1)
    started = start_collector(base, "--workers", "0", "--flush-seconds", "0.2", project_dir=project)
    yield started
    if started.process.poll() is None:
        started.stop()


def connect(collector: Collector) -> socket.socket:
    host, port = collector.url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=PATIENCE_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (fails if it never does)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the collector kept the connection open for {PATIENCE_S} s")
    return received


def request_head(keys: dict[str, str], length: int) -> bytes:
    return (
        "POST /v1/batch HTTP/1.1\r\nHost: collector\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def body(keys: dict[str, str], message_id: str) -> bytes:
    event = {"type": "track", "event": "Clicked", "userId": "u-1", "messageId": message_id}
    return json.dumps({"batch": [event], "writeKey": keys["web"]}).encode()


def test_a_connection_that_sends_nothing_is_closed(collector: Collector) -> None:
    with connect(collector) as sock:
        assert read_until_closed(sock) == b""


def test_a_connection_that_stops_in_its_headers_is_closed(collector: Collector) -> None:
    with connect(collector) as sock:
        sock.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: collector\r\nContent-Ty")
        assert read_until_closed(sock) == b""


def test_a_request_that_stops_in_its_body_is_closed_unanswered_so_that_sdks_retry_it(
    collector: Collector, keys: dict[str, str]
) -> None:
    # Segment's SDKs retry a failed connection but drop a batch answered 4xx (a 408 would lose it).
    payload = body(keys, "half-body-1")
    with connect(collector) as sock:
        sock.sendall(request_head(keys, len(payload)) + payload[: len(payload) // 2])
        assert read_until_closed(sock) == b""
    assert "half-body-1" not in {row["message_id"] for row in collector.landed()}
    deadline = time.monotonic() + PATIENCE_S
    while not (cut := [line for line in collector.lines() if line.get("msg") == "request" and line["status"] is None]):
        assert time.monotonic() < deadline, "no log line for the request cut short"
        time.sleep(0.05)
    assert cut[0]["path"] == "/v1/batch" and "before the whole body arrived" in cut[0]["error"]


def test_a_keep_alive_connection_left_idle_is_closed(collector: Collector, keys: dict[str, str]) -> None:
    payload = body(keys, "idle-after-1")
    with connect(collector) as sock:
        sock.sendall(request_head(keys, len(payload)) + payload)
        response = read_until_closed(sock)
    assert response.startswith(b"HTTP/1.1 200 ")


def test_a_slow_client_that_keeps_sending_is_served(collector: Collector, keys: dict[str, str]) -> None:
    payload = body(keys, "slow-but-steady-1")
    with connect(collector) as sock:
        sock.sendall(request_head(keys, len(payload)))
        for start in range(0, len(payload), 40):  # every pause shorter than the read timeout
            time.sleep(0.3)
            sock.sendall(payload[start : start + 40])
        response = read_until_closed(sock)  # then idle: closed after the response
    assert response.startswith(b"HTTP/1.1 200 "), response[:200]
    deadline = time.monotonic() + PATIENCE_S
    while "slow-but-steady-1" not in {row["message_id"] for row in collector.landed()}:
        assert time.monotonic() < deadline, "the event never landed"
        time.sleep(0.1)
