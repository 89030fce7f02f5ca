"""The event stream over time: simulated calls become one day's rows, with message ids, receipt
times, re-sends, late sessions and junk identifiers.

All times are integer milliseconds since the epoch, as the SDKs send them. A row is a tuple in
landing-column order; the rows of one day are kept as columns (`Day`) until a sink writes them.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import random
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from revetl.landing.generate.catalog import Script

__all__ = ["COLUMNS", "DAY", "HOUR", "JUNK_IDS", "Day", "Row", "Stream", "iso", "message_id", "receipt_latency"]

JUNK_IDS = ("undefined", "null", "0", "", "anonymous", "00000000-0000-0000-0000-000000000000")
DAY = 86_400_000  # all times are integer milliseconds since the epoch, as the SDKs send them
HOUR = 3_600_000
_RESENT, _JUNK, _FLAWED = 0.005, 0.003, 0.002  # shares of events
_LATE_IDS = 10**11  # late rows count from here, so their ids never meet the on-time rows' ids

# A row in landing-column order, timestamp and received_at as epoch milliseconds.
Row = tuple[Any, ...]

COLUMNS = ("type", "event", "anonymous_id", "user_id", "group_id", "previous_id", "timestamp",
           "properties", "traits", "context")  # simulated; message_id and received_at are derived


@dataclass(slots=True)
class Day:
    """The rows received on one day: the on-time rows simulated that day, as columns (row i has
    message number `first + i`), and late or re-sent rows from earlier days, as Rows."""

    first: int
    columns: tuple[list[Any], ...]
    extras: list[Row]

    def __len__(self) -> int:
        return len(self.columns[0]) + len(self.extras)

    def rows(self, prefix: str) -> Iterator[Row]:
        """Every row as a Row (slow; for JSON lines and tests)."""
        kind, event, anon, user, group, previous, ts, props, traits, context = self.columns
        for i in range(len(kind)):
            n = self.first + i
            yield (message_id(prefix, n), kind[i], event[i], anon[i], user[i], group[i], previous[i],
                   ts[i], ts[i] + receipt_latency(n), props[i], traits[i], context[i])
        yield from self.extras


def message_id(prefix: str, n: int) -> str:
    return f"{prefix}{n:012d}"  # _day_table builds the same text with Arrow compute


def receipt_latency(n: int) -> int:
    return 30 + (n * 7919 & 1023)  # 30 ms to 1 s between the call and its receipt, varied per event


class Stream:
    """Simulated calls -> the columns of today's rows; re-sends, late sessions and junk ids.

    `emit` appends one event, `session` a run of actions sharing identifiers and context; both are
    the hot path, so they only append to lists. Re-sends and junk identifiers are applied to a few
    sampled rows when the day is taken, not decided per event.
    """

    def __init__(self, rng: random.Random, start: int, end: int) -> None:
        self.random = rng.random
        # UUID-shaped: a seeded 24-character prefix + a 12-digit counter; unique within a run and
        # disjoint across seeds, without drawing 128 random bits per event.
        self.prefix = str(uuid.UUID(int=rng.getrandbits(128), version=4))[:24]
        self.start, self.end, self.day = start, end, 0
        self.first = 0  # message number of today's first on-time row
        self.late_count = 0
        self.later: dict[int, list[Row]] = defaultdict(list)  # day received -> rows
        # Flaws have a generator of their own (seeded from this one's prefix), so that adding them
        # left every other draw, and so every other event, as it was.
        self.flaw_random = random.Random(self.prefix).random
        self._reset()

    def _reset(self) -> None:
        (self.kind, self.event, self.anon, self.user, self.group, self.previous, self.ts, self.props,
         self.traits, self.context) = self.columns = tuple([] for _ in COLUMNS)

    def emit(self, kind: str, event: str | None, anon: str | None, user: str | None, group: str | None,
             previous: str | None, ts: int, props: str | None, traits: str | None, context: str | None) -> None:
        self.kind.append(kind)
        self.event.append(event)
        self.anon.append(anon)
        self.user.append(user)
        self.group.append(group)
        self.previous.append(previous)
        self.ts.append(ts)
        self.props.append(props)
        self.traits.append(traits)
        self.context.append(context)

    def session(self, anon: str | None, user: str | None, context: str, script: Script, count: int, t: int,
                late: bool = False) -> int:
        """`count` actions after time `t`, a random window of `script`; returns the last one's time."""
        start = int(self.random() * (len(script.kinds) - count))
        end = start + count
        times = list(accumulate(script.gaps[start:end], initial=t))
        del times[0]
        if late and self._send_late(anon, user, context, script, start, end, times):
            return times[-1]
        self.kind += script.kinds[start:end]
        self.event += script.events[start:end]
        self.props += script.props[start:end]
        self.ts += times
        self.anon += [anon] * count
        self.user += [user] * count
        self.context += [context] * count
        nothing = [None] * count
        self.group += nothing
        self.previous += nothing
        self.traits += nothing
        return times[-1]

    def _send_late(self, anon: str | None, user: str | None, context: str, script: Script, start: int,
                   end: int, times: list[int]) -> bool:
        """A device offline for days: the whole session is received 1-5 days after it happened."""
        flushed = times[-1] + DAY + int(self.random() * 4 * DAY)
        day = (flushed - self.start) // DAY
        # Received within that one day, so that each day's rows still share one received date.
        flushed = min(flushed, self.start + (day + 1) * DAY - 10 * len(times))
        if flushed + 10 * len(times) >= self.end:
            return False  # would arrive after the end of history: send it on time instead
        rows = self.later[day]
        actions = zip(script.kinds[start:end], script.events[start:end], script.props[start:end], times)
        for i, (kind, event, props, ts) in enumerate(actions):
            self.late_count += 1
            mid = message_id(self.prefix, _LATE_IDS + self.late_count)
            rows.append((mid, kind, event, anon, user, None, None, ts, flushed + i * 10, props, None, context))
        return True

    def take(self) -> Day:
        """Today's rows, with sampled re-sends and junk ids applied; starts the next day's columns."""
        count = len(self.kind)
        self._junk(count)  # first, so that a re-sent copy carries the same (junk) ids as its original
        self._flaw(count)  # ... and the same flaw
        self._resend(count)
        day = Day(self.first, self.columns, self.later.pop(self.day, []))
        self.first += count
        self._reset()
        return day

    def _sampled(self, count: int, share: float, draw: Any = None) -> Iterator[int]:
        """Positions in [0, count) chosen independently with probability `share` (geometric gaps)."""
        log_keep, random = math.log(1.0 - share), draw or self.random
        i = int(math.log(1.0 - random()) / log_keep)
        while i < count:
            yield i
            i += 1 + int(math.log(1.0 - random()) / log_keep)

    def _resend(self, count: int) -> None:
        """An SDK retry after a lost response: a copy with the same messageId, received later."""
        for i in self._sampled(count, _RESENT):
            n = self.first + i
            received = self.ts[i] + receipt_latency(n) + 60_000 + int(self.random() * 2 * DAY)
            if received < self.end:
                self.later[(received - self.start) // DAY].append((
                    message_id(self.prefix, n), self.kind[i], self.event[i], self.anon[i], self.user[i],
                    self.group[i], self.previous[i], self.ts[i], received, self.props[i], self.traits[i],
                    self.context[i]))

    def _flaw(self, count: int) -> None:
        """A buggy client build sends events against the tracking plan (tracking_plans/stackwise.yml):
        a typo'd property, a misnamed event, a login method or a role the plan does not know (the
        billing backend's bug, revenue as text, is World.charge's)."""
        for i in self._sampled(count, _FLAWED, self.flaw_random):
            event, props = self.event[i], self.props[i]
            if self.kind[i] != "track" or props is None:
                continue
            if event == "Report Generated":
                self.props[i] = props.replace('"report_type"', '"report_typo"', 1)
            elif event == "Dashboard Viewed":
                self.event[i] = "dashboard_viewed"
            elif event == "Logged In":
                self.props[i] = '{"method":"magic_link"}'
            elif event == "Invite Sent":
                self.props[i] = '{"invitee_role":"owner"}'

    def _junk(self, count: int) -> None:
        """A broken integration sends a junk identifier in place of a real one."""
        for i in self._sampled(count, _JUNK):
            if self.kind[i] not in ("track", "page", "screen"):
                continue
            junk = JUNK_IDS[int(self.random() * len(JUNK_IDS))]
            anon, user = self.anon[i], self.user[i]
            if anon is not None and user is not None and self.random() < 0.5:
                self.user[i] = junk
            elif anon is not None and (user is not None or junk):  # an event needs one non-blank id
                self.anon[i] = junk


def iso(ms: int) -> str:
    """Epoch milliseconds -> "2024-06-30T14:05:09.123Z"; arithmetic, as datetime is 3x slower."""
    day, milli = divmod(ms, DAY)
    seconds, milli = divmod(milli, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{_date(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{milli:03d}Z"


@functools.lru_cache(maxsize=4096)
def _date(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()
