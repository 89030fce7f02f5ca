"""A synthetic but realistic B2B SaaS event stream: `revetl generate` (demo, tests, benchmarks).

What it simulates, so that identity resolution, traits and audiences all have work to do:
- People (`users`) at companies. New people browse anonymously first (`page` with only an
  anonymousId; some type their email into the newsletter form), then sign up: `identify`
  (userId, anonymousId, traits email/name/plan/company/created_at), `Signed Up`, `group`, and for
  some an `alias` anonymousId -> userId. People who were customers before the window identify and
  `group` on their first visit. Each person has 1-3 devices (web, some mobile with `screen`
  events); later events carry the userId and that device's anonymousId.
- Product events: `Logged In` (with an identify), `Dashboard Viewed`, `Report Generated`,
  `Invite Sent`, `Payment Processed` (numeric revenue, currency) for paid plans,
  `Subscription Upgraded` (from_plan, to_plan) followed by an identify with the new plan.
- Identity traps: a few user->user renames (`alias` previousId = old userId), shared devices
  (one anonymousId used by 2-3 people), junk identifiers ("undefined", "null", "0", "",
  "anonymous", the all-zero UUID) on about 0.3% of events, a junk email (`test@test.com`)
  typed by 60+ anonymous visitors, and email case/whitespace variants, sometimes sent in
  `context.traits` instead of `traits`.
- Delivery noise: about 0.5% of events are re-sent with the same messageId and received later;
  about 1% (whole sessions, as a mobile queue flushes them) arrive 1-5 days late.
- Activity patterns for the demo audiences: paid customers who stopped 31-60 days before `end`
  (churn risk), heavy enterprise users with 10+ `Report Generated` in the last 30 days (power
  users), and people who signed up in the last 14 days (new signups).

Volume: about 101 events per user over 90 days, anonymous visitors included (measured: 202,422
events for the default 2,000 users; 1,022,984 for 10,000; 16,266,437 for 160,000); events grow
linearly with users and roughly with days.

Determinism: every choice comes from `random.Random(seed)`; message ids are a seeded prefix plus a
counter and anonymous ids are drawn from the same generator, so the same (users, days, seed, end)
gives the same rows, and two seeds give disjoint message ids. History covers the `days` days
before `end` (default: today 00:00 UTC); every event's timestamp is before `end`.

Speed: the simulation runs day by day over a bucket of the people active that day. A session's events are appended to column lists in
bulk (no object per event; JSON texts are built once per page, device or property variant), and
message ids and receipt times are derived per day with Arrow compute. Each day lands as one file
(its rows share one received date), so memory holds the people plus one day of rows. Measured on
one core: about 150k events/s end to end (16M events in 110 s, 730 MB peak), of which the
simulation alone runs at about 300k events/s.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import gzip
import json
import math
import random
import time
import uuid
from collections import defaultdict
from itertools import accumulate
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from revetl.landing import parquet as landing
from revetl.config import Project
from revetl.landing.events import EARLIEST_TIME, LANDING_SCHEMA, check_time

__all__ = ["GenerateOptions", "GenerateSummary", "JUNK_EMAIL", "JUNK_IDS", "PLANS", "generate_events"]

JUNK_EMAIL = "test@test.com"
JUNK_IDS = ("undefined", "null", "0", "", "anonymous", "00000000-0000-0000-0000-000000000000")
PLANS = ("free", "starter", "pro", "enterprise")

_DAY = 86_400_000  # all times are integer milliseconds since the epoch, as the SDKs send them
_HOUR = 3_600_000
_LATE_SESSION, _RESENT, _JUNK = 0.01, 0.005, 0.003  # shares of sessions, events, events
_PRICE = {"starter": 49.0, "pro": 199.0, "enterprise": 1499.0}
_LATE_IDS = 10**11  # late rows count from here, so their ids never meet the on-time rows' ids
_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # the text normalize writes
_quote = json.encoder.encode_basestring  # a JSON string literal, without the encoder's overhead

# A row in landing-column order, timestamp and received_at as epoch milliseconds.
Row = tuple[Any, ...]
# What a session does: (type, event or page/screen name, properties JSON).
Action = tuple[str, str, str]


@dataclass(frozen=True)
class GenerateOptions:
    """What to simulate. `end` is when history ends (exclusive, UTC); default today 00:00 UTC."""

    users: int = 2000
    days: int = 90
    seed: int = 7
    end: dt.datetime | None = None
    jsonl: Path | None = None  # write wire-format JSON lines here instead of landing Parquet

    def __post_init__(self) -> None:
        if self.users < 1 or self.days < 1:
            raise ValueError(f"users and days must be at least 1, not {self.users} and {self.days}")
        if self.end is not None:  # the landing contract's time range, as for every ingested event
            end = self.end if self.end.tzinfo else self.end.replace(tzinfo=dt.timezone.utc)
            now = dt.datetime.now(dt.timezone.utc)
            check_time(end, "--end", now)
            days = min(self.days, (end - EARLIEST_TIME).days + 1)  # no OverflowError for a huge --days
            check_time(end - dt.timedelta(days=days), "--end minus --days", now)

    def end_ms(self) -> int:
        end = self.end or dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        end = end if end.tzinfo else end.replace(tzinfo=dt.timezone.utc)
        return round(end.timestamp() * 1000)


@dataclass(frozen=True)
class GenerateSummary:
    """What `generate_events` wrote; printable with rich."""

    events: int
    users: int
    visitors: int
    files: tuple[Path, ...]
    seconds: float

    def __rich__(self) -> str:
        rate = self.events / self.seconds if self.seconds else 0.0
        files = f"{len(self.files):,} file{'' if len(self.files) == 1 else 's'}"
        return (
            f"Generated {self.events:,} events for {self.users:,} users and {self.visitors:,} anonymous "
            f"visitors in {files} ({self.seconds:.1f} s, {rate:,.0f} events/s)"
        )


def generate_events(project: Project, options: GenerateOptions, console: Console | None = None) -> GenerateSummary:
    """Simulate the event stream and land it (or write it as JSON lines to `options.jsonl`)."""
    started = time.perf_counter()
    world = _World(options)
    # The people live as long as the run; freezing them keeps the garbage collector from walking
    # them again and again while millions of short-lived lists pass by (about 20% faster).
    gc.freeze()
    try:
        return _run(world, project, options, console, started)
    finally:
        gc.unfreeze()


def _run(world: _World, project: Project, options: GenerateOptions, console: Console | None,
         started: float) -> GenerateSummary:
    sink: _Sink = _JsonlSink(options.jsonl) if options.jsonl else _ParquetSink(project.landing_dir)
    progress = Progress(
        TextColumn("generating"), BarColumn(), MofNCompleteColumn(), TextColumn("days, {task.description}"),
        TimeElapsedColumn(), console=console, transient=True, disable=console is None,
    )
    with progress, sink:
        task = progress.add_task("0 events", total=options.days)
        for day in world.days():
            # A day is the unit of writing: its rows share one received date, so each day lands
            # as one file, and memory holds one day (16M events over 90 days: ~180k rows).
            sink.write(day, world.stream.prefix)
            progress.update(task, advance=1, description=f"{sink.rows:,} events")
    return GenerateSummary(
        events=sink.rows, users=options.users, visitors=world.visitors, files=tuple(sink.files),
        seconds=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------- the stream

_COLUMNS = ("type", "event", "anonymous_id", "user_id", "group_id", "previous_id", "timestamp",
            "properties", "traits", "context")  # simulated; message_id and received_at are derived


@dataclass(slots=True)
class _Day:
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
            yield (_message_id(prefix, n), kind[i], event[i], anon[i], user[i], group[i], previous[i],
                   ts[i], ts[i] + _latency(n), props[i], traits[i], context[i])
        yield from self.extras


def _message_id(prefix: str, n: int) -> str:
    return f"{prefix}{n:012d}"  # _day_table builds the same text with Arrow compute


def _latency(n: int) -> int:
    return 30 + (n * 7919 & 1023)  # 30 ms to 1 s between the call and its receipt, varied per event


class _Stream:
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
        self._reset()

    def _reset(self) -> None:
        (self.kind, self.event, self.anon, self.user, self.group, self.previous, self.ts, self.props,
         self.traits, self.context) = self.columns = tuple([] for _ in _COLUMNS)

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

    def session(self, anon: str | None, user: str | None, context: str, script: _Script, count: int, t: int,
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

    def _send_late(self, anon: str | None, user: str | None, context: str, script: _Script, start: int,
                   end: int, times: list[int]) -> bool:
        """A device offline for days: the whole session is received 1-5 days after it happened."""
        flushed = times[-1] + _DAY + int(self.random() * 4 * _DAY)
        day = (flushed - self.start) // _DAY
        # Received within that one day, so that each day's rows still share one received date.
        flushed = min(flushed, self.start + (day + 1) * _DAY - 10 * len(times))
        if flushed + 10 * len(times) >= self.end:
            return False  # would arrive after the end of history: send it on time instead
        rows = self.later[day]
        actions = zip(script.kinds[start:end], script.events[start:end], script.props[start:end], times)
        for i, (kind, event, props, ts) in enumerate(actions):
            self.late_count += 1
            mid = _message_id(self.prefix, _LATE_IDS + self.late_count)
            rows.append((mid, kind, event, anon, user, None, None, ts, flushed + i * 10, props, None, context))
        return True

    def take(self) -> _Day:
        """Today's rows, with sampled re-sends and junk ids applied; starts the next day's columns."""
        count = len(self.kind)
        self._junk(count)  # first, so that a re-sent copy carries the same (junk) ids as its original
        self._resend(count)
        day = _Day(self.first, self.columns, self.later.pop(self.day, []))
        self.first += count
        self._reset()
        return day

    def _sampled(self, count: int, share: float) -> Iterator[int]:
        """Positions in [0, count) chosen independently with probability `share` (geometric gaps)."""
        log_keep, random = math.log(1.0 - share), self.random
        i = int(math.log(1.0 - random()) / log_keep)
        while i < count:
            yield i
            i += 1 + int(math.log(1.0 - random()) / log_keep)

    def _resend(self, count: int) -> None:
        """An SDK retry after a lost response: a copy with the same messageId, received later."""
        for i in self._sampled(count, _RESENT):
            n = self.first + i
            received = self.ts[i] + _latency(n) + 60_000 + int(self.random() * 2 * _DAY)
            if received < self.end:
                self.later[(received - self.start) // _DAY].append((
                    _message_id(self.prefix, n), self.kind[i], self.event[i], self.anon[i], self.user[i],
                    self.group[i], self.previous[i], self.ts[i], received, self.props[i], self.traits[i],
                    self.context[i]))

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


def _day_table(day: _Day, prefix: str) -> pa.Table:
    """One day's rows as an Arrow table: on-time rows with ids and receipt times computed, then
    the late and re-sent ones."""
    arrays = dict(zip(_COLUMNS, day.columns))
    count = len(day.columns[0])
    numbers = pa.array(range(day.first, day.first + count), pa.int64())
    ts = pa.array(arrays["timestamp"], pa.int64())
    latency = pc.add(pc.bit_wise_and(pc.multiply(numbers, 7919), 1023), 30)  # as _latency()
    derived = {
        "message_id": pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers.cast(pa.string()), 12, "0"), ""),
        "timestamp": ts,
        "received_at": pc.add(ts, latency),
    }
    on_time = pa.table([
        _to_arrow(derived[field.name] if field.name in derived else arrays[field.name], field.type)
        for field in LANDING_SCHEMA
    ], schema=LANDING_SCHEMA)
    return pa.concat_tables([on_time, _rows_table(day.extras)]) if day.extras else on_time


def _rows_table(rows: list[Row]) -> pa.Table:
    columns = list(zip(*rows)) if rows else [[] for _ in LANDING_SCHEMA]
    return pa.table([_to_arrow(c, f.type) for c, f in zip(columns, LANDING_SCHEMA)], schema=LANDING_SCHEMA)


def _to_arrow(values: Any, type_: pa.DataType) -> pa.Array:
    if pa.types.is_timestamp(type_):  # epoch milliseconds -> the landing timestamp type
        values = values if isinstance(values, pa.Array) else pa.array(values, pa.int64())
        return values.cast(pa.timestamp("ms", tz="UTC")).cast(type_)
    return values if isinstance(values, pa.Array) else pa.array(values, type_)


# --------------------------------------------------------------------------- sinks


class _Sink:
    rows = 0
    files: list[Path]

    def __enter__(self) -> _Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def write(self, day: _Day, prefix: str) -> None:
        raise NotImplementedError


class _ParquetSink(_Sink):
    """One Arrow table per chunk; one atomic file per day (each day is one received date)."""

    def __init__(self, landing_dir: Path) -> None:
        self.landing_dir = landing_dir
        self.files = []
        landing.sweep_temporary(landing_dir)

    def write(self, day: _Day, prefix: str) -> None:
        # One received date (two when `end` is not midnight), so write_table makes one file.
        table = _day_table(day, prefix)
        self.files += landing.write_table(self.landing_dir, table, prefix="generated")
        self.rows += table.num_rows


class _JsonlSink(_Sink):
    """Wire-format JSON lines, as a Segment export writes them; gzipped when the name ends in .gz."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.files = [self.path]
        self.handle: IO[str] | None = None

    def __enter__(self) -> _JsonlSink:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.suffix == ".gz":
            self.handle = gzip.open(self.path, "wt", encoding="utf-8")
        else:
            self.handle = open(self.path, "w", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()

    def write(self, day: _Day, prefix: str) -> None:
        assert self.handle is not None, "use the sink as a context manager"
        self.handle.writelines(map(_wire_line, day.rows(prefix)))
        self.rows += len(day)


def _wire_line(row: Row) -> str:
    """One landing row back to the camelCase payload that normalize() turns into that row."""
    mid, kind, event, anon, user, group, previous, ts, received, props, traits, context = row
    parts = [f'{{"messageId":"{mid}","type":"{kind}"']
    if event is not None:
        parts.append(f',"{"name" if kind in ("page", "screen") else "event"}":{_quote(event)}')
    for key, value in (("anonymousId", anon), ("userId", user), ("groupId", group), ("previousId", previous)):
        if value is not None:
            parts.append(f',"{key}":{_quote(value)}')
    sent = max(ts, received - 25)  # a queued (late) event is sent just before it is received
    parts.append(f',"timestamp":"{_iso(ts)}","sentAt":"{_iso(sent)}","receivedAt":"{_iso(received)}"')
    for key, value in (("properties", props), ("traits", traits), ("context", context)):
        if value is not None:
            parts.append(f',"{key}":{value}')
    parts.append("}\n")
    return "".join(parts)


def _iso(ms: int) -> str:
    """Epoch milliseconds -> "2024-06-30T14:05:09.123Z"; arithmetic, as datetime is 3x slower."""
    day, milli = divmod(ms, _DAY)
    seconds, milli = divmod(milli, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{_date(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{milli:03d}Z"


@functools.lru_cache(maxsize=4096)
def _date(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


# --------------------------------------------------------------------------- the vocabulary

_FIRST = (
    "alice bob carol dave erin frank grace heidi ivan judy karl laura mike nina oscar peggy quinn "
    "rachel sam tara uma victor wendy xavier yara zoe liam emma noah olivia ava lucas mia ethan "
    "sofia mateo chloe leo hana omar priya wei"
).split()
_LAST = (
    "smith jones garcia miller davis lopez wilson anderson thomas taylor moore martin lee walker "
    "hall young king wright scott green baker adams nelson hill kim nguyen patel chen müller rossi "
    "silva kowalski ivanova sato okafor haddad novak larsen"
).split()
_COMPANY = "acme globex initech umbrella hooli stark wayne wonka soylent tyrell cyberdyne vandelay".split()
_SECTOR = "analytics labs systems logistics health capital foods media robotics energy cloud".split()
_INDUSTRY = ("software", "retail", "finance", "healthcare", "logistics", "media")
_CURRENCY = (("USD", 1.0), ("USD", 1.0), ("USD", 1.0), ("EUR", 0.92), ("GBP", 0.79))
_MARKETING = (("Home", "/"), ("Pricing", "/pricing"), ("Features", "/features"), ("Blog", "/blog"),
              ("Customers", "/customers"), ("Security", "/security"))
_APP = (("Dashboard", "/app"), ("Reports", "/app/reports"), ("Settings", "/app/settings"),
        ("Billing", "/app/billing"), ("Team", "/app/team"))
_SCREENS = ("Home", "Reports", "Report Detail", "Dashboards", "Notifications", "Settings")
_DASHBOARDS = ("Revenue", "Pipeline", "Marketing", "Product Usage", "Executive Summary", "Support")
_REPORTS = ("funnel", "retention", "revenue", "cohort", "usage", "churn")


class _Catalog:
    """Every JSON text the stream reuses (pages, property variants, device contexts), built once."""

    def __init__(self, rng: random.Random) -> None:
        def page(name: str, path: str, host: str, referrer: str) -> tuple[str, str]:
            url = f"https://{host}{path}"
            return name, _json({"path": path, "url": url, "title": f"{name} | Stackwise", "referrer": referrer})

        referrers = ("", "https://www.google.com/", "https://www.linkedin.com/", "https://news.ycombinator.com/")
        self.marketing = [page(n, p, "www.stackwise.io", ref) for n, p in _MARKETING for ref in referrers]
        self.blog = page("Blog", "/blog/reverse-etl-explained", "www.stackwise.io", "https://www.google.com/")
        self.signup = page("Sign Up", "/signup", "www.stackwise.io", "https://www.stackwise.io/pricing")
        self.pricing = page("Pricing", "/pricing", "www.stackwise.io", "")
        self.server_context = _json({"library": {"name": "analytics-python", "version": "2.3.2"}})
        self.logins = [_json({"method": m}) for m in ("password", "password", "google", "sso")]
        self.web_contexts = [self._web_context(rng) for _ in range(400)]
        self.mobile_contexts = [self._mobile_context(rng) for _ in range(200)]

        dashboards = [("track", "Dashboard Viewed", _json({"dashboard": d, "dashboard_id": f"dash_{i:03d}"}))
                      for i, d in enumerate(_DASHBOARDS)]
        reports = [("track", "Report Generated", _json({"report_type": t, "format": f, "rows": rng.randrange(10, 50_000)}))
                   for t in _REPORTS for f in ("web", "csv", "pdf")]
        invites = [("track", "Invite Sent", _json({"invitee_role": r})) for r in ("member", "member", "admin", "viewer")]
        pages = [("page", name, _json({"path": path, "url": f"https://app.stackwise.io{path}",
                                        "title": f"{name} | Stackwise", "referrer": ""})) for name, path in _APP]
        screens = [("screen", name, _json({"name": name})) for name in _SCREENS]
        app_gaps, browse_gaps = (3_000, 63_000), (5_000, 95_000)  # ms between two actions
        self.web = _Script.draw(rng, [(2, pages), (6, dashboards), (4, reports), (0.5, invites)], app_gaps)
        self.heavy_web = _Script.draw(rng, [(1, pages), (5, dashboards), (10, reports), (0.5, invites)], app_gaps)
        self.mobile = _Script.draw(rng, [(2, screens), (5, dashboards), (2, reports)], app_gaps)
        self.heavy_mobile = _Script.draw(rng, [(1, screens), (4, dashboards), (7, reports)], app_gaps)
        marketing = [("page", name, props) for name, props in self.marketing]
        self.browsing = _Script.draw(rng, [(1, marketing)], browse_gaps)
        self.home_page: Action = ("page", *page("Dashboard", "/app", "app.stackwise.io", ""))
        self.home_screen: Action = ("screen", "Home", _json({"name": "Home"}))

    @staticmethod
    def _web_context(rng: random.Random) -> str:
        browser = rng.choice(("Chrome/124.0.0.0", "Firefox/125.0", "Version/17.4 Safari/605.1.15", "Edg/124.0.0.0"))
        system = rng.choice(("Macintosh; Intel Mac OS X 10_15_7", "Windows NT 10.0; Win64; x64", "X11; Linux x86_64"))
        return _json({
            "library": {"name": "analytics.js", "version": "next-1.64.0"},
            "userAgent": f"Mozilla/5.0 ({system}) AppleWebKit/537.36 (KHTML, like Gecko) {browser}",
            "ip": f"{rng.randrange(11, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "locale": rng.choice(("en-US", "en-GB", "de-DE", "fr-FR", "es-ES")),
            "timezone": rng.choice(("America/New_York", "America/Los_Angeles", "Europe/London", "Europe/Berlin")),
        })

    @staticmethod
    def _mobile_context(rng: random.Random) -> str:
        ios = rng.random() < 0.6
        return _json({
            "library": {"name": "analytics-ios" if ios else "analytics-android", "version": "4.1.8" if ios else "4.11.3"},
            "app": {"name": "Stackwise", "version": "3.2.1", "build": "321"},
            "device": {"type": "ios" if ios else "android",
                       "model": rng.choice(("iPhone14,2", "iPhone15,3")) if ios else rng.choice(("Pixel 8", "SM-S911B"))},
            "os": {"name": "iOS" if ios else "Android", "version": rng.choice(("17.4", "17.5")) if ios else "14"},
            "ip": f"{rng.randrange(11, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "network": {"wifi": rng.random() < 0.7},
        })


@dataclass(slots=True)
class _Script:
    """A long run of actions drawn once with their weights, and the gaps between them, as columns.

    A session is a random window of it: a few list slices instead of two random() calls and a
    tuple per event. With thousands of actions, windows rarely repeat.
    """

    kinds: list[str]
    events: list[str]
    props: list[str]
    gaps: list[int]

    @classmethod
    def draw(cls, rng: random.Random, weighted: list[tuple[float, list[Action]]], gaps: tuple[int, int],
             size: int = 8192) -> _Script:
        # In the table each group's share is its weight; its variants take turns within that share.
        table = [group[i % len(group)] for weight, group in weighted for i in range(round(weight * 24))]
        actions = [table[int(rng.random() * len(table))] for _ in range(size)]
        kinds, events, props = (list(column) for column in zip(*actions))
        return cls(kinds, events, props, [rng.randrange(*gaps) for _ in range(size)])


# --------------------------------------------------------------------------- the people


@dataclass(slots=True)
class _Device:
    anon: str
    mobile: bool
    context: str


@dataclass(slots=True)
class _Company:
    id: str
    name: str
    domain: str
    traits: str  # group traits JSON
    currency: str
    fx: float  # the plan's price in this currency, relative to USD


@dataclass(slots=True, eq=False)
class _Person:
    """Someone who is, or becomes, a user; `live` simulates one active day of theirs."""

    uid: str
    email: str
    email_variant: str  # the same address as typed on another form: "Alice.Smith@Acmelabs.com "
    name: str
    company: _Company
    plan: str
    devices: list[_Device]
    signup_day: int | None  # None: a customer since before the window
    first_day: int
    last_day: int  # churned people are not active after this day
    log_idle: float  # log(1 - daily activity rate): the days between visits are geometric
    web: _Script
    mobile: _Script
    actions: int  # most actions in one session
    created_at: str  # ISO-8601, as the identify trait carries it
    seen: bool = False
    newsletter: bool = False
    alias_at_signup: bool = False
    new_uid: str | None = None
    rename_day: int | None = None
    upgrade_day: int | None = None
    next_payment: int = 0

    def live(self, world: _World, day: int, midnight: int) -> int | None:
        """Emit this person's events for `day`; return the next day they are active, if any."""
        random, stream, catalog = world.random, world.stream, world.catalog
        if self.signup_day is not None and day < self.signup_day:
            world.browse(self.devices[0], midnight, self.email_variant if self.newsletter else None)
            self.newsletter = False
            return min(self.signup_day, day + 1 + int(random() * 3))
        device = self.devices[0] if len(self.devices) == 1 or random() < 0.6 else _pick(self.devices, random)
        anon, context = device.anon, device.context
        t = midnight + int((7 + random() * 13) * _HOUR)  # sessions start in working hours
        if day == self.signup_day:
            t = world.sign_up(self, device, t)
        elif not self.seen or random() < 0.15:  # apps identify on the first visit and on each login
            if self.seen:
                stream.emit("track", "Logged In", anon, self.uid, None, None, t, _pick(catalog.logins, random),
                            None, context)
            t = world.identify(self, anon, context, t + 800)
            if not self.seen:
                stream.emit("group", None, anon, self.uid, self.company.id, None, t, None, self.company.traits,
                            context)
                t += 500
            self.seen = True
        if self.plan != "free" and day >= self.next_payment:
            # Billing runs at night (so before a rename later today), except on the day of signing
            # up, when the first charge follows the signup.
            world.charge(self, t + 5000 if day == self.signup_day else midnight + int((1 + random() * 4) * _HOUR))
            self.next_payment = day + 30
        if self.rename_day is not None and day >= self.rename_day and self.new_uid:
            # The old system's numeric id is merged into the new one, as Segment's alias does.
            stream.emit("alias", None, anon, self.new_uid, None, self.uid, t + 10_000, None, None, context)
            self.uid, self.rename_day = self.new_uid, None
            t = world.identify(self, anon, context, t + 11_000)
        if self.upgrade_day is not None and day >= self.upgrade_day:
            t = world.upgrade(self, anon, context, t + 13_000)

        kind, event, props = catalog.home_screen if device.mobile else catalog.home_page
        stream.emit(kind, event, anon, self.uid, None, None, t, props, None, context)
        script = self.mobile if device.mobile else self.web
        stream.session(anon, self.uid, context, script, 1 + int(random() * self.actions), t,
                       late=random() < _LATE_SESSION)
        following = day + 1 + int(math.log(1.0 - random()) / self.log_idle)
        return following if following <= self.last_day else None


@dataclass(slots=True, eq=False)
class _Visitor:
    """An anonymous visitor who never signs up; some type the junk email into the newsletter form."""

    device: _Device
    visits: int
    junk_email: bool

    def live(self, world: _World, day: int, midnight: int) -> int | None:
        email = None
        if self.junk_email:
            email = _pick((JUNK_EMAIL, JUNK_EMAIL, JUNK_EMAIL, "Test@Test.com", " test@test.com"), world.random)
        world.browse(self.device, midnight, email)
        self.visits -= 1
        return day + 1 + int(world.random() * 10) if self.visits > 0 else None


def _pick(items: Any, random: Any) -> Any:
    """random.choice without its checks and method lookups: this runs per event."""
    return items[int(random() * len(items))]


# --------------------------------------------------------------------------- the world

_NEW_PLANS = ("free",) * 14 + ("starter",) * 4 + ("pro",) * 2  # what people sign up for
_OLD_PLANS = ("free",) * 8 + ("starter",) * 5 + ("pro",) * 4 + ("enterprise",) * 3  # existing customers
_HEAVY = {"free": 0.05, "starter": 0.08, "pro": 0.15, "enterprise": 0.40}  # share of heavy users by plan


class _World:
    """Companies, people and visitors, scheduled in per-day buckets; `days()` runs the simulation."""

    def __init__(self, options: GenerateOptions) -> None:
        rng = random.Random(options.seed)
        self.rng, self.random, self.ndays = rng, rng.random, options.days
        end = options.end_ms()
        self.start = end - options.days * _DAY
        self.catalog = _Catalog(rng)
        self.stream = _Stream(rng, self.start, end)
        self.buckets: list[list[_Person | _Visitor]] = [[] for _ in range(options.days)]
        self.companies = [self._company(i) for i in range(max(3, options.users // 7))]
        emails: set[str] = set()
        people = [self._person(i, emails) for i in range(options.users)]
        existing = [p for p in people if p.signup_day is None]
        self._share_devices(existing, count=max(2, options.users // 150))
        self._rename(existing, count=max(2, options.users // 300))
        for person in people:
            self.buckets[person.first_day].append(person)
        # Anonymous traffic: a third as many casual visitors, and 60+ strangers who all type the
        # same junk email (more than the default max_anonymous_ids_per_identifier of 50).
        casual, junk = options.users // 3, 60 + options.users // 40
        for i in range(casual + junk):
            self._visitor(junk=i >= casual)
        self.visitors = casual + junk

    def days(self) -> Iterator[_Day]:
        """Simulate day after day; yield the rows received on each day."""
        for day in range(self.ndays):
            self.stream.day = day
            midnight = self.start + day * _DAY
            bucket, self.buckets[day] = self.buckets[day], []
            for actor in bucket:
                following = actor.live(self, day, midnight)
                if following is not None and following < self.ndays:
                    self.buckets[following].append(actor)
            yield self.stream.take()

    # -- building

    def _anon(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _device(self, mobile: bool) -> _Device:
        contexts = self.catalog.mobile_contexts if mobile else self.catalog.web_contexts
        return _Device(self._anon(), mobile, _pick(contexts, self.random))

    def _company(self, i: int) -> _Company:
        rng = self.rng
        base, sector, series = _COMPANY[i % len(_COMPANY)], _SECTOR[i // len(_COMPANY) % len(_SECTOR)], ""
        if i >= len(_COMPANY) * len(_SECTOR):  # names run out: "Acme Labs 2", acmelabs2.com
            series = str(i // (len(_COMPANY) * len(_SECTOR)) + 1)
        name = f"{base.title()} {sector.title()}" + (f" {series}" if series else "")
        domain = f"{base}{sector}{series}.com"
        currency, fx = rng.choice(_CURRENCY)
        traits = _json({"name": name, "industry": rng.choice(_INDUSTRY), "employees": rng.choice((8, 40, 200, 1200, 6000))})
        return _Company(f"grp_{i:05d}", name, domain, traits, currency, fx)

    def _person(self, i: int, emails: set[str]) -> _Person:
        rng, random, days = self.rng, self.random, self.ndays
        company = _pick(self.companies, random)
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        local = f"{first}.{last.replace('ü', 'ue')}"
        email = f"{local}@{company.domain}"
        if email in emails:  # two Alice Smiths at Acme get different mailboxes, as in real life
            email = f"{local}{i}@{company.domain}"
        emails.add(email)
        variant = email.title().replace(".Com", ".com") + " "  # "Alice.Smith@Acmelabs.com "

        new = random() < 0.35
        signup_day = int(random() * days) if new else None
        first_day = max(0, signup_day - int(random() * 5)) if signup_day is not None else int(random() * min(7, days))
        plan = _pick(_NEW_PLANS if new else _OLD_PLANS, random)
        heavy = random() < _HEAVY[plan]
        rate = 0.5 if heavy else 0.18 if random() < 0.4 else 0.06
        catalog = self.catalog
        person = _Person(
            uid=f"usr_{i:07d}", email=email, email_variant=variant, name=f"{first.title()} {last.title()}",
            company=company, plan=plan, devices=self._devices(), signup_day=signup_day, first_day=first_day,
            last_day=self._last_day(first_day if signup_day is None else signup_day + 1, plan, heavy, new),
            log_idle=math.log(1.0 - rate),
            web=catalog.heavy_web if heavy else catalog.web,
            mobile=catalog.heavy_mobile if heavy else catalog.mobile,
            actions=18 if heavy else 11,
            created_at=_iso(self.start - int((30 + random() * 900) * _DAY)),
            newsletter=new and random() < 0.2, alias_at_signup=new and random() < 0.3,
            next_payment=int(random() * 30) if not new else (signup_day or 0),
        )
        if plan != "enterprise" and random() < (0.3 if heavy else 0.08):
            person.upgrade_day = first_day + int(random() * (days - first_day))
        return person

    def _devices(self) -> list[_Device]:
        random = self.random
        devices = [self._device(mobile=random() < 0.15)]
        for _ in range((random() < 0.45) + (random() < 0.2)):
            devices.append(self._device(mobile=random() < 0.6))
        return devices

    def _last_day(self, earliest: int, plan: str, heavy: bool, new: bool) -> int:
        """The last day someone is active: most never churn; paying customers who do churn stop
        31-60 days before the end, which is what the churn-risk audience looks for."""
        random, days = self.random, self.ndays
        if heavy or random() >= 0.3:
            return days - 1
        if not new and plan != "free" and days > 31 and random() < 0.6:
            low = max(earliest, days - 60)
            return max(low, days - 31 - int(random() * (days - 30 - low)))
        return min(days - 1, earliest + int(random() * (days - earliest)))

    def _share_devices(self, people: list[_Person], count: int) -> None:
        """A family laptop or kiosk: one anonymousId that 2-3 people log in on."""
        for _ in range(count if len(people) >= 3 else 0):
            shared = self._device(mobile=False)
            for person in self.rng.sample(people, 2 + (self.random() < 0.3)):
                person.devices[0] = shared  # their main device, so it is used on their first visit

    def _rename(self, people: list[_Person], count: int) -> None:
        """Users created under the old system's numeric ids, renamed (aliased) mid-window."""
        candidates = [p for p in people if p.last_day - p.first_day > 10]
        for person in self.rng.sample(candidates, min(count, len(candidates))):
            person.new_uid = person.uid
            person.uid = str(9_000_000 + int(person.uid.removeprefix("usr_")))
            person.rename_day = person.first_day + 1 + int(self.random() * (person.last_day - person.first_day - 1))

    def _visitor(self, junk: bool) -> None:
        visitor = _Visitor(self._device(mobile=False), 1 if junk else 1 + int(self.random() * 3), junk)
        self.buckets[int(self.random() * self.ndays)].append(visitor)

    # -- calls the people make

    def browse(self, device: _Device, midnight: int, newsletter_email: str | None) -> None:
        """An anonymous visit to the marketing site; optionally the newsletter form is filled."""
        random, emit = self.random, self.stream.emit
        t = midnight + int((6 + random() * 15) * _HOUR)
        t = self.stream.session(device.anon, None, device.context, self.catalog.browsing, 1 + int(random() * 4), t)
        if newsletter_email is not None:
            name, props = self.catalog.blog
            emit("page", name, device.anon, None, None, None, t, props, None, device.context)
            traits = _json({"email": newsletter_email, "newsletter": True})
            emit("identify", None, device.anon, None, None, None, t + 20_000, None, traits, device.context)

    def sign_up(self, person: _Person, device: _Device, t: int) -> int:
        """Pricing -> Sign Up -> identify, Signed Up, group (and sometimes alias); returns the time."""
        emit, anon, context = self.stream.emit, device.anon, device.context
        for name, props in (self.catalog.pricing, self.catalog.signup):
            emit("page", name, anon, None, None, None, t, props, None, context)
            t += 15_000 + int(self.random() * 60_000)
        person.created_at, person.seen = _iso(t), True
        t = self.identify(person, anon, context, t + 1000)
        signed_up = _json({"plan": person.plan, "method": _pick(("email", "google", "sso"), self.random)})
        emit("track", "Signed Up", anon, person.uid, None, None, t + 300, signed_up, None, context)
        emit("group", None, anon, person.uid, person.company.id, None, t + 600, None, person.company.traits, context)
        if person.alias_at_signup:
            emit("alias", None, anon, person.uid, None, anon, t + 900, None, None, context)
        return t + 1200

    def identify(self, person: _Person, anon: str, context: str, t: int) -> int:
        """An identify with the person's traits; the email is sometimes typed differently, and some
        apps send it only as context.traits."""
        random = self.random
        email = person.email_variant if random() < 0.25 else person.email
        traits: dict[str, Any] = {"email": email, "name": person.name, "plan": person.plan,
                                  "company": person.company.name, "created_at": person.created_at}
        if random() < 0.15:
            del traits["email"]
            context = context[:-1] + ',"traits":' + _json({"email": email}) + "}"
        self.stream.emit("identify", None, anon, person.uid, None, None, t, None, _json(traits), context)
        return t + 500

    def upgrade(self, person: _Person, anon: str, context: str, t: int) -> int:
        """Subscription Upgraded to the next plan, then an identify carrying the new plan."""
        to_plan = PLANS[PLANS.index(person.plan) + 1]
        props = _json({"from_plan": person.plan, "to_plan": to_plan})
        self.stream.emit("track", "Subscription Upgraded", anon, person.uid, None, None, t, props, None, context)
        person.plan, person.upgrade_day = to_plan, None
        return self.identify(person, anon, context, t + 700)

    def charge(self, person: _Person, t: int) -> None:
        """The billing backend's monthly `Payment Processed`: server-side, so userId only."""
        company = person.company
        props = _json({"revenue": round(_PRICE[person.plan] * company.fx, 2), "currency": company.currency,
                       "plan": person.plan})
        self.stream.emit("track", "Payment Processed", None, person.uid, None, None, t, props, None,
                         self.catalog.server_context)
