"""`revetl report`: what the page says and how big it gets, from history recorded in a real warehouse.

The browser tests (the page drawn in headless Chromium) are in test_report_browser.py."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from wh import audience_project

from revetl.report import write_report
from revetl.report.charts import MAX_MARKS
from revetl.report.history import read_collector, read_history
from revetl.sync import state
from revetl.testing.clock import FakeClock
from revetl.warehouse.connection import connect, dbt_target_path

NOW = dt.datetime(2026, 11, 30, 12, tzinfo=dt.timezone.utc)
HOSTILE = "<img src=x onerror=alert(1)>"
_FAILURE = """insert into revetl_state.failures values ($run, $sync, $key, 'add', $reason, null, $at)"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    return audience_project(tmp_path, monkeypatch, {})


def sync_yml(project, name: str, destination: str) -> None:
    (project.syncs_dir / f"{name}.yml").write_text(
        f"audience: a\ndestination:\n  type: {destination}\n  api_key: ${{NOT_SET_ANYWHERE}}\n")


def record(project, runs: list[dict]) -> list[str]:
    """Record runs through the state's own API, each at its time (`hours` before NOW); returns their ids."""
    from revetl.warehouse.dialect import Template

    fake = FakeClock()
    ids = []
    with connect(project) as connection:
        state.migrate(connection)
        for run in runs:
            fake.now = (NOW - dt.timedelta(hours=run["hours"])).timestamp()
            run_id = state.start_run(connection, run["sync"], run.get("audience", "a"), run.get("members"),
                                     (run.get("adds", 0), 0, run.get("removes", 0)), clock=fake.clock)
            for number in range(run.get("failed", 0)):
                connection.execute(Template(_FAILURE), {"run": run_id, "sync": run["sync"], "key": f"u{number}",
                                                        "reason": run["reason"], "at": fake.clock.now()})
            fake.now += run.get("seconds", 2.0)
            state.finish_run(connection, run_id, run.get("status", "succeeded"),
                             (run.get("adds", 0), 0, run.get("removes", 0)), run.get("failed", 0),
                             run.get("message"), fake.clock.now())
            ids.append(run_id)
    return ids


def parsed_tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    """Every tag of the page with its attributes, as a browser's tokenizer reads them."""
    from html.parser import HTMLParser

    tags = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag, attrs):
            tags.append((tag, dict(attrs)))

    Tags().feed(html)
    return tags


def report(project, tmp_path, days: float = 90.0) -> str:
    written = write_report(project, tmp_path / "report.html", days=days, clock=FakeClock(NOW.timestamp()).clock)
    return written.path.read_text(encoding="utf-8")


def test_without_history_the_page_says_what_to_run(project, tmp_path):
    html = report(project, tmp_path)
    assert "No sync runs yet" in html and "<code>revetl sync --all</code>" in html
    assert "no warehouse at" in html  # why there is nothing: the warehouse was never built
    with connect(project) as connection:
        state.migrate(connection)  # a warehouse with sync state, and no run in it
    html = report(project, tmp_path)
    assert "No sync runs yet" in html and "could not be read" not in html
    assert "<svg" not in html


def test_runs_failures_and_sizes_are_charted_and_tabled(project, tmp_path):
    sync_yml(project, "a_to_braze", "braze")
    record(project, [
        {"sync": "a_to_braze", "hours": 30, "members": 100, "adds": 100, "seconds": 4.0},
        {"sync": "a_to_braze", "hours": 20, "members": 120, "adds": 25, "removes": 5, "status": "failed",
         "failed": 3, "reason": "not a valid email", "message": "3 rows rejected by braze"},
        {"sync": "a_to_braze", "hours": 10, "members": 118, "adds": 3, "removes": 2},
        {"sync": "gone", "hours": 5, "status": "refused", "message": "refused: it would remove 90 of 100 members"},
    ])
    html = report(project, tmp_path)
    assert "No sync runs yet" not in html
    for text in ("audience a", "sync a_to_braze", "sync gone", "rejected rows by reason", "not a valid email",
                 "throughput per destination", "3 rows rejected by braze", "refused: it would remove 90 of 100"):
        assert text in html, text
    assert "118 members at the last run" in html
    assert "braze · 3 runs, 2 succeeded" in html  # the destination read from syncs/a_to_braze.yml
    assert "unknown · 1 run," in html  # a sync whose file is gone
    # a tooltip per mark, with the exact figures
    assert re.search(r"<title>2026-11-29 16:00 UTC: 1 failed; 30 rows sent \(25 adds, 0 changes, 5 removes\), "
                     r"3 rejected — 3 rows rejected by braze</title>", html)
    assert "a_to_braze: 3 rows rejected — not a valid email" in html
    assert "no build recorded for this target yet".lower() in html.lower()


def test_user_data_is_escaped_and_nothing_is_loaded_from_anywhere(project, tmp_path):
    sync_yml(project, "s", "braze")
    record(project, [{"sync": "s", "audience": HOSTILE, "hours": 3, "members": 5, "adds": 5, "failed": 1,
                      "reason": "<script>alert('reason')</script>", "status": "failed",
                      "message": "cannot reach https://user:S3cretPw@crm.example.com/x"}])
    html = report(project, tmp_path)
    assert HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script" not in html.lower() and "&lt;script&gt;" in html
    assert "S3cretPw" not in html and "https://user:***@crm.example.com/x" in html
    # self-contained: no script, stylesheet, font, image or frame from anywhere
    tags = parsed_tags(html)
    assert not {name for name, _ in tags} & {"script", "link", "img", "iframe", "object", "embed", "image", "use"}
    assert not [attrs for _, attrs in tags if {"src", "href", "xlink:href", "action"} & set(attrs)]
    assert not [attrs for _, attrs in tags if any(name.startswith("on") for name in attrs)]  # no event handler
    assert not re.search(r"url\(|@import", html, re.I)
    assert "NOT_SET_ANYWHERE" not in html  # the sync file's ${VAR}s are never expanded or shown


def test_ten_thousand_runs_draw_as_bucketed_marks_in_a_small_file(project, tmp_path):
    """Past MAX_MARKS runs a series is aggregated into round time buckets: the page grows with syncs, not runs."""
    import pyarrow as pa

    rows = 10_000
    started = [NOW - dt.timedelta(minutes=10 * i) for i in range(rows)]
    with connect(project) as connection:
        state.migrate(connection)
        data = pa.table({
            "run_id": [f"r{i}" for i in range(rows)], "sync": [f"s{i % 4}" for i in range(rows)],
            "audience": [f"a{i % 2}" for i in range(rows)], "started_at": started,
            "finished_at": [moment + dt.timedelta(seconds=3) for moment in started],
            "status": ["failed" if i % 50 == 0 else "succeeded" for i in range(rows)],
            "members": [1000 + i % 97 for i in range(rows)], "acked_adds": [i % 13 for i in range(rows)],
        })
        with connection.scratch("many", data):
            connection.execute("""insert into revetl_state.runs (run_id, sync, audience, started_at, finished_at,
                status, members, acked_adds) select * from many""")
    html = report(project, tmp_path)
    assert len(html.encode()) < 1_000_000
    sync_chart = html[html.index("sync s0"):html.index("sync s1")]
    bars = sync_chart.count("<g><title>")  # one stacked bar per bucket
    assert 30 <= bars <= MAX_MARKS, bars
    # a day a bucket (69 days): s0 ran every 40 minutes, and failed every 100th run of all (25th of its own)
    assert re.search(r"<title>2026-\d\d-\d\d 00:00 UTC \+ 1 day, 36 runs: 2 failed, 34 succeeded; ", sync_chart)
    assert re.search(r"<title>2026-\d\d-\d\d 00:00 UTC \+ 1 day, 36 runs: 1 failed, 35 succeeded; ", sync_chart)
    assert "10,000" in html  # the figures at a glance count every run, not the marks


def test_the_window_leaves_older_runs_out(project, tmp_path):
    record(project, [{"sync": "s", "hours": 24 * 40, "members": 1}, {"sync": "s", "hours": 1, "members": 2}])
    assert read_history(project, days=30, clock=FakeClock(NOW.timestamp()).clock).runs[0].members == 2
    assert len(read_history(project, days=90, clock=FakeClock(NOW.timestamp()).clock).runs) == 2


def test_the_last_build_is_read_from_dbt_run_results(project, tmp_path):
    target = dbt_target_path(project)
    target.mkdir(parents=True)
    results = [{"unique_id": "model.revetl.profiles", "status": "success", "execution_time": 4.25},
               {"unique_id": "test.revetl.unique_profiles_id", "status": "fail", "execution_time": 0.5},
               {"unique_id": f"model.revetl.{HOSTILE}", "status": "success", "execution_time": 0.1}]
    (target / "run_results.json").write_text(json.dumps({"metadata": {"generated_at": "2026-11-30T11:00:00Z"},
                                                         "elapsed_time": 7.5, "results": results}))
    html = report(project, tmp_path)
    assert "last build: the 3 slowest of 3 nodes" in html and "model profiles: 4.25 s, success" in html
    assert "1 failed" in html and "2026-11-30 11:00:00 UTC · 7.5 s · 2 models, 1 tests" in html
    assert HOSTILE not in html
    (target / "run_results.json").write_text('{"results": [')
    assert f"{target / 'run_results.json'} could not be read as dbt&#x27;s run results" in report(project, tmp_path)


def test_the_collectors_volume_comes_from_the_files_it_landed(project, tmp_path, monkeypatch):
    import pyarrow as pa

    from revetl.landing.events import LANDING_SCHEMA
    from revetl.landing.parquet import write_table

    def landed(at: dt.datetime, count: int, prefix: str) -> None:
        rows = {name: [None] * count for name in LANDING_SCHEMA.names}
        rows.update(message_id=[f"{prefix}{at.timestamp()}{i}" for i in range(count)], type=["track"] * count,
                    event=["E"] * count, anonymous_id=["a"] * count, timestamp=[at] * count, received_at=[at] * count)
        write_table(project.landing_dir, pa.table(rows, schema=LANDING_SCHEMA), prefix=prefix)

    for hours, count in ((5, 7), (3, 11), (24 * 100, 13)):
        at = NOW - dt.timedelta(hours=hours)
        landed(at, count, f"collect-{int(at.timestamp() * 1e9)}-00ff00ff")
    landed(NOW, 50, "part")  # `revetl ingest`'s files are not the collector's
    collector = read_collector(project, NOW - dt.timedelta(days=90))
    assert collector is not None and sorted(rows for _, rows in collector.files) == [7, 11]
    html = report(project, tmp_path)
    assert "collector: events landed" in html and "18 events in 2 files · 0 log segments waiting" in html
    (project.root / "data" / "collector").mkdir(parents=True)  # revetl.yml's log_dir (REVETL_COLLECTOR_DIR unset)
    monkeypatch.delenv("REVETL_COLLECTOR_DIR")
    (project.root / "data" / "collector" / "1764000000000000000-00ff00ff.log").write_bytes(b"")
    monkeypatch.setattr("revetl.report.history.FOOTERS", 1)  # past it, rows are estimated from file sizes
    estimated = read_collector(project, NOW - dt.timedelta(days=90))
    assert estimated is not None and estimated.estimated and estimated.waiting_segments == 1
    assert estimated.files[0][1] == 7 and 1 <= estimated.files[1][1] < 11  # the first read, the second estimated
    assert "≈ " in report(project, tmp_path) and "1 log segment waiting" in report(project, tmp_path)


def test_the_report_command_writes_the_file_it_names(project, tmp_path, monkeypatch):
    import subprocess
    import sys

    record(project, [{"sync": "s", "hours": 1, "members": 3, "adds": 3}])
    out = tmp_path / "out" / "history.html"
    out.parent.mkdir()
    done = subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(project.root), "report", "--out",
                           str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}" in done.stdout and "1 run in the last 90 days" in done.stdout
    assert "sync s" in out.read_text() and not list(out.parent.glob(".*.tmp"))
    missing = subprocess.run([sys.executable, "-m", "revetl", "--project-dir", str(project.root), "report", "--out",
                              str(tmp_path / "no" / "such" / "dir" / "r.html")], capture_output=True, text=True)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "cannot write the report to" in missing.stderr
