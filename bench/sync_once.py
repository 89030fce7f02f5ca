"""One run of bench/sync_bench.py's first part (N Braze adds, fresh warehouse and emulator), printed only.

For same-hour comparisons of two versions of the code, run alternately:
    .venv/bin/python bench/sync_once.py                                   # this checkout
    cd OTHER && PYTHONPATH=OTHER /path/to/.venv/bin/python /path/to/bench/sync_once.py
(`python -m revetl` puts the working directory first on sys.path, so each runs its own tree.)
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.getcwd(), "bench"))  # the sync_bench.py of the tree being measured
import sync_bench  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    root = sync_bench.project(args.rows)
    with sync_bench.emulator("--no-rate-limit") as served:
        sync_bench.write_sync(root, served["url"], unlimited=True)
        run = {**sync_bench.run_sync(root), **sync_bench.last_run(root)}
    print(f"{os.getcwd()}: {run['rows'] / run['seconds']:,.0f} rows/s, {run['seconds']:.1f} s, "
          f"CPU {run['cpu']:.1f} s, peak {run['rss_mb']:.0f} MB", flush=True)


if __name__ == "__main__":
    main()
