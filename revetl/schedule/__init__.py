"""The scheduler: `revetl schedule run` (one crontab line) runs what the `schedule:` fields make due.

    settings.py  `schedule:` and `build:` in revetl.yml (time zone, parallel limit, the build's schedule)
    cron.py      cron expressions (croniter): checked, and the latest and next times they fall due
    jobs.py      the project's scheduled jobs, read from the sync files and revetl.yml, with their problems
    ledger.py    what the scheduler decided, in `revetl_state.schedule_runs` (migration 4), and a small
                 file beside the warehouse that lets a minute with nothing due skip the warehouse
    runner.py    one tick: decide what is due, skip what is still running, build first, run in parallel
    report.py    the tables `schedule run` and `schedule list` print, and `schedule crontab`'s lines

Nothing here is imported by `revetl --help`; a tick with nothing due loads no warehouse driver, dbt,
Arrow or sqlglot (bench/schedule_bench.py).
"""
