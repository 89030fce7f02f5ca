"""The message ids the collector landed most recently, so that a client's retry lands nothing twice.

SDKs resend a batch whose response they did not see (a timeout, a restart of the collector); the
copy received first is kept and later copies are acknowledged but not landed (DESIGN 2). The window
is bounded (`collect.dedupe_window` ids, first in, first out); the `events` model drops any
duplicate that arrives after its first copy has left the window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

__all__ = ["RecentIds"]


class RecentIds:
    """A first-in, first-out set of at most `capacity` message ids."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: set[str] = set()
        self._order: deque[str] = deque()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def add(self, message_id: str) -> bool:
        """Remember `message_id`; False if it was already there (a duplicate)."""
        if message_id in self._ids:
            return False
        if self.capacity <= 0:
            return True
        self._ids.add(message_id)
        self._order.append(message_id)
        if len(self._order) > self.capacity:
            self._ids.discard(self._order.popleft())
        return True

    def add_new(self, message_ids: Sequence[str]) -> list[int]:
        """Remember ids; returns the positions of those not seen before (first copy wins)."""
        fresh = []
        seen, order = self._ids, self._order
        for index, message_id in enumerate(message_ids):
            if message_id in seen:
                continue
            fresh.append(index)
            if self.capacity > 0:
                seen.add(message_id)
                order.append(message_id)
        while len(order) > self.capacity:
            seen.discard(order.popleft())
        return fresh

    def update(self, message_ids: Iterable[str]) -> None:
        """Remember many ids, oldest first."""
        for message_id in message_ids:
            self.add(message_id)

    def forget(self, message_ids: Iterable[str]) -> None:
        """Un-remember ids whose landing failed, so a retry of them is accepted."""
        for message_id in message_ids:
            self._ids.discard(message_id)
