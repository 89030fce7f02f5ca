"""Issue 17's promise, end to end through the real CLI: one crontab line (`revetl schedule run`) runs the
shipped project, the build and then every sync, with alerts going to a local signed webhook, and
`revetl report` shows its history."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from alerts_receivers import WEBHOOK_SECRET, receiver
from wh import REPO, redirect

from revetl.config import sync_names
from revetl.emulators import create, running

# Where each shipped sync file reads its destination's URL from (syncs/*.yml), as the demo sets them.
URL_VARIABLES = {"braze": "BRAZE_REST_ENDPOINT", "salesforce": "SALESFORCE_URL", "intercom": "INTERCOM_URL",
                 "webhook": "WEBHOOK_URL", "slack": "SLACK_WEBHOOK_URL"}


def shipped_project(base: Path, monkeypatch: pytest.MonkeyPatch):
    """A copy of the repository's project (audiences and syncs included), writing only into `base`;
    every sync builds first (`after: build`), alerts go to a signed webhook."""
    root = base / "project"
    root.mkdir()
    for name in ("dbt_project.yml", "profiles.yml", "revetl.yml", "traits.yml"):
        shutil.copy(REPO / name, root / name)
    for folder in ("models", "macros", "audiences", "syncs"):
        shutil.copytree(REPO / folder, root / folder)
    for sync in (root / "syncs").glob("*.yml"):
        sync.write_text(sync.read_text() + "after: build\n")
    settings = yaml.safe_load((root / "revetl.yml").read_text())
    settings["alerts"] = {
        "channels": {"ops": {"type": "webhook", "url": "${OPS_HOOK_URL}", "secret": "${OPS_HOOK_SECRET}"}},
        "rules": [{"when": "sync_failed", "channels": ["ops"]}, {"when": "build_failed", "channels": ["ops"]}],
    }
    (root / "revetl.yml").write_text(yaml.safe_dump(settings))
    return redirect(base, monkeypatch, root)


def revetl(project, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(project.root), *args],
                          capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200", **env})


@pytest.mark.slow
def test_one_crontab_line_runs_the_shipped_project_alerts_and_the_report_shows_its_history(tmp_path, monkeypatch):
    project = shipped_project(tmp_path, monkeypatch)
    syncs = sync_names(project)
    kinds = {yaml.safe_load((project.syncs_dir / f"{name}.yml").read_text())["destination"]["type"] for name in syncs}
    assert kinds == set(URL_VARIABLES)  # every shipped destination takes part
    generated = revetl(project, "generate", "--users", "100", "--days", "14", env={})
    assert generated.returncode == 0, generated.stderr
    hour = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    emulators = {kind: create(kind) for kind in URL_VARIABLES}
    with receiver() as alerts, running(emulators["braze"]) as braze, running(emulators["salesforce"]) as salesforce, \
            running(emulators["intercom"]) as intercom, running(emulators["webhook"]) as webhook, \
            running(emulators["slack"]) as slack:
        urls = {"braze": braze, "salesforce": salesforce, "intercom": intercom, "webhook": webhook,
                "slack": emulators["slack"].client_url(slack)}
        env = {URL_VARIABLES[kind]: url for kind, url in urls.items()}
        env |= {"OPS_HOOK_URL": alerts.hook_url, "OPS_HOOK_SECRET": WEBHOOK_SECRET}

        first = revetl(project, "schedule", "run", "--now", f"{hour:%Y-%m-%dT%H:%M:%SZ}", env=env)
        assert first.returncode == 0, first.stdout + first.stderr
        order = [first.stdout.index(f"{job}: succeeded") for job in ("build", *(f"sync {name}" for name in syncs))]
        assert order[0] == min(order), "the build runs before the syncs"
        assert alerts.deliveries == []  # nothing failed: nothing to say

        quiet = revetl(project, "schedule", "run", "--now", f"{hour:%Y-%m-%dT%H:%M:%SZ}", env=env)
        assert (quiet.returncode, quiet.stdout) == (0, "")  # the same minute again: nothing due, nothing printed

        audience = project.audiences_dir / "churn_risk.sql"  # an analyst pushes a broken audience
        audience.write_text(audience.read_text().replace("select", "select no_such_column,", 1))
        later = hour + dt.timedelta(hours=1)
        second = revetl(project, "schedule", "run", "--now", f"{later:%Y-%m-%dT%H:%M:%SZ}", env=env)
        assert second.returncode == 1, second.stdout + second.stderr
        failed = sorted(hook.json["subject"] for hook in alerts.hooks())
        reading = sorted(name for name in syncs if yaml.safe_load(
            (project.syncs_dir / f"{name}.yml").read_text())["audience"] == "churn_risk")
        assert failed == reading and len(reading) == 2  # one alert per failing sync, each signed
        assert all(hook.signature_valid and hook.json["state"] == "failing" for hook in alerts.hooks())
        assert all("no_such_column" in hook.json["reason"] for hook in alerts.hooks())
        assert WEBHOOK_SECRET not in "".join(hook.body.decode() for hook in alerts.deliveries)

        report = revetl(project, "report", "--out", str(tmp_path / "report.html"), env={})
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report.html").read_text()
    assert "<script" not in page and not re.search(r'(src|href)="https?://', page)  # opens offline
    for name in syncs:
        assert name in page
    assert len(re.findall(r"<svg\b", page)) >= 4 and "failed" in page
