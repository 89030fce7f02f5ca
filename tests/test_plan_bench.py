"""bench/plan_bench.py: each side's peak memory is that process's own, not its launcher's."""

from __future__ import annotations

import sys

from wh import REPO

sys.path.insert(0, str(REPO / "bench"))
import plan_bench  # noqa: E402  (bench/ is not a package)


def test_a_measured_process_reports_its_own_peak_memory_not_its_launchers() -> None:
    # The launcher holds 768 MB (pages touched, so resident) when it starts the measured process, as
    # it did after preparing a 10M-member warehouse in-process. The child itself needs ~10 MB.
    ballast = bytearray(768 << 20)
    ballast[::4096] = b"\1" * len(range(0, len(ballast), 4096))
    result = plan_bench.measure('import json\nresult = {"seconds": 0.0}\nprint(json.dumps(result))\n', "unused")
    del ballast
    assert result["rss_mb"] < 100, result
