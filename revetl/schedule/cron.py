"""Cron expressions, parsed by croniter: checked once when a file is read, then asked two questions.

An expression has the five fields of crontab(5) (minute, hour, day of month, month, day of week; names such
as `MON-FRI` and `JAN` allowed), or is one of `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`. Its
times are wall-clock times in the project's time zone (`schedule.timezone` in revetl.yml, UTC by default),
turned into UTC here: the scheduler compares and records UTC only. Resolution is the minute, the tick of
`revetl schedule run`; croniter's seconds field is refused.
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

__all__ = ["latest", "following", "problem", "zone"]

_FIELDS = "minute hour day-of-month month day-of-week"
_MINUTE = dt.timedelta(minutes=1)
_NAMED = ("@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually")


@functools.lru_cache(maxsize=256)  # a sync file is validated twice when read (its problems, then its model)
def problem(expression: str) -> str | None:
    """Why `expression` is not a schedule revetl can run, in a few words; None when it is one."""
    from croniter import croniter
    from croniter import CroniterError

    text = expression.strip()
    if not text:
        return f"is empty; write five fields ({_FIELDS}), e.g. \"0 * * * *\""
    if text.startswith("@") and text not in _NAMED:
        return f"{expression!r} is not a cron expression: the named ones are {', '.join(_NAMED)}"
    if not text.startswith("@") and len(text.split()) != 5:
        return f"{expression!r} has {len(text.split())} fields, not five ({_FIELDS}), e.g. \"0 * * * *\""
    try:
        croniter(text, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)).get_next(dt.datetime)
    except CroniterError as exc:
        reason = str(exc).removeprefix(f"[{text}] ")
        if "failed to find" in reason:
            reason = "no date ever matches it"
        elif reason.startswith("is not acceptable"):
            reason = "a field is out of range" if "out of range" in reason else "a field is not valid"
        return f"{expression!r} is not a cron expression ({_FIELDS}): {reason}"
    return None


@functools.lru_cache(maxsize=8)
def zone(name: str) -> ZoneInfo:
    """The time zone `name` (IANA, e.g. `Europe/Berlin`); ValueError with a sentence when unknown."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not a time zone (an IANA name such as UTC or Europe/Berlin)") from None


def latest(expression: str, now: dt.datetime, timezone: str) -> dt.datetime:
    """The latest time at or before `now` when `expression` fell due, in UTC (aware)."""
    from croniter import croniter

    after = _floor(now).astimezone(zone(timezone)) + _MINUTE  # get_prev is strict: a time due at `now` counts
    found = croniter(expression.strip(), after).get_prev(dt.datetime)
    return found.astimezone(dt.timezone.utc)


def following(expression: str, now: dt.datetime, timezone: str) -> dt.datetime:
    """The first time after `now` when `expression` falls due, in UTC (aware)."""
    from croniter import croniter

    found = croniter(expression.strip(), _floor(now).astimezone(zone(timezone))).get_next(dt.datetime)
    return found.astimezone(dt.timezone.utc)


def _floor(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        raise ValueError("the scheduler's clock must be time-zone aware")
    return moment.replace(second=0, microsecond=0)
