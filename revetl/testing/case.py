"""`Case`: how the contract suite points a sync at one destination's emulator and reads it back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from revetl.emulators.base import Emulator

__all__ = ["Case"]


@dataclass(frozen=True)
class Case:
    """One destination under the contract suite.

    The suite's audience has the columns `user_id` (the key), `email`, `name` and `plan`; a case maps
    them as its destination needs, says how to start its emulator and how to read what reached it.
    """

    name: str  # the destination's name in test ids and class names
    # A name registered in revetl.emulators, or a factory(options) -> Emulator (a subclass of
    # revetl.emulators.base.Emulator, so that the suite can inject faults and read /_emulator/ stats).
    emulator: str | Callable[[dict[str, Any]], Emulator]
    destination: Callable[[str], dict[str, Any]]  # emulator URL -> the sync file's `destination:` block
    identity_to: str
    fields: dict[str, str]  # audience column -> destination field
    membership: dict[str, Any]
    env: dict[str, str]  # what the destination block's ${VAR}s read: credentials the emulator accepts
    bad_env: dict[str, str]  # the same with a wrong credential: the sync must stop at the first refusal
    members: Callable[[str], dict[str, dict[str, Any]]]  # URL -> {key: {field: value}} now in the audience there
    sent_keys: Callable[[dict[str, Any]], set[str]]  # one recorded request -> keys whose rows it carried
    batch_size: int  # rows per batch the destination sends: the crash test spans several batches
    reject_email: str = "not-an-email"  # an email value the destination rejects for that row only
    fatal_text: str = "401"  # what the run's message quotes from the destination on bad credentials
    emulator_options: dict[str, Any] = field(default_factory=dict)  # e.g. the credentials it accepts
