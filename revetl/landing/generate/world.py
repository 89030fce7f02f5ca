"""The simulated world: companies, people and anonymous visitors, and what each does on a day.

People are scheduled in per-day buckets; `World.days()` runs the simulation day by day, each
active person or visitor emitting that day's calls into the `Stream`.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from revetl.landing.generate.catalog import Catalog, Script, json_text
from revetl.landing.generate.stream import DAY, HOUR, Day, Stream, iso

__all__ = ["JUNK_EMAIL", "PLANS", "World"]

JUNK_EMAIL = "test@test.com"
PLANS = ("free", "starter", "pro", "enterprise")
_LATE_SESSION = 0.01  # share of sessions
_BILLING_BUG = 0.02  # share of payments sent with the amount as text (against the tracking plan)
_PRICE = {"starter": 49.0, "pro": 199.0, "enterprise": 1499.0}

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

@dataclass(slots=True)
class Device:
    anon: str
    mobile: bool
    context: str


@dataclass(slots=True)
class Company:
    id: str
    name: str
    domain: str
    traits: str  # group traits JSON
    currency: str
    fx: float  # the plan's price in this currency, relative to USD


@dataclass(slots=True, eq=False)
class Person:
    """Someone who is, or becomes, a user; `live` simulates one active day of theirs."""

    uid: str
    email: str
    email_variant: str  # the same address as typed on another form: "Alice.Smith@Acmelabs.com "
    name: str
    company: Company
    plan: str
    devices: list[Device]
    signup_day: int | None  # None: a customer since before the window
    first_day: int
    last_day: int  # churned people are not active after this day
    log_idle: float  # log(1 - daily activity rate): the days between visits are geometric
    web: Script
    mobile: Script
    actions: int  # most actions in one session
    created_at: str  # ISO-8601, as the identify trait carries it
    seen: bool = False
    newsletter: bool = False
    alias_at_signup: bool = False
    new_uid: str | None = None
    rename_day: int | None = None
    upgrade_day: int | None = None
    next_payment: int = 0

    def live(self, world: World, day: int, midnight: int) -> int | None:
        """Emit this person's events for `day`; return the next day they are active, if any."""
        random, stream, catalog = world.random, world.stream, world.catalog
        if self.signup_day is not None and day < self.signup_day:
            world.browse(self.devices[0], midnight, self.email_variant if self.newsletter else None)
            self.newsletter = False
            return min(self.signup_day, day + 1 + int(random() * 3))
        device = self.devices[0] if len(self.devices) == 1 or random() < 0.6 else pick(self.devices, random)
        anon, context = device.anon, device.context
        t = midnight + int((7 + random() * 13) * HOUR)  # sessions start in working hours
        if day == self.signup_day:
            t = world.sign_up(self, device, t)
        elif not self.seen or random() < 0.15:  # apps identify on the first visit and on each login
            if self.seen:
                stream.emit("track", "Logged In", anon, self.uid, None, None, t, pick(catalog.logins, random),
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
            world.charge(self, t + 5000 if day == self.signup_day else midnight + int((1 + random() * 4) * HOUR))
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
class Visitor:
    """An anonymous visitor who never signs up; some type the junk email into the newsletter form."""

    device: Device
    visits: int
    junk_email: bool

    def live(self, world: World, day: int, midnight: int) -> int | None:
        email = None
        if self.junk_email:
            email = pick((JUNK_EMAIL, JUNK_EMAIL, JUNK_EMAIL, "Test@Test.com", " test@test.com"), world.random)
        world.browse(self.device, midnight, email)
        self.visits -= 1
        return day + 1 + int(world.random() * 10) if self.visits > 0 else None


def pick(items: Any, random: Any) -> Any:
    """random.choice without its checks and method lookups: this runs per event."""
    return items[int(random() * len(items))]


_NEW_PLANS = ("free",) * 14 + ("starter",) * 4 + ("pro",) * 2  # what people sign up for
_OLD_PLANS = ("free",) * 8 + ("starter",) * 5 + ("pro",) * 4 + ("enterprise",) * 3  # existing customers
_HEAVY = {"free": 0.05, "starter": 0.08, "pro": 0.15, "enterprise": 0.40}  # share of heavy users by plan


class World:
    """Companies, people and visitors, scheduled in per-day buckets; `days()` runs the simulation."""

    def __init__(self, users: int, days: int, seed: int, end: int) -> None:
        """`users` people over the `days` days before `end` (epoch milliseconds), drawn from `seed`."""
        rng = random.Random(seed)
        self.rng, self.random, self.ndays = rng, rng.random, days
        self.start = end - days * DAY
        self.catalog = Catalog(rng)
        self.stream = Stream(rng, self.start, end)
        self.buckets: list[list[Person | Visitor]] = [[] for _ in range(days)]
        self.companies = [self._company(i) for i in range(max(3, users // 7))]
        emails: set[str] = set()
        people = [self._person(i, emails) for i in range(users)]
        existing = [p for p in people if p.signup_day is None]
        self._share_devices(existing, count=max(2, users // 150))
        self._rename(existing, count=max(2, users // 300))
        for person in people:
            self.buckets[person.first_day].append(person)
        # Anonymous traffic: a third as many casual visitors, and 60+ strangers who all type the
        # same junk email (more than the default max_anonymous_ids_per_identifier of 50).
        casual, junk = users // 3, 60 + users // 40
        for i in range(casual + junk):
            self._visitor(junk=i >= casual)
        self.visitors = casual + junk

    def days(self) -> Iterator[Day]:
        """Simulate day after day; yield the rows received on each day."""
        for day in range(self.ndays):
            self.stream.day = day
            midnight = self.start + day * DAY
            bucket, self.buckets[day] = self.buckets[day], []
            for actor in bucket:
                following = actor.live(self, day, midnight)
                if following is not None and following < self.ndays:
                    self.buckets[following].append(actor)
            yield self.stream.take()

    # -- building

    def _anon(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _device(self, mobile: bool) -> Device:
        contexts = self.catalog.mobile_contexts if mobile else self.catalog.web_contexts
        return Device(self._anon(), mobile, pick(contexts, self.random))

    def _company(self, i: int) -> Company:
        rng = self.rng
        base, sector, series = _COMPANY[i % len(_COMPANY)], _SECTOR[i // len(_COMPANY) % len(_SECTOR)], ""
        if i >= len(_COMPANY) * len(_SECTOR):  # names run out: "Acme Labs 2", acmelabs2.com
            series = str(i // (len(_COMPANY) * len(_SECTOR)) + 1)
        name = f"{base.title()} {sector.title()}" + (f" {series}" if series else "")
        domain = f"{base}{sector}{series}.com"
        currency, fx = rng.choice(_CURRENCY)
        traits = json_text({"name": name, "industry": rng.choice(_INDUSTRY), "employees": rng.choice((8, 40, 200, 1200, 6000))})
        return Company(f"grp_{i:05d}", name, domain, traits, currency, fx)

    def _person(self, i: int, emails: set[str]) -> Person:
        rng, random, days = self.rng, self.random, self.ndays
        company = pick(self.companies, random)
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
        plan = pick(_NEW_PLANS if new else _OLD_PLANS, random)
        heavy = random() < _HEAVY[plan]
        rate = 0.5 if heavy else 0.18 if random() < 0.4 else 0.06
        catalog = self.catalog
        person = Person(
            uid=f"usr_{i:07d}", email=email, email_variant=variant, name=f"{first.title()} {last.title()}",
            company=company, plan=plan, devices=self._devices(), signup_day=signup_day, first_day=first_day,
            last_day=self._last_day(first_day if signup_day is None else signup_day + 1, plan, heavy, new),
            log_idle=math.log(1.0 - rate),
            web=catalog.heavy_web if heavy else catalog.web,
            mobile=catalog.heavy_mobile if heavy else catalog.mobile,
            actions=18 if heavy else 11,
            created_at=iso(self.start - int((30 + random() * 900) * DAY)),
            newsletter=new and random() < 0.2, alias_at_signup=new and random() < 0.3,
            next_payment=int(random() * 30) if not new else (signup_day or 0),
        )
        if plan != "enterprise" and random() < (0.3 if heavy else 0.08):
            person.upgrade_day = first_day + int(random() * (days - first_day))
        return person

    def _devices(self) -> list[Device]:
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

    def _share_devices(self, people: list[Person], count: int) -> None:
        """A family laptop or kiosk: one anonymousId that 2-3 people log in on."""
        for _ in range(count if len(people) >= 3 else 0):
            shared = self._device(mobile=False)
            for person in self.rng.sample(people, 2 + (self.random() < 0.3)):
                person.devices[0] = shared  # their main device, so it is used on their first visit

    def _rename(self, people: list[Person], count: int) -> None:
        """Users created under the old system's numeric ids, renamed (aliased) mid-window."""
        candidates = [p for p in people if p.last_day - p.first_day > 10]
        for person in self.rng.sample(candidates, min(count, len(candidates))):
            person.new_uid = person.uid
            person.uid = str(9_000_000 + int(person.uid.removeprefix("usr_")))
            person.rename_day = person.first_day + 1 + int(self.random() * (person.last_day - person.first_day - 1))

    def _visitor(self, junk: bool) -> None:
        visitor = Visitor(self._device(mobile=False), 1 if junk else 1 + int(self.random() * 3), junk)
        self.buckets[int(self.random() * self.ndays)].append(visitor)

    # -- calls the people make

    def browse(self, device: Device, midnight: int, newsletter_email: str | None) -> None:
        """An anonymous visit to the marketing site; optionally the newsletter form is filled."""
        random, emit = self.random, self.stream.emit
        t = midnight + int((6 + random() * 15) * HOUR)
        t = self.stream.session(device.anon, None, device.context, self.catalog.browsing, 1 + int(random() * 4), t)
        if newsletter_email is not None:
            name, props = self.catalog.blog
            emit("page", name, device.anon, None, None, None, t, props, None, device.context)
            traits = json_text({"email": newsletter_email, "newsletter": True})
            emit("identify", None, device.anon, None, None, None, t + 20_000, None, traits, device.context)

    def sign_up(self, person: Person, device: Device, t: int) -> int:
        """Pricing -> Sign Up -> identify, Signed Up, group (and sometimes alias); returns the time."""
        emit, anon, context = self.stream.emit, device.anon, device.context
        for name, props in (self.catalog.pricing, self.catalog.signup):
            emit("page", name, anon, None, None, None, t, props, None, context)
            t += 15_000 + int(self.random() * 60_000)
        person.created_at, person.seen = iso(t), True
        t = self.identify(person, anon, context, t + 1000)
        signed_up = json_text({"plan": person.plan, "method": pick(("email", "google", "sso"), self.random)})
        emit("track", "Signed Up", anon, person.uid, None, None, t + 300, signed_up, None, context)
        emit("group", None, anon, person.uid, person.company.id, None, t + 600, None, person.company.traits, context)
        if person.alias_at_signup:
            emit("alias", None, anon, person.uid, None, anon, t + 900, None, None, context)
        return t + 1200

    def identify(self, person: Person, anon: str, context: str, t: int) -> int:
        """An identify with the person's traits; the email is sometimes typed differently, and some
        apps send it only as context.traits."""
        random = self.random
        email = person.email_variant if random() < 0.25 else person.email
        traits: dict[str, Any] = {"email": email, "name": person.name, "plan": person.plan,
                                  "company": person.company.name, "created_at": person.created_at}
        if random() < 0.15:
            del traits["email"]
            context = context[:-1] + ',"traits":' + json_text({"email": email}) + "}"
        self.stream.emit("identify", None, anon, person.uid, None, None, t, None, json_text(traits), context)
        return t + 500

    def upgrade(self, person: Person, anon: str, context: str, t: int) -> int:
        """Subscription Upgraded to the next plan, then an identify carrying the new plan."""
        to_plan = PLANS[PLANS.index(person.plan) + 1]
        props = json_text({"from_plan": person.plan, "to_plan": to_plan})
        self.stream.emit("track", "Subscription Upgraded", anon, person.uid, None, None, t, props, None, context)
        person.plan, person.upgrade_day = to_plan, None
        return self.identify(person, anon, context, t + 700)

    def charge(self, person: Person, t: int) -> None:
        """The billing backend's monthly `Payment Processed`: server-side, so userId only."""
        company = person.company
        revenue: float | str = round(_PRICE[person.plan] * company.fx, 2)
        if self.stream.flaw_random() < _BILLING_BUG:  # a billing release that sent amounts as text
            revenue = f"{revenue:.2f}"
        props = json_text({"revenue": revenue, "currency": company.currency, "plan": person.plan})
        self.stream.emit("track", "Payment Processed", None, person.uid, None, None, t, props, None,
                         self.catalog.server_context)
