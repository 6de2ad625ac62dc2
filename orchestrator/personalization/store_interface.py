"""What a profile store is: users' feedback events, and the product figures a search reads of them.

    await store.start()                        # StoreUnavailable if unreachable, StoreError if it would not be durable
    added = await store.append(events)         # True per new event, False per event id already recorded
    events = await store.user_events(user_id)  # the user's latest events, oldest first
    figures = await store.product_figures()    # {product_id: ProductFigures(purchases, reorders)}, bought ones only
    deleted = await store.forget(user_id)      # nothing of the user remains, nor in the figures
    await store.close()

append returns only once the new events are durable. A batch's events, their dedupe records and the figures they
change are written in one atomic step, so a replayed event id counts once, never twice. Events are checked
beforehand by events.validate (InvalidEvent). A store raises core.errors' StoreUnavailable when it cannot be reached
or written, and StoreError for anything else; its messages name the URL, never a password.

The backends (sqlite_store.py, redis_store.py) implement this; store.py opens one from a URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol

from orchestrator.personalization.events import Event


class ProductFigures(NamedTuple):
    """What all users bought of one product."""

    purchases: float  # purchase events, 1 each whatever the quantity
    reorders: int  # purchase events by a user who had bought the product before


class ProfileStore(Protocol):
    """Where users' events and the figures they add up to are kept; every method is async."""

    url: str  # for messages; never holds a password

    async def start(self) -> None:
        """Connect (or open the file) and check the store keeps what it acknowledges."""

    async def append(self, events: Sequence[Event]) -> list[bool]:
        """Record the events durably, in order: True for each new event, False for an event id already recorded."""

    async def user_events(self, user_id: str, limit: int = 10_000) -> list[Event]:
        """The user's most recent `limit` events, oldest first (by time, then arrival)."""

    async def product_figures(self) -> dict[str, ProductFigures]:
        """The figures of every product bought at least once: the popularity a search reads."""

    async def forget(self, user_id: str) -> int:
        """Delete all of the user's data, event ids included, and take the user out of the figures.

        Afterwards the figures are what they would be had the user never existed. Returns the events deleted.
        """

    async def close(self) -> None:
        """Release the connection or file."""
