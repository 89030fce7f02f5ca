"""What a destination's tests need, shipped for third-party plugin packages too.

    FakeClock   a runtime.Clock whose sleeps return at once: drive retry policies and rate limits

Only tests import this package; revetl itself never does.
"""

from __future__ import annotations

from revetl.testing.clock import FakeClock

__all__ = ["FakeClock"]
