"""The `violations` alert rules through the real CLI: `revetl ingest --source` under a tracking plan, alerts
to a real signed-webhook receiver, once per change of state (a rate above its share; a kind that appears)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerts_receivers import WEBHOOK_SECRET, receiver
from wh import REPO, redirect

from revetl.config import Project

pytestmark = pytest.mark.slow

PLAN = """\
sources: [web]
actions: {unplanned_event: block}
events:
  Signed Up:
    properties:
      properties: {plan: {type: string}}
"""


def project_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook_url: str) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("dbt_project.yml", "profiles.yml", "traits.yml"):
        shutil.copy(REPO / name, root / name)
    settings = yaml.safe_load((REPO / "revetl.yml").read_text())
    settings["alerts"] = {
        "channels": {"hook": {"type": "webhook", "url": hook_url, "secret": "${ALERT_WEBHOOK_SECRET}"}},
        "rules": [{"when": "violations", "share": 0.3, "channels": ["hook"]},
                  {"when": "violations", "name": "new-kinds", "channels": ["hook"]}],
    }
    (root / "revetl.yml").write_text(yaml.safe_dump(settings))
    (root / "tracking_plans").mkdir()
    (root / "tracking_plans" / "web.yml").write_text(PLAN)
    monkeypatch.setenv("ALERT_WEBHOOK_SECRET", WEBHOOK_SECRET)
    return redirect(tmp_path, monkeypatch, root)


def ingest(project: Project, tmp_path: Path, name: str, events: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"type": "track", "userId": "u1", "messageId": f"{name}-{i}", **event}) + "\n"
                            for i, event in enumerate(events)))
    return subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(project.root), "ingest", "--source",
                           "web", str(path)], capture_output=True, text=True, env={**os.environ}, timeout=300)


def test_violation_alerts_fire_once_when_a_rate_or_a_kind_appears_and_once_when_it_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed_up = {"event": "Signed Up", "properties": {"plan": "pro"}}
    with receiver() as hooks:
        project = project_for(tmp_path, monkeypatch, hooks.hook_url)
        bad = ingest(project, tmp_path, "bad", [signed_up, {"event": "Signed Upp"}])  # 1 of 2 events blocked
        assert bad.returncode == 0, bad.stdout + bad.stderr
        first = [delivery.json for delivery in hooks.hooks()]
        assert all(delivery.signature_valid for delivery in hooks.hooks())
        assert sorted((alert["rule"], alert["subject"], alert["state"]) for alert in first) == [
            ("new-kinds", "violations:web:unplanned_event", "failing"),
            ("violations>0.3", "violations:web", "failing"),
        ]
        rate = next(alert for alert in first if alert["rule"] == "violations>0.3")
        assert rate["summary"] == "50.0% of source web's events in this ingest broke its tracking plan, above 30.0%"
        assert rate["counts"] == {"events": 2, "with_violations": 1, "unplanned_event": 1}

        again = ingest(project, tmp_path, "again", [signed_up, {"event": "Signed Upp"}])
        assert again.returncode == 0 and len(hooks.hooks()) == 2  # no change of state, no message

        clean = ingest(project, tmp_path, "clean", [signed_up, signed_up])
        assert clean.returncode == 0
        recovered = [delivery.json for delivery in hooks.hooks()[2:]]
        assert sorted((alert["rule"], alert["state"]) for alert in recovered) == [
            ("new-kinds", "recovered"), ("violations>0.3", "recovered")]
