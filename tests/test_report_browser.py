"""`revetl report` as a reader sees it: drawn by headless Chromium (Debian's `chromium`, installed by .ci/run),
offline, without a console error; and through the real CLI after real syncs, on DuckDB and PostgreSQL."""

from __future__ import annotations

import os
import struct
import subprocess
import sys

import pytest
import yaml
from test_report import HOSTILE, NOW, record, sync_yml
from wh import TARGETS, audience_project, on_target, replace_table

from revetl.emulators import running
from revetl.report import write_report
from revetl.report.browser import render
from revetl.testing.clock import FakeClock

KEY = "report-test-braze-key"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def assert_drawn(rendered, charts: int) -> None:
    """The page drew `charts` charts, each with marks of a real size, and asked for nothing but itself."""
    assert rendered.errors == []
    assert len(rendered.requests) == 1 and rendered.requests[0].startswith("file://"), rendered.requests
    assert len(rendered.charts) == charts, [chart["title"] for chart in rendered.charts]
    for chart in rendered.charts:
        assert chart["width"] > 300 and chart["height"] > 50, chart
        assert chart["marks"] > 0 and chart["tips"] >= chart["marks"] / 2, chart


@pytest.mark.slow
def test_the_report_draws_every_chart_in_chromium(tmp_path, monkeypatch):
    project = audience_project(tmp_path, monkeypatch, {})
    sync_yml(project, "a_to_braze", "braze")
    sync_yml(project, "b_to_intercom", "intercom")
    runs = []
    for hour in range(48, 0, -1):
        runs.append({"sync": "a_to_braze", "hours": hour, "members": 100 + hour, "adds": hour % 5,
                     "removes": hour % 3, "seconds": 1.0 + hour % 4})
        bad = hour % 12 == 0
        runs.append({"sync": "b_to_intercom", "audience": HOSTILE, "hours": hour - 0.5, "members": 40, "adds": 2,
                     "status": "failed" if bad else "succeeded", "failed": 2 if bad else 0,
                     "reason": "<b>contact</b> was archived", "seconds": 3.0})
    record(project, runs)
    written = write_report(project, tmp_path / "report.html", clock=FakeClock(NOW.timestamp()).clock)
    rendered = render(written.path)
    # 2 audiences, 2 syncs, rejected by reason, throughput (bars, over time)
    assert_drawn(rendered, charts=7)
    assert f"audience {HOSTILE}" in rendered.text  # shown as text, never run as markup
    assert "<b>contact</b> was archived" in rendered.text
    assert "No sync runs yet" not in rendered.text
    width, height = png_size(rendered.screenshot)
    assert width == 1280 and height > 2000
    assert len(rendered.screenshot) > 50_000  # charts, not a blank page (a blank 1280x2000 PNG is a few KB)
    (tmp_path / "report.png").write_bytes(rendered.screenshot)


@pytest.mark.slow
def test_the_empty_report_says_what_to_run_in_chromium(tmp_path, monkeypatch):
    project = audience_project(tmp_path, monkeypatch, {})
    written = write_report(project, tmp_path / "report.html")
    rendered = render(written.path, height=900)
    assert_drawn(rendered, charts=0)
    assert "No sync runs yet" in rendered.text and "revetl sync --all" in rendered.text
    assert png_size(rendered.screenshot) == (1280, 900)


AUDIENCE = "-- description: people\n-- key: user_id\n\nselect user_id, email, plan from {{ ref('members') }}\n"


@pytest.fixture(params=TARGETS)
def synced(request, tmp_path, monkeypatch):
    monkeypatch.setenv("BRAZE_API_KEY", KEY)
    project = audience_project(tmp_path, monkeypatch, {"people": AUDIENCE}, tables=("members",))
    return on_target(project, request.param, request, monkeypatch)


def revetl(project, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(project.root), *args],
                          capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=300)


def members(project, n: int, bad: int = 0) -> None:
    replace_table(project, "members", """
        select 'u' || i as user_id, case when i < ? then 'broken' else 'p' || i || '@example.com' end as email,
               'pro' as plan
        from generate_series(0, ? - 1) as t(i)""", [bad, n])


@pytest.mark.slow
def test_report_after_real_syncs_from_the_command_line(synced, tmp_path):
    """Three real runs against the Braze emulator (one with rejected rows), then `revetl report`."""
    project = synced
    with running("braze", {"api_key": KEY}) as url:
        (project.syncs_dir / "people.yml").write_text(yaml.safe_dump({
            "audience": "people", "destination": {"type": "braze", "base_url": url, "api_key": "${BRAZE_API_KEY}"},
            "identity": {"from": "user_id", "to": "external_id"}, "fields": {"email": "email", "plan": "plan"},
            "membership": {"attribute": "in_people"}}))
        members(project, 60, bad=3)
        assert revetl(project, "sync", "people").returncode == 1  # three rows rejected
        members(project, 80)
        assert revetl(project, "sync", "people").returncode == 0
        members(project, 70)
        assert revetl(project, "sync", "people").returncode == 0
    out = tmp_path / "report.html"
    done = revetl(project, "report", "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 runs in the last 90 days" in done.stdout
    html = out.read_text(encoding="utf-8")
    assert KEY not in html and KEY not in done.stdout
    for text in ("audience people", "sync people", "braze · 3 runs, 2 succeeded", "70 members at the last run",
                 "not a valid email", f"target <b>{project.target or 'duckdb'}</b>"):
        assert text in html, text
    rendered = render(out)
    assert_drawn(rendered, charts=5)  # audience, sync, rejected by reason, throughput bars and over time
    assert "u0" in rendered.text  # a rejected row's key in the latest rejected rows
