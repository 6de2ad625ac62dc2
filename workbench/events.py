"""The feedback events this workbench sent, per shopper: what the page shows as a user's recent events.

The public API has no call that lists a user's events (the profile store is the service's own), so the page shows
only what was sent from here since the workbench started, newest first.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

KEPT_PER_USER = 50


@dataclass(frozen=True)
class SentEvent:
    """One event as the workbench sent it."""

    at: float  # seconds since the epoch
    kind: str  # click, cart or purchase
    product_id: str
    title: str
    query: str
    position: int

    def when(self) -> str:
        """The time of day it was sent, as the page shows it."""
        return time.strftime("%H:%M:%S", time.localtime(self.at))


class SentEvents:
    """The last KEPT_PER_USER events sent for each (server, user)."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, str], deque[SentEvent]] = {}
        self._lock = threading.Lock()

    def add(self, server: str, user_id: str, event: SentEvent) -> None:
        with self._lock:
            self._events.setdefault((server, user_id), deque(maxlen=KEPT_PER_USER)).appendleft(event)

    def of(self, server: str, user_id: str) -> list[SentEvent]:
        """The user's events sent from here, newest first."""
        with self._lock:
            return list(self._events.get((server, user_id), ()))

    def users(self, server: str) -> list[str]:
        """Users with events sent from here to `server`, most recently active first."""
        with self._lock:
            known = [(events[0].at, user) for (address, user), events in self._events.items() if address == server]
        return [user for _, user in sorted(known, reverse=True)]
