"""`revetl ingest`: good lines land, bad lines are reported by file, line and reason."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from disk import small_disk
from rich.console import Console

from revetl.config import Project
from revetl.landing.events import MAX_EVENT_BYTES
from revetl.landing.ingest import IngestReport, MAX_REJECT_DETAILS, Reject, _lines, ingest_files, print_report

NOW = dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


def clock() -> dt.datetime:
    return NOW


def write_lines(path: Path, lines: list[str | dict[str, Any]]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def sql(query: str) -> list[tuple[Any, ...]]:
    with duckdb.connect() as connection:
        return connection.execute(query).fetchall()


def landed(project: Project) -> list[dict[str, Any]]:
    """Every landed row (hive partition column included), ordered by message id."""
    return landed_in(project.landing_dir)


def landed_in(landing_dir: Path) -> list[dict[str, Any]]:
    glob = str(landing_dir / "**" / "*.parquet")
    with duckdb.connect() as connection:
        cursor = connection.execute(f"select * from read_parquet('{glob}', hive_partitioning = true) order by message_id")
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def track(message_id: str, **fields: Any) -> dict[str, Any]:
    return {"messageId": message_id, "type": "track", "event": "Report Generated", "userId": "u1", **fields}


def test_malformed_lines_are_reported_with_line_and_reason_while_good_lines_land(project: Project, tmp_path: Path) -> None:
    too_big = json.dumps(track("m-2", properties={"blob": "x" * MAX_EVENT_BYTES}))
    source = write_lines(tmp_path / "events.jsonl", [
        track("m-1"),
        "{not json",
        "",
        {"type": "page", "name": "Home", "messageId": "m-x"},
        {"type": "click", "userId": "u1", "messageId": "m-y"},
        too_big,
        {"type": "track", "userId": "u1", "messageId": "m-z"},
        "   ",
        track("m-3"),
    ])
    report = ingest_files(project, [source], clock=clock)

    assert (report.accepted, report.rejected) == (2, 5)
    assert [(r.line, r.reason.split(":")[0].split(";")[0]) for r in report.rejects] == [
        (2, "invalid JSON"),
        (4, "event has neither `userId` nor `anonymousId`"),
        (5, "unknown event type 'click'"),
        (6, f"event is {len(too_big)} bytes, over the {MAX_EVENT_BYTES}-byte limit"),
        (7, "a track event needs a non-empty `event` name"),
    ]
    assert all(r.file == source for r in report.rejects)
    assert [row["message_id"] for row in landed(project)] == ["m-1", "m-3"]


def test_the_size_limit_counts_the_bytes_of_the_raw_line(project: Project, tmp_path: Path) -> None:
    padding = MAX_EVENT_BYTES - len(json.dumps(track("m-1", properties={"p": ""})))
    exact = json.dumps(track("m-1", properties={"p": "x" * padding}))
    wide = json.dumps(track("m-2", properties={"p": "é" * (padding // 2 + 1)}), ensure_ascii=False)
    assert len(exact.encode()) == MAX_EVENT_BYTES < len(wide.encode()) and len(wide) < MAX_EVENT_BYTES
    report = ingest_files(project, [write_lines(tmp_path / "e.jsonl", [exact, wide])], clock=clock)
    assert report.accepted == 1
    assert report.rejects[0].line == 2 and "over the" in report.rejects[0].reason


def test_a_line_far_over_the_limit_is_skipped_without_losing_the_next_line(project: Project, tmp_path: Path) -> None:
    huge = json.dumps(track("m-1", properties={"p": "x" * 5_000_000}))
    report = ingest_files(project, [write_lines(tmp_path / "e.jsonl", [huge, track("m-2")])], clock=clock)
    assert (report.accepted, report.rejected) == (1, 1)
    assert report.rejects[0].reason.startswith(f"event is {len(huge)} bytes")
    assert [row["message_id"] for row in landed(project)] == ["m-2"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"type": "track", "event": "A", "userId": "u", "p": "\xff"}', "line is not valid UTF-8"),
        (b"[" * 100_00 + b"]" * 100_00, "invalid JSON: nested too deeply"),
        (b'{"type":"track","event":"A","userId":"u","properties":{"n":' + b"9" * 5000 + b"}}", "invalid JSON"),
        (b'{"type":"track","event":"A","userId":"u","properties":{"n":NaN}}', "`properties` holds NaN or Infinity"),
        (b"42", "an event must be a JSON object, not int"),
    ],
)
def test_lines_that_are_not_events_are_rejected_without_crashing(
    project: Project, tmp_path: Path, line: bytes, expected: str
) -> None:
    source = tmp_path / "e.jsonl"
    source.write_bytes(line + b"\n")
    report = ingest_files(project, [source], clock=clock)
    assert report.rejected == 1 and report.rejects[0].reason.startswith(expected)


def test_segment_camel_case_payload_lands_with_its_columns(project: Project, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "segment.jsonl", [{
        "messageId": "seg-1", "type": "identify", "userId": "u1", "anonymousId": "a1",
        "traits": {"email": "Alice@Acme.com ", "plan": "pro"}, "context": {"traits": {"email": "a@acme.com"}},
        "timestamp": "2024-04-30T09:00:00.250Z", "sentAt": "2024-04-30T09:00:01Z", "receivedAt": "2024-04-30T09:00:02Z",
        "integrations": {}, "version": 2,
    }, {
        "messageId": "seg-2", "type": "alias", "previousId": "a1", "userId": "u1", "timestamp": "2024-04-30T09:00:03Z",
    }, {
        "messageId": "seg-3", "type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"},
    }])
    report = ingest_files(project, [source], clock=clock)
    assert report.rejected == 0
    identify, alias, group = landed(project)
    assert identify["type"] == "identify" and (identify["user_id"], identify["anonymous_id"]) == ("u1", "a1")
    assert json.loads(identify["traits"]) == {"email": "Alice@Acme.com ", "plan": "pro"}
    assert json.loads(identify["context"])["traits"]["email"] == "a@acme.com"
    assert identify["timestamp"] == dt.datetime(2024, 4, 30, 9, 0, 0, 250000, tzinfo=dt.timezone.utc)
    assert identify["received_at"] == dt.datetime(2024, 4, 30, 9, 0, 2, tzinfo=dt.timezone.utc)
    assert str(identify["received_date"]) == "2024-04-30"
    assert (alias["previous_id"], alias["user_id"], alias["anonymous_id"]) == ("a1", "u1", None)
    # no receivedAt in the payload: the time of ingestion is the receipt time (and the timestamp)
    assert group["group_id"] == "g1" and group["received_at"] == NOW == group["timestamp"]


def test_rudderstack_payload_lands_with_its_columns(project: Project, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "rudder.jsonl", [{
        "messageId": "rud-1", "rudderId": "9f0c3a2e-0000-4000-8000-000000000001", "channel": "web",
        "type": "track", "event": "Payment Processed", "userId": "u7", "anonymousId": "anon-7",
        "properties": {"revenue": 1499.0, "currency": "USD"},
        "context": {"library": {"name": "RudderLabs JavaScript SDK", "version": "3.0.0"}},
        "originalTimestamp": "2024-04-29T23:59:58.000Z", "sentAt": "2024-04-29T23:59:59.000Z",
        "receivedAt": "2024-04-30T00:00:00.500Z", "request_ip": "10.0.0.1",
    }])
    assert ingest_files(project, [source], clock=clock).rejected == 0
    [row] = landed(project)
    assert (row["message_id"], row["type"], row["event"], row["user_id"], row["anonymous_id"]) == (
        "rud-1", "track", "Payment Processed", "u7", "anon-7")
    assert row["timestamp"] == dt.datetime(2024, 4, 29, 23, 59, 58, tzinfo=dt.timezone.utc)  # originalTimestamp
    assert str(row["received_date"]) == "2024-04-30"
    assert json.loads(row["properties"]) == {"revenue": 1499.0, "currency": "USD"}
    assert json.loads(row["context"])["library"]["name"] == "RudderLabs JavaScript SDK"


def test_gzip_input_is_read_whatever_its_name(project: Project, tmp_path: Path) -> None:
    lines = "".join(json.dumps(track(f"m-{i}")) + "\n" for i in range(3))
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    (tmp_path / "b.jsonl").write_bytes(gzip.compress(json.dumps(track("m-9")).encode()))  # no newline at the end
    report = ingest_files(project, [tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl"], clock=clock)
    assert (report.accepted, report.rejected) == (4, 0)
    assert [row["message_id"] for row in landed(project)] == ["m-0", "m-1", "m-2", "m-9"]


def test_a_truncated_gzip_file_keeps_what_was_read_and_reports_where_it_broke(project: Project, tmp_path: Path) -> None:
    lines = "".join(json.dumps(track(f"m-{i:05d}", properties={"i": i})) + "\n" for i in range(20_000))
    data = gzip.compress(lines.encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(data[: len(data) // 2])
    missing = tmp_path / "missing.jsonl"
    report = ingest_files(project, [tmp_path / "cut.jsonl.gz", missing], clock=clock)
    assert report.rejected == 2 and 0 < report.accepted < 20_000
    broken, absent = report.rejects
    assert broken.line == report.accepted + 1 and broken.reason.startswith("cannot read past this line")
    assert (absent.file, absent.line, absent.where) == (missing, 0, str(missing))
    assert absent.reason == "cannot read the file: No such file or directory"


def test_rows_land_in_chunks_one_file_per_received_date(project: Project, tmp_path: Path) -> None:
    days = ["2024-04-28", "2024-04-29"]
    lines = [track(f"m-{i}", receivedAt=f"{days[i % 2]}T10:00:00Z") for i in range(10)]
    report = ingest_files(project, [write_lines(tmp_path / "e.jsonl", lines)], clock=clock, chunk_rows=4)
    assert report.accepted == 10
    assert len(report.files_written) == 6  # chunks of 4, 4, 2 rows; each spans both dates
    assert all(path.exists() and path.parent.name.startswith("received_date=") for path in report.files_written)
    assert sum(pq.read_metadata(path).num_rows for path in report.files_written) == 10


def test_reject_details_are_capped_but_every_reject_is_counted(project: Project, tmp_path: Path) -> None:
    source = write_lines(tmp_path / "junk.jsonl", ["nope"] * (MAX_REJECT_DETAILS + 5))
    report = ingest_files(project, [source], clock=clock)
    assert report.rejected == MAX_REJECT_DETAILS + 5 and len(report.rejects) == MAX_REJECT_DETAILS


def render(report: IngestReport) -> str:
    out = io.StringIO()
    print_report(report, Console(file=out, width=120, color_system=None))
    return out.getvalue()


def test_report_shows_the_first_20_rejects_and_a_summary() -> None:
    rejects = tuple(Reject(Path("e.jsonl"), i, f"reason [bold]{i}[/]") for i in range(1, 31))
    text = render(IngestReport(accepted=12_345, rejected=30, files_written=(Path("a"), Path("b"), Path("c")), rejects=rejects))
    assert "e.jsonl:20" in text and "e.jsonl:21" not in text
    assert "reason [bold]1[/]" in text  # user data is shown as text, never as markup
    assert "first 20 of 30" in text
    assert text.rstrip().endswith("12,345 events landed in 3 files; 30 rejected")


def test_report_without_rejects_is_one_line() -> None:
    assert render(IngestReport(1, 0, (Path("a"),), ())) == "1 event landed in 1 file; 0 rejected\n"


def revetl_command() -> str:
    found = shutil.which("revetl") or str(Path(sys.executable).parent / "revetl")
    assert Path(found).exists(), "the revetl console script is not installed"
    return found


def test_the_cli_exits_non_zero_when_a_record_was_rejected(project: Project, tmp_path: Path) -> None:
    from revetl import cli

    source = write_lines(tmp_path / "e.jsonl", [track("m-1"), "oops"])
    argv = sys.argv
    sys.argv = ["revetl", "--project-dir", str(project.root), "ingest", str(source)]
    try:
        with pytest.raises(SystemExit) as info:
            cli.main()
    finally:
        sys.argv = argv
    assert info.value.code == 1
    assert [row["message_id"] for row in landed(project)] == ["m-1"]


@pytest.mark.slow
def test_kill_9_mid_ingest_leaves_only_complete_files_and_a_rerun_lands_everything(
    project: Project, tmp_path: Path
) -> None:
    count = 200_000
    source = tmp_path / "big.jsonl"
    with open(source, "w") as handle:
        for i in range(count):
            handle.write(json.dumps(track(
                f"m-{i:07d}", anonymousId=f"a-{i % 5000}", timestamp="2024-04-30T10:00:00.000Z",
                receivedAt=f"2024-04-{28 + i % 3:02d}T10:00:00.000Z", properties={"i": i},
                context={"library": {"name": "analytics.js"}, "ip": "10.0.0.1"},
            )) + "\n")
    command = [revetl_command(), "--project-dir", str(project.root), "ingest", str(source)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while not list(project.landing_dir.glob("**/*.parquet")):  # kill once the first chunk landed
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "no file landed in two minutes"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "ingest finished before it could be killed; use a bigger file"

    files = list(project.landing_dir.glob("**/*.parquet"))
    assert files
    for path in files:  # complete: footer readable and every row decodes
        assert pq.read_table(path).num_rows == pq.read_metadata(path).num_rows > 0
    glob = str(project.landing_dir / "**" / "*.parquet")
    [(partial,)] = sql(f"select count(*) from read_parquet('{glob}')")
    assert 0 < partial < count

    rerun = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    assert rerun.returncode == 0, rerun.stderr
    [(distinct, total)] = sql(f"select count(distinct message_id), count(*) from read_parquet('{glob}')")
    assert distinct == count and total == count + partial


def run_cli(project: Project, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`revetl --project-dir ROOT ARGS...` in a subprocess (the environment redirects its paths)."""
    command = [revetl_command(), "--project-dir", str(project.root), *args]
    env = {**os.environ, "COLUMNS": "1000"}  # long temporary paths stay on one line of the report
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def test_a_lone_surrogate_is_replaced_and_the_events_around_it_land_through_the_cli(
    project: Project, tmp_path: Path
) -> None:
    source = tmp_path / "e.jsonl"
    # json.dumps writes a lone surrogate as the escape `\ud800`, as JavaScript does for a cut emoji.
    write_lines(source, [track("m-1"), track("m-2", userId="u\ud800", properties={"title": "Hi \ud83d"}), track("m-3")])
    result = run_cli(project, "ingest", str(source))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "3 events landed in 1 file; 0 rejected" in result.stdout
    rows = landed(project)
    assert [row["message_id"] for row in rows] == ["m-1", "m-2", "m-3"]
    assert rows[1]["user_id"] == "u\ufffd" and json.loads(rows[1]["properties"]) == {"title": "Hi \ufffd"}


def reference_lines(data: bytes) -> list[tuple[int, bytes | None, int]]:
    """What `_lines` must yield: every line with content, numbered from 1, with its size; its bytes
    only when within the size limit (`_lines` may or may not keep those of a longer line)."""
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    bodies = [(n, line.rstrip(b"\r")) for n, line in enumerate(lines, 1) if line.strip()]
    return [(n, body if len(body) <= MAX_EVENT_BYTES else None, len(body)) for n, body in bodies]


@settings(max_examples=300, deadline=None)
@example(pieces=[b"z" * MAX_EVENT_BYTES, b"\r", b"\r", b"\r", b"\r\n"], block=2)  # found by hypothesis: not too long
@given(
    pieces=st.lists(
        st.sampled_from([b"\n", b"\r\n", b" ", b"\t", b"\x0b", b"\r", b"{}", b"x", b"\n" * 40, b"\n" * 300])
        | st.sampled_from([b"y" * (MAX_EVENT_BYTES + 10), b" " * (MAX_EVENT_BYTES + 10), b"z" * MAX_EVENT_BYTES]),
        max_size=60,
    ),
    block=st.sampled_from([1, 2, 3, 7, 64, 1000, 1 << 20]),
)
def test_blank_lines_are_skipped_in_bulk_with_every_line_number_kept(pieces: list[bytes], block: int) -> None:
    data = b"".join(pieces)
    found = [(n, body if size <= MAX_EVENT_BYTES else None, size) for n, body, size in _lines(io.BytesIO(data), block)]
    assert found == reference_lines(data)


@pytest.mark.slow
def test_a_gzip_of_hundreds_of_megabytes_of_blank_lines_is_skipped_at_reading_speed(
    project: Project, tmp_path: Path
) -> None:
    # 1 MB of gzip that expands to 384 MiB of blank lines around three events: read line by line,
    # this took minutes (`bench/RESULTS.md`); skipping blank runs a buffer at a time takes seconds.
    blank = b"\n" * (1 << 20)
    source = tmp_path / "padded.jsonl.gz"
    with gzip.open(source, "wb", compresslevel=1) as out:
        out.write((json.dumps(track("m-1")) + "\n").encode())
        for _ in range(128):
            out.write(blank)
        out.write(b"{broken\n")
        for _ in range(128):
            out.write(b"  \r\n" * (1 << 18))
        out.write((json.dumps(track("m-2")) + "\n").encode())
        for _ in range(128):
            out.write(blank)
    assert source.stat().st_size < 4_000_000
    result = run_cli(project, "ingest", str(source), timeout=180)
    assert result.returncode == 1, result.stderr  # the broken line is rejected
    broken_line = 2 + 128 * (1 << 20)
    assert f"padded.jsonl.gz:{broken_line} " in result.stdout
    assert "2 events landed in 1 file; 1 rejected" in result.stdout
    assert [row["message_id"] for row in landed(project)] == ["m-1", "m-2"]


@pytest.mark.slow
def test_a_full_disk_leaves_nothing_partial_visible_keeps_what_landed_and_says_so_in_one_sentence(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with small_disk(tmp_path / "disk", size_kib=640) as disk:
        monkeypatch.setenv("REVETL_LANDING_DIR", str(disk / "events"))
        small = write_lines(tmp_path / "small.jsonl", [track("early-1"), track("early-2")])
        assert run_cli(project, "ingest", str(small)).returncode == 0
        (earlier,) = disk.glob("events/*/*.parquet")
        # Incompressible properties: the chunk's Parquet cannot fit. Its first received date is
        # small and would fit alone: it must not land without the rest of its chunk.
        big = write_lines(tmp_path / "big.jsonl", [track("day1-1", receivedAt="2024-04-29T10:00:00Z")] + [
            track(f"day2-{i}", receivedAt="2024-04-30T10:00:00Z", properties={"r": os.urandom(150).hex()})
            for i in range(6000)
        ])
        result = run_cli(project, "ingest", str(big))
        assert result.returncode == 1
        assert "Traceback" not in result.stderr + result.stdout
        [message] = [line for line in result.stderr.splitlines() if line.strip()]
        assert message.startswith(f"error: could not land 6,001 events in {disk / 'events'}: No space left on device;")
        assert "none of them was written" in message and "the 0 events landed before them stay" in message
        assert sorted(p.name for p in disk.glob("events/**/*") if p.is_file()) == [earlier.name]  # no temp files
        assert [row["message_id"] for row in landed_in(disk / "events")] == ["early-1", "early-2"]
