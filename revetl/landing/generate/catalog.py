"""What the simulated people do: pages, screens, product events and device contexts, each JSON
text built once, and the long weighted scripts that sessions are cut from."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

__all__ = ["Action", "Catalog", "Script", "json_text"]

json_text = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # the text normalize writes

# What a session does: (type, event or page/screen name, properties JSON).
Action = tuple[str, str, str]

_MARKETING = (("Home", "/"), ("Pricing", "/pricing"), ("Features", "/features"), ("Blog", "/blog"),
              ("Customers", "/customers"), ("Security", "/security"))
_APP = (("Dashboard", "/app"), ("Reports", "/app/reports"), ("Settings", "/app/settings"),
        ("Billing", "/app/billing"), ("Team", "/app/team"))
_SCREENS = ("Home", "Reports", "Report Detail", "Dashboards", "Notifications", "Settings")
_DASHBOARDS = ("Revenue", "Pipeline", "Marketing", "Product Usage", "Executive Summary", "Support")
_REPORTS = ("funnel", "retention", "revenue", "cohort", "usage", "churn")


class Catalog:
    """Every JSON text the stream reuses (pages, property variants, device contexts), built once."""

    def __init__(self, rng: random.Random) -> None:
        def page(name: str, path: str, host: str, referrer: str) -> tuple[str, str]:
            url = f"https://{host}{path}"
            return name, json_text({"path": path, "url": url, "title": f"{name} | Stackwise", "referrer": referrer})

        referrers = ("", "https://www.google.com/", "https://www.linkedin.com/", "https://news.ycombinator.com/")
        self.marketing = [page(n, p, "www.stackwise.io", ref) for n, p in _MARKETING for ref in referrers]
        self.blog = page("Blog", "/blog/reverse-etl-explained", "www.stackwise.io", "https://www.google.com/")
        self.signup = page("Sign Up", "/signup", "www.stackwise.io", "https://www.stackwise.io/pricing")
        self.pricing = page("Pricing", "/pricing", "www.stackwise.io", "")
        self.server_context = json_text({"library": {"name": "analytics-python", "version": "2.3.2"}})
        self.logins = [json_text({"method": m}) for m in ("password", "password", "google", "sso")]
        self.web_contexts = [self._web_context(rng) for _ in range(400)]
        self.mobile_contexts = [self._mobile_context(rng) for _ in range(200)]

        dashboards = [("track", "Dashboard Viewed", json_text({"dashboard": d, "dashboard_id": f"dash_{i:03d}"}))
                      for i, d in enumerate(_DASHBOARDS)]
        reports = [("track", "Report Generated", json_text({"report_type": t, "format": f, "rows": rng.randrange(10, 50_000)}))
                   for t in _REPORTS for f in ("web", "csv", "pdf")]
        invites = [("track", "Invite Sent", json_text({"invitee_role": r})) for r in ("member", "member", "admin", "viewer")]
        pages = [("page", name, json_text({"path": path, "url": f"https://app.stackwise.io{path}",
                                        "title": f"{name} | Stackwise", "referrer": ""})) for name, path in _APP]
        screens = [("screen", name, json_text({"name": name})) for name in _SCREENS]
        app_gaps, browse_gaps = (3_000, 63_000), (5_000, 95_000)  # ms between two actions
        self.web = Script.draw(rng, [(2, pages), (6, dashboards), (4, reports), (0.5, invites)], app_gaps)
        self.heavy_web = Script.draw(rng, [(1, pages), (5, dashboards), (10, reports), (0.5, invites)], app_gaps)
        self.mobile = Script.draw(rng, [(2, screens), (5, dashboards), (2, reports)], app_gaps)
        self.heavy_mobile = Script.draw(rng, [(1, screens), (4, dashboards), (7, reports)], app_gaps)
        marketing = [("page", name, props) for name, props in self.marketing]
        self.browsing = Script.draw(rng, [(1, marketing)], browse_gaps)
        self.home_page: Action = ("page", *page("Dashboard", "/app", "app.stackwise.io", ""))
        self.home_screen: Action = ("screen", "Home", json_text({"name": "Home"}))

    @staticmethod
    def _web_context(rng: random.Random) -> str:
        browser = rng.choice(("Chrome/124.0.0.0", "Firefox/125.0", "Version/17.4 Safari/605.1.15", "Edg/124.0.0.0"))
        system = rng.choice(("Macintosh; Intel Mac OS X 10_15_7", "Windows NT 10.0; Win64; x64", "X11; Linux x86_64"))
        return json_text({
            "library": {"name": "analytics.js", "version": "next-1.64.0"},
            "userAgent": f"Mozilla/5.0 ({system}) AppleWebKit/537.36 (KHTML, like Gecko) {browser}",
            "ip": f"{rng.randrange(11, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "locale": rng.choice(("en-US", "en-GB", "de-DE", "fr-FR", "es-ES")),
            "timezone": rng.choice(("America/New_York", "America/Los_Angeles", "Europe/London", "Europe/Berlin")),
        })

    @staticmethod
    def _mobile_context(rng: random.Random) -> str:
        ios = rng.random() < 0.6
        return json_text({
            "library": {"name": "analytics-ios" if ios else "analytics-android", "version": "4.1.8" if ios else "4.11.3"},
            "app": {"name": "Stackwise", "version": "3.2.1", "build": "321"},
            "device": {"type": "ios" if ios else "android",
                       "model": rng.choice(("iPhone14,2", "iPhone15,3")) if ios else rng.choice(("Pixel 8", "SM-S911B"))},
            "os": {"name": "iOS" if ios else "Android", "version": rng.choice(("17.4", "17.5")) if ios else "14"},
            "ip": f"{rng.randrange(11, 223)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "network": {"wifi": rng.random() < 0.7},
        })


@dataclass(slots=True)
class Script:
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
             size: int = 8192) -> Script:
        # In the table each group's share is its weight; its variants take turns within that share.
        table = [group[i % len(group)] for weight, group in weighted for i in range(round(weight * 24))]
        actions = [table[int(rng.random() * len(table))] for _ in range(size)]
        kinds, events, props = (list(column) for column in zip(*actions))
        return cls(kinds, events, props, [rng.randrange(*gaps) for _ in range(size)])
