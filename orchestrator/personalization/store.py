"""The user-profile store: users' feedback events and the product and category figures they add up to.

One small async interface, two backends: SQLite (one host; stdlib, a file) and Redis (shared by several replicas).

    store = open_store("sqlite:///.shoprank/profiles.db")  # or sqlite:////abs/path.db, or redis://127.0.0.1:6379/0
    await store.start()                        # StoreUnavailable if unreachable, StoreError if it would not be durable
    added = await store.append(events)         # True per new event, False per event id already recorded
    events = await store.user_events(user_id)  # the user's latest events, oldest first
    stats = await store.product_stats(product_ids)          # {product_id: ProductStats}
    purchases = await store.category_purchases(categories)  # {category: purchase events}
    figures = await store.product_figures()                 # {product_id: (purchases, reorders)}, bought ones only
    deleted = await store.forget(user_id)      # nothing of the user remains, nor in the figures
    await store.ping(); await store.close()

append returns only once the new events are durable: SQLite commits each batch in WAL mode with synchronous=FULL;
Redis must run with appendonly yes and appendfsync always (checked by start). A batch's events, their dedupe
records and the figures they change are written in one atomic step, so a replayed event id counts once, never twice.
Events are checked beforehand by events.validate (InvalidEvent). The stores raise core.errors' StoreUnavailable when
they cannot be reached or written, and StoreError for anything else; their messages name the URL, never a password.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from core.errors import ConfigError
from orchestrator.personalization.events import Event

# Which ProductStats counter each event type adds to.
COUNTERS = {"view": "views", "click": "clicks", "cart": "carts", "purchase": "purchases"}


@dataclass(frozen=True)
class ProductStats:
    """What all users did with one product."""

    purchases: float = 0  # purchase events, 1 each whatever the quantity
    buyers: int = 0  # distinct users who bought it
    reorders: int = 0  # purchase events by a user who had bought the product before
    clicks: int = 0
    carts: int = 0
    views: int = 0

    @property
    def reorder_rate(self) -> float:
        """The share of purchases that were reorders (0 when none)."""
        return self.reorders / self.purchases if self.purchases else 0.0


class ProfileStore(Protocol):
    """Where users' events and the figures they add up to are kept; every method is async."""

    url: str  # for messages; never holds a password

    async def start(self) -> None:
        """Connect (or open the file) and check the store keeps what it acknowledges."""

    async def append(self, events: Sequence[Event]) -> list[bool]:
        """Record the events durably, in order: True for each new event, False for an event id already recorded."""

    async def user_events(self, user_id: str, limit: int = 10_000) -> list[Event]:
        """The user's most recent `limit` events, oldest first (by time, then arrival)."""

    async def product_stats(self, product_ids: Sequence[str]) -> dict[str, ProductStats]:
        """Each product's figures; zero stats for a product nobody touched."""

    async def product_figures(self) -> dict[str, tuple[float, int]]:
        """(purchase events, reorders) of every product bought at least once: the popularity a search reads."""

    async def category_purchases(self, categories: Sequence[str]) -> dict[str, float]:
        """Each category's purchase events; 0 for a category nobody bought from."""

    async def forget(self, user_id: str) -> int:
        """Delete all of the user's data, event ids included, and take the user out of the figures.

        Afterwards the figures are what they would be had the user never existed. Returns the events deleted.
        """

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    async def close(self) -> None:
        """Release the connection or file."""


def open_store(url: str) -> ProfileStore:
    """The store at `url`: sqlite:///relative.db, sqlite:////absolute/path.db, a file path, or redis://host:port/db."""
    # The backends import this module's types, so they are imported here, once chosen.
    if url.startswith(("redis://", "rediss://")):
        from orchestrator.personalization.redis_store import RedisStore

        return RedisStore(url)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
    else:
        path = "" if "://" in url else url
    if not path:
        raise ConfigError(
            f"profile store {url!r} is not a store URL: use sqlite:///relative/path.db, sqlite:////absolute/path.db, "
            "a file path, or redis://host:port/db"
        )
    from orchestrator.personalization.sqlite_store import SQLiteStore

    return SQLiteStore(Path(path))
