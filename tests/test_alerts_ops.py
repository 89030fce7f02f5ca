"""Alerts of a build (`revetl build` through the command line), of the collector (a real `revetl collect`
whose landing directory breaks and is fixed), and what an alert never carries: a secret."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from alerts_receivers import WEBHOOK_SECRET, receiver
from identity_reference import wire
from rich.console import Console
from wh import REPO, audience_project, land, redirect

from revetl.alerts.hooks import watch_sync
from revetl.config import load_project
from revetl.errors import FatalDestinationError

HOOK = {"type": "webhook", "url": "${TEST_HOOK_URL}", "secret": "${TEST_HOOK_SECRET}"}


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.1)


@pytest.mark.slow
def test_a_failed_build_alerts_once_and_a_passing_build_recovers(tmp_path, monkeypatch):
    root = tmp_path / "project"
    root.mkdir()
    for name in ("dbt_project.yml", "profiles.yml", "traits.yml"):
        shutil.copy(REPO / name, root / name)
    for name in ("models", "macros"):
        shutil.copytree(REPO / name, root / name)
    (root / "revetl.yml").write_text(yaml.safe_dump({"alerts": {
        "channels": {"hook": HOOK}, "rules": [{"when": "build_failed", "channels": ["hook"]}]}}))
    project = redirect(tmp_path, monkeypatch, root)
    land(project, [wire("identify", "m1", userId="u1", traits={"email": "a@x.io"})])
    with receiver() as server:
        env = {**os.environ, "TEST_HOOK_URL": server.hook_url, "TEST_HOOK_SECRET": WEBHOOK_SECRET}

        def build() -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(root), "build"],
                                  capture_output=True, text=True, timeout=600, env=env)

        (root / "traits.yml").write_text("traits:\n  - {name: x, kind: cnt}\n")
        typo = build()
        assert typo.returncode == 1 and "unknown kind 'cnt'" in typo.stderr
        (alert,) = [d.json for d in server.hooks()]
        assert alert["kind"] == "build_failed" and alert["summary"] == "the build failed"
        assert "traits.yml, line 2: trait `x`: unknown kind 'cnt'" in alert["reason"]

        shutil.copy(REPO / "traits.yml", root / "traits.yml")
        (root / "models" / "broken_model.sql").write_text("select no_such_column from {{ ref('events') }}\n")
        broken = build()
        assert broken.returncode == 1 and len(server.hooks()) == 1  # still failing: nothing new

        (root / "models" / "broken_model.sql").unlink()
        fixed = build()
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        recovered = server.hooks()[-1].json
        assert (recovered["state"], recovered["summary"], len(server.hooks())) == ("recovered", "the build passed", 2)
        assert recovered["counts"]["failed"] == 0 and recovered["counts"]["passed"] > 0
        assert all(d.signature_valid for d in server.hooks())


@pytest.mark.slow
def test_a_degraded_collector_alerts_and_recovers_with_its_state_beside_its_log(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(REPO / "dbt_project.yml", root / "dbt_project.yml")
    (root / "revetl.yml").write_text(yaml.safe_dump({
        "collect": {"write_keys": {"web": "${TEST_WRITE_KEY}"}},
        "alerts": {"channels": {"hook": HOOK, "ops": {"type": "slack", "url": "${TEST_SLACK_URL}"}},
                   "rules": [{"when": "collector_degraded", "for_seconds": 0, "channels": ["hook", "ops"]}]},
    }))
    blocked = tmp_path / "events"
    blocked.write_text("a file where the landing directory should be")
    log = tmp_path / "collector.log"
    with receiver() as server, open(log, "wb") as out:
        env = {**os.environ, "TEST_HOOK_URL": server.hook_url, "TEST_HOOK_SECRET": WEBHOOK_SECRET,
               "TEST_SLACK_URL": server.slack_url, "TEST_WRITE_KEY": "collector-write-key-1f6b",
               "REVETL_LANDING_DIR": str(blocked), "REVETL_COLLECTOR_DIR": str(tmp_path / "collector")}
        process = subprocess.Popen(
            [sys.executable, "-m", "revetl", "--project-dir", str(root), "collect", "--port", "0", "--workers", "0",
             "--flush-seconds", "0.2"], stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            lines = lambda: [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]  # noqa: E731
            wait_for(lambda: any("url" in line for line in lines()), 90, "the collector to listen")
            url = next(line["url"] for line in lines() if "url" in line)
            events = {"batch": [{"type": "track", "event": "e", "userId": "u1"}], "writeKey": env["TEST_WRITE_KEY"]}
            assert httpx.post(url + "/v1/batch", json=events, timeout=10).status_code == 200
            wait_for(lambda: len(server.hooks()) == 1 and server.slack(), 30, "the degraded alert on both channels")
            assert httpx.get(url + "/health", timeout=10).json()["status"] == "degraded"
            alert = server.hooks()[0].json
            assert alert["kind"] == "collector_degraded" and alert["summary"] == "the collector is degraded"
            assert "could not write Parquet" in alert["reason"]
            assert server.slack()[0]["text"] == ":red_circle: FAILING: the collector is degraded"
            time.sleep(2)
            assert len(server.deliveries) == 2  # still degraded: nothing new

            blocked.unlink()  # the operator fixes the landing directory; the next roll lands the events
            wait_for(lambda: len(server.hooks()) == 2 and len(server.slack()) == 2, 30, "the recovery on both channels")
            recovered = server.hooks()[1].json
            assert recovered["state"] == "recovered" and recovered["since"] == alert["since"]
            assert httpx.get(url + "/health", timeout=10).json()["status"] == "ok"
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
    states = json.loads((tmp_path / "collector" / "alerts.json").read_text())
    assert sorted((s["channel"], s["failing"]) for s in states) == [("hook", False), ("ops", False)]
    assert [line["channel"] for line in lines() if line["msg"] == "alert sent"] == ["hook", "ops", "hook", "ops"]
    assert env["TEST_WRITE_KEY"] not in "".join(d.body.decode() for d in server.deliveries)


def test_a_secret_in_a_failing_syncs_error_never_reaches_an_alert(tmp_path, monkeypatch):
    audience = "-- description: people\n-- key: user_id\n\nselect user_id from {{ ref('members') }}\n"
    project = audience_project(tmp_path, monkeypatch, {"people": audience}, tables=("members",))
    api_key, password = "acme-destination-key-40c2", "url-password-77d1"
    monkeypatch.setenv("ACME_AUTH", api_key)  # a name no heuristic calls secret: the destination's schema does
    (project.syncs_dir / "people.yml").write_text(yaml.safe_dump({
        "audience": "people", "identity": {"from": "user_id", "to": "external_id"},
        "destination": {"type": "braze", "base_url": "http://127.0.0.1:9", "api_key": "${ACME_AUTH}"}}))
    (project.root / "revetl.yml").write_text(yaml.safe_dump({"alerts": {
        "channels": {"hook": HOOK}, "rules": [{"when": "sync_failed", "channels": ["hook"]}]}}))
    project = load_project(project.root)
    with receiver() as server:
        monkeypatch.setenv("TEST_HOOK_URL", server.hook_url)
        monkeypatch.setenv("TEST_HOOK_SECRET", WEBHOOK_SECRET)
        # An error built carelessly (not through the destination, which scrubs its own): every secret in it
        leak = (f"braze said: bad key {api_key} (signing with {WEBHOOK_SECRET}) via "
                f"https://admin:{password}@braze.example.com/users/track")
        with pytest.raises(FatalDestinationError), watch_sync(project, "people", Console(stderr=True)):
            raise FatalDestinationError("people", 401, leak)
        (delivery,) = server.hooks()
    body = delivery.body.decode()
    assert delivery.signature_valid
    assert api_key not in body and WEBHOOK_SECRET not in body and password not in body
    assert delivery.json["reason"] == ("braze said: bad key *** (signing with ***) via "
                                       "https://admin:***@braze.example.com/users/track")
    assert delivery.json["summary"] == "sync people could not start"
