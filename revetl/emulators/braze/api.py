"""Braze REST API emulator: `POST /users/track`, faithful to what Braze documents and answers.

What the emulator relies on (Braze docs "Track users", "API errors and responses", "Rate limits",
"User attributes object", and /users/track responses recorded in public client test suites):

- `Authorization: Bearer <REST API key>`; an unknown or missing key is a fatal `401`.
- A request carries up to 75 attribute objects, 75 event objects and 75 purchase objects (the
  documented per-array rule, "legacy" in the newest docs, which say most customers now get 75
  objects in total across the three arrays; `batch_rule="combined"` emulates that). More is a
  fatal `400 {"message": "Max Input Length Exceeded"}` and nothing is applied. Bodies over 4 MB
  are `413`; a missing JSON content type is `415`.
- Success is `201 {"message": "success", "attributes_processed": n, ...}`; objects that are
  invalid come back as minor errors `{"type", "input_array", "index"}` in the same 201 while the
  valid objects of the request are applied. When no object is valid: `400` with
  `"Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."`.
- Which profile an object addresses and how its values change it: see `profiles.py`; what makes
  an object invalid: `rules.py`.
- `X-RateLimit-Limit`, `-Remaining`, `-Reset` (epoch seconds) on every response; /users/track
  defaults to 3,000 requests per 3 seconds (the current published limit; it was 50,000/minute).

Texts from real responses: the missing-identifier and invalid-email minor errors and the "no valid
data" message; from the docs: the dummy external_id error, "Max Input Length Exceeded", "Rate
Limited". Ours: the 401 text (the key is never echoed) and the errors for bad attribute names,
edits, events and purchases.
"""

from __future__ import annotations

import hmac
import math
import os
from collections.abc import Iterable
from typing import Any

from revetl.emulators.base import Emulator, Request, Response, Route
from revetl.emulators.braze.profiles import Profiles, User
from revetl.errors import ConfigError

__all__ = ["BrazeEmulator"]

ARRAYS = ("attributes", "events", "purchases")
NO_VALID_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."


class BrazeEmulator(Emulator):
    """`POST /users/track` with Braze's auth, limits, response shapes and per-object errors.

    Options beyond the common ones: `api_key` (default: $BRAZE_API_KEY, else "dev-braze-key"),
    `max_objects` (75), `batch_rule` ("per_array" or "combined"), `max_array_length` (500).
    """

    name = "braze"
    default_port = 8091
    default_rate_limit = 3000
    default_rate_window = 3.0
    max_body_bytes = 4 * 1024 * 1024
    extra_options = {"api_key": None, "max_objects": 75, "batch_rule": "per_array", "max_array_length": 500}

    def __init__(self, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(options, **kwargs)
        key = self.config["api_key"] or os.environ.get("BRAZE_API_KEY") or "dev-braze-key"
        self._expected = f"Bearer {key}".encode()  # compared, never logged or echoed
        if self.config["batch_rule"] not in ("per_array", "combined"):
            rule = self.config["batch_rule"]
            raise ConfigError(f"Braze option 'batch_rule' must be 'per_array' or 'combined', not {rule!r}.")
        for name in ("max_objects", "max_array_length"):
            if not isinstance(self.config[name], int) or self.config[name] < 1:
                raise ConfigError(f"Braze option {name!r} must be a positive integer.")

    def routes(self) -> Iterable[Route]:
        return [Route("POST", "/users/track", self.track)]

    def control_routes(self) -> Iterable[Route]:
        return [Route("GET", "/_emulator/users", self.list_users)]

    def reset_state(self) -> None:
        self.profiles = Profiles(self.config["max_array_length"])

    # -- vendor hooks ----------------------------------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, self._expected):
            return None
        # Never echo the key back: a client may log this body or store it with a failed row.
        return Response(401, {"message": "Invalid API key"})

    def rate_limit_headers(self, limit: int, remaining: int, reset: float) -> dict[str, str]:
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(math.ceil(reset))}

    def rate_limited(self, retry_after: float) -> Response:
        # Braze documents no Retry-After on its 429: clients are to wait for X-RateLimit-Reset.
        return Response(429, {"message": "Rate Limited"})

    # -- /users/track ----------------------------------------------------------------------------

    def track(self, request: Request) -> Response:
        """Validate the whole request, reject per object, apply the valid objects, count them."""
        if "application/json" not in request.headers.get("content-type", ""):
            return Response(415, {"message": "Unsupported Media Type"})
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return Response(400, {"message": "Error while parsing request body. Please check your syntax."})
        arrays = {name: body.get(name) for name in ARRAYS if body.get(name) is not None}
        for name, objects in arrays.items():
            if not isinstance(objects, list):
                return Response(400, {"message": f"'{name}' must be an array"})
        fatal = self._too_many(arrays)
        if fatal:
            return fatal
        # One pass: check each object, apply it when valid. When none is valid nothing was applied,
        # which is what Braze's fatal "no valid data" answer promises.
        errors: list[dict[str, Any]] = []
        answer: dict[str, Any] = {"message": "success"}
        for name, objects in arrays.items():  # Braze processes attributes, then events, then purchases
            handle = getattr(self.profiles, name)
            applied = 0
            for index, obj in enumerate(objects):
                problem = handle(obj) if type(obj) is dict else f"each of '{name}' must be an object"
                if problem:
                    errors.append({"type": problem, "input_array": name, "index": index})
                else:
                    applied += 1
            answer[f"{name}_processed"] = applied
            self.count_applied(name, applied)
        if len(errors) == sum(map(len, arrays.values())):
            return Response(400, {"message": NO_VALID_DATA, "errors": errors})
        if errors:
            answer["errors"] = errors
        return Response(201, answer)

    def _too_many(self, arrays: dict[str, list[Any]]) -> Response | None:
        limit = self.config["max_objects"]
        if self.config["batch_rule"] == "combined":
            over = [f"at most {limit} objects in total"] if sum(map(len, arrays.values())) > limit else []
        else:
            over = [f"at most {limit} objects in '{name}'" for name, objs in arrays.items() if len(objs) > limit]
        if not over:
            return None
        return Response(400, {"message": "Max Input Length Exceeded",
                              "errors": [{"type": f"a request may hold {text}"} for text in over]})

    # -- /_emulator/users ------------------------------------------------------------------------

    def list_users(self, request: Request) -> Response:
        """Every profile (or those matching ?external_id=, ?braze_id=, ?email=) with its attributes."""
        profiles = self.profiles
        users: Iterable[User] = profiles.users
        if "external_id" in request.query:
            users = [u for u in [profiles.by_external.get(request.query["external_id"])] if u]
        elif "braze_id" in request.query:
            users = [u for u in [profiles.by_braze.get(request.query["braze_id"])] if u]
        elif "email" in request.query:
            users = list(profiles.by_contact.get(("email", request.query["email"].lower()), []))
        rendered = [user.as_dict() for user in users]
        return Response(200, {"count": len(rendered), "users": rendered})
