"""Injected failures and the checks of every common emulator option.

`Faults` holds the shares of requests that fail in each way a sync engine must survive (see
`base` for the order in which a request meets them); the option checks turn a value given on
the command line, in a test or at runtime (`POST /_emulator/faults`) into a number or one
ConfigError sentence naming the option.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from revetl.errors import ConfigError

__all__ = ["Faults", "latency_option", "number_option", "seed_option"]

_SHARES = ("drop_share", "timeout_share", "error_share", "lost_response_share")


@dataclass(frozen=True)
class Faults:
    """Injected failures; shares are probabilities per request and add up to at most 1."""

    error_share: float = 0.0
    drop_share: float = 0.0
    lost_response_share: float = 0.0
    timeout_share: float = 0.0
    rate_limit_burst: int = 0
    latency_ms: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names a Faults accepts."""
        return tuple(cls.__dataclass_fields__)

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A validated copy with `changes` applied; raises ConfigError on a bad value."""
        values = asdict(self)
        for name, value in changes.items():
            if name not in values:
                raise ConfigError(f"Unknown fault {name!r}; known: {', '.join(self.names())}.")
            values[name] = value
        for name in _SHARES:
            values[name] = number_option(name, values[name], 0.0, 1.0)
        if sum(values[name] for name in _SHARES) > 1.0 + 1e-9:
            raise ConfigError(f"Fault shares ({', '.join(_SHARES)}) add up to more than 1.")
        values["rate_limit_burst"] = int(number_option("rate_limit_burst", values["rate_limit_burst"], 0, math.inf))
        values["latency_ms"] = latency_option(values["latency_ms"])
        return Faults(**values)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view (latency as [low, high])."""
        values = asdict(self)
        values["latency_ms"] = list(self.latency_ms)
        return values


def number_option(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"Emulator option {name!r} must be a number, not {value!r}.") from None
    if not low <= value <= high:
        raise ConfigError(f"Emulator option {name!r} must be between {low} and {high}, not {value}.")
    return float(value)


def seed_option(value: Any) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"Emulator option 'seed' must be an integer, not {value!r}.")
    return value


def latency_option(value: Any) -> tuple[float, float]:
    """5, "5", [5, 20] or "5-20" -> (low, high) in milliseconds."""
    if isinstance(value, str) and "-" in value.strip()[1:]:
        value = value.strip().split("-", 1)
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ConfigError(f"Emulator option 'latency_ms' must be a number or [low, high], not {value!r}.")
        low, high = (number_option("latency_ms", v, 0, 600_000) for v in value)
    else:
        low = high = number_option("latency_ms", value, 0, 600_000)
    if low > high:
        raise ConfigError(f"Emulator option 'latency_ms' has low {low} above high {high}.")
    return (low, high)

