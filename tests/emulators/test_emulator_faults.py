"""Faults, control endpoints and ways of running an emulator, shown on the Braze emulator.

A fault must mean what it means in production: a dropped connection or a 5xx applied nothing,
a lost response applied the change, a timeout answers nothing until the client gives up.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from revetl.emulators import create, register, running
from revetl.emulators.base import Emulator, Request, Response, Route
from revetl.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": "Bearer dev-braze-key"}


@pytest.fixture(scope="module")
def braze_url() -> Iterator[str]:
    with running("braze", {"api_key": "dev-braze-key"}) as url:
        yield url


@pytest.fixture
def braze(braze_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=braze_url, headers=AUTH, timeout=5) as client:
        client.post("/_emulator/reset").raise_for_status()
        yield client


def faults(client: httpx.Client, **values: object) -> dict:
    response = client.post("/_emulator/faults", json=values)
    response.raise_for_status()
    return response.json()


def send(client: httpx.Client, external_id: str = "u1", **kwargs: object) -> httpx.Response:
    return client.post("/users/track", json={"attributes": [{"external_id": external_id, "plan": "pro"}]}, **kwargs)


def applied(client: httpx.Client) -> set[str]:
    return {u["external_id"] for u in client.get("/_emulator/users").json()["users"]}


def test_a_dropped_connection_is_a_transport_error_and_applies_nothing(braze: httpx.Client) -> None:
    faults(braze, drop_share=1.0)
    with pytest.raises(httpx.TransportError):
        send(braze)
    assert applied(braze) == set()


def test_a_lost_response_is_a_transport_error_but_the_change_applied(braze: httpx.Client) -> None:
    faults(braze, lost_response_share=1.0)
    with pytest.raises(httpx.TransportError):
        send(braze)
    assert applied(braze) == {"u1"}


def test_a_5xx_applies_nothing(braze: httpx.Client) -> None:
    faults(braze, error_share=1.0)
    statuses = {send(braze, f"u{i}").status_code for i in range(12)}
    assert statuses <= {500, 502, 503} and len(statuses) > 1
    assert applied(braze) == set()


def test_a_timeout_answers_nothing_until_the_client_gives_up(braze: httpx.Client) -> None:
    faults(braze, timeout_share=1.0)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        send(braze, timeout=0.3)
    assert time.monotonic() - started >= 0.3
    assert applied(braze) == set()


def test_a_rate_limit_burst_answers_429_with_retry_after(braze: httpx.Client) -> None:
    faults(braze, rate_limit_burst=2)
    answers = [send(braze) for _ in range(3)]
    assert [r.status_code for r in answers] == [429, 429, 201]
    assert answers[0].headers["Retry-After"] == "1"
    assert "X-RateLimit-Remaining" in answers[0].headers


def test_latency_delays_each_answer(braze: httpx.Client) -> None:
    faults(braze, latency_ms=[60, 80])
    started = time.monotonic()
    assert send(braze).status_code == 201
    assert time.monotonic() - started >= 0.06


def test_the_same_seed_injects_the_same_faults(braze: httpx.Client) -> None:
    def outcomes(seed: int) -> list[str]:
        faults(braze, seed=seed, error_share=0.3, drop_share=0.2)
        seen = []
        for i in range(30):
            try:
                seen.append(str(send(braze, f"u{i}").status_code))
            except httpx.TransportError:
                seen.append("dropped")
        return seen

    first = outcomes(42)
    assert outcomes(42) == first
    assert {"201", "dropped"} <= set(first) and set(first) - {"201", "dropped"}
    assert outcomes(7) != first


def test_bad_faults_are_refused_with_a_sentence(braze: httpx.Client) -> None:
    response = braze.post("/_emulator/faults", json={"error_share": 0.7, "drop_share": 0.5})
    assert response.status_code == 400
    assert "add up to more than 1" in response.json()["error"]
    assert braze.get("/_emulator/faults").json()["error_share"] == 0.0


def test_stats_count_requests_objects_and_faults_and_reset_forgets_them(braze: httpx.Client) -> None:
    send(braze)
    braze.post("/users/track", json={"attributes": [{"plan": "x"}]})
    faults(braze, drop_share=1.0)
    with pytest.raises(httpx.TransportError):
        send(braze)
    stats = braze.get("/_emulator/stats").json()
    assert stats["requests"]["POST /users/track"] == {"201": 1, "400": 1, "drop": 1}
    assert stats["applied"] == {"attributes": 1}
    assert stats["faults_injected"]["drop"] == 1
    braze.post("/_emulator/reset").raise_for_status()
    stats = braze.get("/_emulator/stats").json()
    assert (stats["requests_total"], stats["applied"], applied(braze)) == (0, {}, set())
    assert send(braze).status_code == 201  # reset also restored the start-up faults


def test_recorded_requests_hide_the_key_and_are_bounded(braze: httpx.Client) -> None:
    for i in range(3):
        send(braze, f"u{i}")
    recorded = braze.get("/_emulator/requests", params={"limit": 2}).json()
    assert [r["body"]["attributes"][0]["external_id"] for r in recorded["requests"]] == ["u1", "u2"]
    assert recorded["requests"][0]["headers"]["authorization"] == "[redacted]"
    assert "dev-braze-key" not in json.dumps(recorded)
    assert recorded["capacity"] == 100


def test_bad_options_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="error_share"):
        create("braze", {"error_share": 2})
    with pytest.raises(ConfigError, match="Unknown option 'eror_share'"):
        create("braze", {"eror_share": 0.1})
    with pytest.raises(ConfigError, match="Unknown emulator"):
        create("brase")
    with pytest.raises(ConfigError, match="rate_limit"):
        create("braze", {"rate_limit": 0})


class _Echo(Emulator):
    """A minimal emulator, as the Salesforce and Intercom ones will be written."""

    name = "echo"

    def routes(self) -> list[Route]:
        return [Route("GET", "/things/{id}", self.thing), Route("PUT", "/things/{id}", self.put)]

    def thing(self, request: Request) -> Response:
        return Response(200, {"id": request.params["id"], "q": request.query.get("q")})

    async def put(self, request: Request) -> Response:  # handlers may be coroutines
        self.count_applied("things")
        return Response(200, {"id": request.params["id"], "body": request.json()})


def test_a_new_emulator_declares_routes_with_path_parameters() -> None:
    register("echo", _Echo)
    with running("echo", {"rate_limit": None}) as url, httpx.Client(base_url=url) as client:
        assert client.get("/things/42", params={"q": "x"}).json() == {"id": "42", "q": "x"}
        assert client.put("/things/7", json={"a": 1}).json() == {"id": "7", "body": {"a": 1}}
        assert client.get("/things/7/more").status_code == 404
        assert "X-RateLimit-Limit" not in client.get("/things/1").headers  # unlimited: no limit headers
        assert client.get("/_emulator/stats").json()["applied"] == {"things": 1}


CLI = ["-c", "from revetl.cli import main; main()", "emulate"]


@pytest.mark.slow
@pytest.mark.parametrize("command", [CLI, ["-m", "revetl.emulators"]], ids=["revetl emulate", "python -m"])
def test_runs_as_a_process_that_prints_its_url_and_stops_on_sigterm(command: list[str]) -> None:
    env = {**os.environ, "BRAZE_API_KEY": "process-key-8c2f", "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, *command, "braze", "--port", "0", "--error-share", "0", "--seed", "3"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=REPO)
    try:
        line = json.loads(process.stdout.readline())  # type: ignore[union-attr]
        assert line["emulator"] == "braze" and line["rate_limit"] == 3000
        response = httpx.post(f"{line['url']}/users/track", json={"attributes": [{"external_id": "u1"}]},
                              headers={"Authorization": "Bearer process-key-8c2f"})
        assert response.status_code == 201
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert b"process-key-8c2f" not in process.stderr.read()  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_importing_the_registry_loads_no_server_and_no_vendor_until_one_is_created() -> None:
    # revetl.emulators is imported by commands that may never serve; the server, asyncio and each
    # vendor's emulator load only when `running`, `serve` or `create` needs them.
    code = ("import sys, revetl.emulators as emulators; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('asyncio', 'httptools', 'orjson', 'uvloop') "
            "or m.startswith('revetl.emulators.'))); "
            "emulators.create('braze'); print('revetl.emulators.braze.api' in sys.modules)")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert loaded.stdout.splitlines() == ["[]", "True"]


def test_the_emulate_help_names_every_emulator():
    """`revetl emulate --help` lists its emulators from a literal (the registry is not imported for the help)."""
    import re

    from revetl.cli.data import _EMULATED
    from revetl.emulators import EMULATORS

    built_in = {name for name, factory in EMULATORS.items() if factory.__module__ == "revetl.emulators"}
    assert sorted(re.split(r", | or ", _EMULATED)) == sorted(built_in)
