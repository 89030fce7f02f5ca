"""The typed plugin interface: config model from the generic parameter, identifiers checked once,
set-up before the first batch and teardown after the last however the run ends, secret-free errors."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from revetl.config import SyncConfig
from revetl.destinations import Destination, DestinationConfig, HttpOptions, Row, RowResult
from revetl.destinations.braze import Braze, BrazeConfig
from revetl.errors import ConfigError, FatalDestinationError, RowRejected
from revetl.sync.http import Http
from revetl.testing import FakeClock

KEY = "pk-very-secret-31"


class EchoConfig(DestinationConfig):
    api_key: SecretStr


class Echo(Destination[EchoConfig]):
    """A destination that POSTs each batch and records the hooks the engine calls."""

    type = "echo"
    identifiers = ("external_id",)
    max_batch_size = 2

    def configure(self) -> None:
        self.calls: list[str] = []

    def http_options(self) -> HttpOptions:
        return HttpOptions(headers={"Authorization": f"Bearer {self.config.api_key.get_secret_value()}"})

    async def setup(self, http: Http) -> None:
        self.calls.append("setup")

    async def send(self, http: Http, rows: Sequence[Row]) -> list[RowResult]:
        self.calls.append(f"send {len(rows)}")
        response = await http.request("POST", "/batch", content=b"[]")
        if response.status_code == 422:
            return [RowResult.of(self.rejected(row.key, f"refused with key {KEY}")) for row in rows]
        return [RowResult(True)] * len(rows)

    async def teardown(self, http: Http) -> None:
        self.calls.append("teardown")


def echo(to: str = "external_id") -> Echo:
    sync = SyncConfig.model_validate({
        "name": "people_to_echo", "path": Path("syncs/people_to_echo.yml"), "audience": "people",
        "destination": {"type": "echo"}, "identity": {"from": "user_id", "to": to},
    })
    config = EchoConfig.model_validate({"type": "echo", "base_url": "http://echo.test", "api_key": KEY,
                                        "attempts": 3})
    return Echo(sync=sync, config=config)


def sending(destination: Echo, statuses: list[int], batches: int = 2) -> list[list[RowResult]]:
    """Send `batches` batches through `connect`, the server answering `statuses` in turn."""
    answers = iter(statuses)
    transport = httpx.MockTransport(lambda request: httpx.Response(next(answers), json={"message": "no " + KEY}))
    fake = FakeClock()

    async def go() -> list[list[RowResult]]:
        async with destination.connect(transport=transport, clock=fake.clock) as http:
            return [await destination.send(http, [Row.of("add", f"u{i}", {})]) for i in range(batches)]

    return asyncio.run(go())


def test_the_config_model_comes_from_the_generic_parameter() -> None:
    assert Echo.config_model is EchoConfig and Braze.config_model is BrazeConfig
    assert echo().config.api_key.get_secret_value() == KEY  # typed: no cast, no ignore


def test_declared_identifiers_are_checked_once_with_one_sentence() -> None:
    with pytest.raises(ConfigError) as caught:
        echo(to="email")
    assert str(caught.value) == "syncs/people_to_echo.yml: `identity.to` for echo is one of external_id, not 'email'"


def test_setup_comes_before_the_first_batch_and_teardown_after_the_last() -> None:
    destination = echo()
    results = sending(destination, [200, 200])
    assert results == [[RowResult(True)], [RowResult(True)]]
    assert destination.calls == ["setup", "send 1", "send 1", "teardown"]


def test_teardown_runs_when_a_batch_fails_and_the_failure_is_what_surfaces() -> None:
    destination = echo()
    with pytest.raises(FatalDestinationError) as caught:
        sending(destination, [200, 401])
    assert destination.calls == ["setup", "send 1", "send 1", "teardown"]
    assert (caught.value.sync, caught.value.status) == ("people_to_echo", 401)
    assert KEY not in str(caught.value) and "***" in str(caught.value)  # the body echoed it: scrubbed here


def test_a_rejected_row_carries_its_key_and_a_reason_without_secrets() -> None:
    destination = echo()
    (result,), _ = sending(destination, [422, 200])
    assert result == RowResult(False, "refused with key ***")
    rejection = destination.rejected("u1", f"bad {KEY}")
    assert isinstance(rejection, RowRejected) and rejection.key == "u1" and str(rejection) == "u1: bad ***"


def test_no_destination_casts_its_config() -> None:
    root = Path(__file__).resolve().parents[2] / "revetl" / "destinations"
    ignored = {path.name: re.findall(r".*type: ignore.*", path.read_text()) for path in root.glob("*.py")}
    assert {name: lines for name, lines in ignored.items() if lines} == {}



def test_a_built_in_is_found_in_revetls_own_metadata_and_no_package_can_shadow_it(monkeypatch) -> None:
    """A sync to a built-in (a cron line's) does not scan every installed package's entry points."""
    from importlib.metadata import EntryPoint

    import revetl.destinations as destinations

    destinations.destination_types.cache_clear()
    monkeypatch.setattr(destinations, "entry_points", lambda group: pytest.fail("every package was scanned"))
    assert destinations._entry_point("braze").load() is Braze

    impostor = EntryPoint("braze", "revetl.destinations.base:DestinationConfig", destinations.GROUP)
    other = EntryPoint("acme", "revetl.destinations.webhook:Webhook", destinations.GROUP)
    monkeypatch.setattr(destinations, "entry_points", lambda group: [impostor, other])
    try:
        assert destinations.destination_types()["braze"].load() is Braze
        assert destinations._entry_point("acme") is other  # a type revetl lacks comes from the scan
    finally:
        destinations.destination_types.cache_clear()
