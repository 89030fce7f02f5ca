"""Every revetl exception, named by what the caller should do next.

    RevetlError                 base; the CLI prints its message as one red sentence, exit 1
    ├── ConfigError             a project, traits, audience or sync file is wrong: fix the file
    ├── LandingError            events could not be landed (disk, permissions): nothing was half-written
    ├── InvalidEvent            one record is rejected: report it, skip it, go on with the rest
    ├── BuildError              a dbt model or test failed: the message names it
    ├── CollectError            the collector cannot start, or refuses one request (`status` to answer)
    ├── WarehouseError          the warehouse could not be opened or queried
    │   └── QueryError          the engine failed one statement (its own error is the cause): say which, stop
    ├── StateError              a sync's journal or state could not be written (a full disk): the run stops,
    │                           what was acknowledged is kept and the next run resumes from it
    ├── SyncRefused             a sync may not start: another run holds its lock, or the guard refused the plan
    ├── SyncCancelled           Ctrl-C or SIGTERM stopped a sync: recorded as cancelled, the next run resumes
    └── DestinationError        talking to a destination failed (a malformed answer, a wrong base URL): stop the run
        ├── FatalDestinationError       stop this sync now, retrying cannot help (bad credentials, quota used up)
        ├── RetryableDestinationError   try this request again after a pause (429, 5xx, timeout, dropped
        │                               connection); the retry policy (sync/http.py) raises and catches it
        ├── RetriesExhausted            retryable failures outlasted the retry policy: stop, the next run
        │                               resumes from the acknowledged state
        └── RowRejected                 the destination refused one record: record it as failed with its reason
                                        and go on with the rest (a destination catches it into a RowResult)

Each error carries its context (file, line, record, model) in its message, never a secret: the errors a
destination builds (`FatalDestinationError`, `RetryableDestinationError`, `RowRejected`) take the
destination's secrets (`secret_values(config)`) and scrub them as they are made.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = [
    "BuildError",
    "CollectError",
    "DestinationError",
    "FatalDestinationError",
    "RetriesExhausted",
    "RetryableDestinationError",
    "RowRejected",
    "StateError",
    "SyncCancelled",
    "SyncRefused",
    "ConfigError",
    "InvalidEvent",
    "LandingError",
    "QueryError",
    "RevetlError",
    "WarehouseError",
    "first_line",
    "scrub",
    "scrub_urls",
]

_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:]*:)[^/@\s]*@")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (engines append context lines), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def scrub_urls(text: str) -> str:
    """Hide the password of every URL in `text` (`https://user:PASS@host` -> `https://user:***@host`)."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every secret replaced by `***`, and every URL's password hidden."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return scrub_urls(text)


class RevetlError(Exception):
    """Base of every error revetl raises on purpose."""


class ConfigError(RevetlError):
    """A project file is invalid; the message names the file and, where known, the line or key."""


class LandingError(RevetlError):
    """Events could not be written to the landing directory."""


class InvalidEvent(RevetlError):
    """One event payload is rejected; `reason` is a plain sentence without the file context."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CollectError(RevetlError):
    """`revetl collect` cannot start or run, or refuses one HTTP request.

    `status` and `code` are what the collector answers (e.g. 401 `unauthorized`, 400 `too_large`);
    the message is one sentence a client can act on, and never holds a write key.
    """

    def __init__(self, message: str, status: int = 500, code: str = "collector_error") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class BuildError(RevetlError):
    """A dbt model or test failed, or dbt could not run."""


class WarehouseError(RevetlError):
    """The warehouse could not be opened or queried."""


class QueryError(WarehouseError):
    """The warehouse engine refused or failed a statement (revetl/warehouse/ raises it for every engine).

    The message is the engine's first line; its own exception is the cause. What callers act on:
    `out_of_disk` (no space left for its temporary files), `line` (the line of the statement it points
    at, if any), `missing` (the statement names a relation the warehouse does not have).
    """

    def __init__(self, message: str, *, out_of_disk: bool = False, line: int | None = None,
                 missing: bool = False) -> None:
        super().__init__(message)
        self.out_of_disk = out_of_disk
        self.line = line
        self.missing = missing


class StateError(RevetlError):
    """A sync's journal or state tables could not be written (e.g. no space left on the device)."""


class SyncCancelled(RevetlError):
    """A sync run was stopped by Ctrl-C or SIGTERM; what was acknowledged is kept."""


class SyncRefused(RevetlError):
    """A sync run did not start: its lock is held by another run, or the guard refused the plan."""


class DestinationError(RevetlError):
    """A destination failed; the message names the sync's destination and what it answered, never a secret."""


class FatalDestinationError(DestinationError):
    """Retrying cannot help (e.g. 401 bad API key, daily quota used up): the run stops at once, state kept.

    `sync` names the sync (None where unknown), `status` the HTTP status that decided it (None for a
    refusal read from a body or a limit revetl keeps); the message is the whole sentence, scrubbed of
    `secrets` here, where it is built."""

    def __init__(self, sync: str | None, status: int | None, message: str, *, secrets: Iterable[str] = ()) -> None:
        super().__init__(scrub(message, secrets))
        self.sync = sync
        self.status = status


class RetryableDestinationError(DestinationError):
    """One try failed in a way a later try may not: 429, 408, 5xx (`response` holds it), or a timeout or
    dropped connection (`response` None). `wait` is the pause the server asked for (Retry-After), if any.
    The retry policy catches it and tries again; when its attempts run out it raises RetriesExhausted."""

    def __init__(self, response: httpx.Response | None, message: str | None = None, *, wait: float | None = None,
                 secrets: Iterable[str] = ()) -> None:
        if message is None:
            if response is None:
                message = "no answer"
            else:
                request = response.request
                message = f"{response.status_code} on {request.method} {request.url.path}"
        super().__init__(scrub(message, secrets))
        self.response = response
        self.wait = wait


class RetriesExhausted(DestinationError):
    """429/5xx/timeouts/dropped connections outlasted the retry policy; the next run resumes."""


class RowRejected(DestinationError):
    """The destination refused one record (`key`; None when one refusal covers every row of a request);
    `reason` is what is stored with the failed row, scrubbed of `secrets`. The row is retried next run."""

    def __init__(self, key: str | None, reason: str, *, secrets: Iterable[str] = ()) -> None:
        self.key = key
        self.reason = scrub(reason, secrets)
        super().__init__(f"{key}: {self.reason}" if key is not None else self.reason)
