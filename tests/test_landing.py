"""Landing writes are atomic: a process killed at any point of `write_table` leaves no partial
`*.parquet` visible, and none at all before every date's file is complete."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

# A child lands two received dates and SIGKILLs itself at one point of the write, counted in
# calls to the Parquet writer's `write_table` (1: the first date, 2: the second) or renames.
CHILD = textwrap.dedent(
    """
    import datetime as dt, os, signal, sys
    import pyarrow.parquet as pq
    from revetl.landing import parquet as landing
    from revetl.landing.events import normalize

    landing_dir, where, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    calls = {"write": 0, "replace": 0}

    def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    real_write, real_replace = pq.write_table, os.replace

    def write_table(table, where_to, **kwargs):
        calls["write"] += 1
        if where == "mid-write" and calls["write"] == count:
            where_to.write(b"PAR1 half a file")
            where_to.flush()
            die()
        real_write(table, where_to, **kwargs)
        if where == "after-write" and calls["write"] == count:
            die()

    def replace(source, target):
        calls["replace"] += 1
        if where == "before-rename" and calls["replace"] == count:
            die()
        real_replace(source, target)

    pq.write_table, os.replace = write_table, replace
    now = dt.datetime(2026, 5, 2, 12, tzinfo=dt.timezone.utc)
    rows = [
        normalize({"type": "track", "event": "e", "userId": "u", "messageId": f"m{i}",
                   "receivedAt": f"2026-05-0{1 + i % 2}T10:00:00Z"}, now)
        for i in range(1000)
    ]
    landing.write_rows(landing_dir, rows)
    print("finished")
    """
)


@pytest.mark.parametrize(
    ("where", "count", "visible_files"),
    [
        ("mid-write", 1, 0),
        ("after-write", 1, 0),
        ("mid-write", 2, 0),
        ("after-write", 2, 0),  # both complete and fsync'd, neither renamed yet
        ("before-rename", 1, 0),
        ("before-rename", 2, 1),  # between the two renames: one complete date is visible
    ],
)
def test_a_kill_at_any_point_of_a_write_leaves_only_complete_files_visible(
    tmp_path: Path, where: str, count: int, visible_files: int
) -> None:
    landing_dir = tmp_path / "events"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(landing_dir), where, str(count)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == -signal.SIGKILL, result.stderr
    visible = sorted(landing_dir.glob("*/*.parquet"))
    assert len(visible) == visible_files
    for path in visible:
        assert pq.read_table(path).num_rows == pq.read_metadata(path).num_rows == 500
