"""The `revetl` command line: each command parses arguments and calls the library.

`app.py` holds the app, its global options and the one error handler (`main`): a RevetlError becomes
one red sentence and exit code 1; `--debug` shows the traceback instead. The commands are grouped by
what they act on, one module each (importing one registers its commands).
"""

from revetl.cli import alerts, audience_tests, audiences, data, governance, init, report, routes, schedule, syncs
from revetl.cli.app import app, main

# importing a module registers its commands
__all__ = ["alerts", "app", "audience_tests", "audiences", "data", "governance", "init", "main", "report", "routes",
           "schedule", "syncs"]
