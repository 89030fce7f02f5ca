"""`python -m revetl.emulators NAME [options]`: the same as `revetl emulate NAME [options]`."""

from __future__ import annotations

import sys

from revetl.cli import main

if __name__ == "__main__":
    sys.argv = ["revetl", "emulate", *sys.argv[1:]]
    main()
