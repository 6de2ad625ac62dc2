"""The profile store in one SQLite file: WAL mode, synchronous=FULL, one transaction per appended batch."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path
from typing import TypeVar

from core.errors import StoreError, StoreUnavailable
from orchestrator.personalization.events import Event
from orchestrator.personalization.store import COUNTERS, ProductStats

T = TypeVar("T")


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


EVENT_FIELDS = [field.name for field in fields(Event)]
COLUMNS = ", ".join(EVENT_FIELDS)
STATS = [field.name for field in fields(ProductStats)]

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,  -- arrival order: an alias of the rowid, which VACUUM keeps
    event_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL, product_id TEXT NOT NULL, type TEXT NOT NULL, time REAL NOT NULL,
    query TEXT NOT NULL, quantity INTEGER NOT NULL, category TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, time, seq);
CREATE TABLE IF NOT EXISTS product_stats (
    product_id TEXT PRIMARY KEY, {", ".join(f"{name} INTEGER NOT NULL" for name in STATS)}
);
CREATE TABLE IF NOT EXISTS category_stats (category TEXT PRIMARY KEY, purchases INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS user_bought (
    user_id TEXT NOT NULL, product_id TEXT NOT NULL, PRIMARY KEY (user_id, product_id)
) WITHOUT ROWID;
"""

# ON CONFLICT (event_id) rather than OR IGNORE: only a replayed id is skipped, never a row breaking another rule.
INSERT_EVENT = f"INSERT INTO events ({COLUMNS}) VALUES ({_marks(EVENT_FIELDS)}) ON CONFLICT (event_id) DO NOTHING"
ADD_PURCHASE = "INSERT INTO user_bought VALUES (?, ?) ON CONFLICT DO NOTHING"
ADD_TO_PRODUCT = (
    f"INSERT INTO product_stats VALUES (?, {_marks(STATS)}) ON CONFLICT (product_id) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name in STATS)
)
ADD_TO_CATEGORY = (
    "INSERT INTO category_stats VALUES (?, ?) ON CONFLICT (category) "
    "DO UPDATE SET purchases = purchases + excluded.purchases"
)


class SQLiteStore:
    """The profile store in a SQLite file, its one connection used from one worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._db: sqlite3.Connection | None = None
        self._worker: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        """Create the file, its directory and its tables if missing."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreUnavailable(
                f"profile store {self.url}: cannot create the directory {self.path.parent}: {error.strerror}"
            ) from error
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="profile-store")
        self._db = await self._call(self._connect)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: transactions are begun and committed here, one per batch; timeout: wait for
        # another process's write to finish instead of failing.
        db = sqlite3.connect(self.path, isolation_level=None, timeout=10.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    async def append(self, events: Sequence[Event]) -> list[bool]:
        """Record the new events and their figures in one transaction; False for each event id already recorded."""
        return await self._call(self._write, self._append, events)

    def _append(self, db: sqlite3.Connection, events: Sequence[Event]) -> list[bool]:
        added = []
        products: defaultdict[str, Counter[str]] = defaultdict(Counter)
        categories: Counter[str] = Counter()
        for event in events:
            new = db.execute(INSERT_EVENT, [getattr(event, name) for name in EVENT_FIELDS])
            added.append(new.rowcount == 1)
            if new.rowcount == 0:
                continue
            product = products[event.product_id]
            product[COUNTERS[event.type]] += 1
            if event.type == "purchase":
                categories[event.category] += 1
                first = db.execute(ADD_PURCHASE, (event.user_id, event.product_id))
                product["buyers" if first.rowcount == 1 else "reorders"] += 1
        _add_to_figures(db, products, categories, sign=1)
        return added

    async def user_events(self, user_id: str, limit: int = 10_000) -> list[Event]:
        """The user's most recent `limit` events, oldest first (by time, then arrival)."""
        latest = f"SELECT seq, {COLUMNS} FROM events WHERE user_id = ? ORDER BY time DESC, seq DESC LIMIT ?"
        rows = await self._call(self._read, f"SELECT {COLUMNS} FROM ({latest}) ORDER BY time, seq", (user_id, limit))
        return [Event(*row) for row in rows]

    async def product_stats(self, product_ids: Sequence[str]) -> dict[str, ProductStats]:
        """Each product's figures; zero stats for a product nobody touched."""
        ids = list(dict.fromkeys(product_ids))
        query = f"SELECT product_id, {', '.join(STATS)} FROM product_stats WHERE product_id IN ({_marks(ids)})"
        found = {row[0]: ProductStats(float(row[1]), *row[2:]) for row in await self._call(self._read, query, ids)}
        return {product_id: found.get(product_id, ProductStats()) for product_id in ids}

    async def product_figures(self) -> dict[str, tuple[float, int]]:
        """(purchase events, reorders) of every product bought at least once."""
        query = "SELECT product_id, purchases, reorders FROM product_stats WHERE purchases > 0"
        return {product_id: (float(count), int(reorders)) for product_id, count, reorders in await self._call(self._read, query, ())}

    async def category_purchases(self, categories: Sequence[str]) -> dict[str, float]:
        """Each category's purchase events; 0 for a category nobody bought from."""
        names = list(dict.fromkeys(categories))
        query = f"SELECT category, purchases FROM category_stats WHERE category IN ({_marks(names)})"
        found = dict(await self._call(self._read, query, names))
        return {name: float(found.get(name, 0)) for name in names}

    async def forget(self, user_id: str) -> int:
        """Delete the user's events, event ids and purchases, and take them out of the figures; return the count."""
        return await self._call(self._write, self._forget, user_id)

    def _forget(self, db: sqlite3.Connection, user_id: str) -> int:
        rows = db.execute("SELECT product_id, type, category FROM events WHERE user_id = ?", (user_id,)).fetchall()
        products: defaultdict[str, Counter[str]] = defaultdict(Counter)
        categories: Counter[str] = Counter()
        for product_id, type_, category in rows:
            products[product_id][COUNTERS[type_]] += 1
            if type_ == "purchase":
                categories[category] += 1
        for product in products.values():
            if product["purchases"]:
                product["buyers"], product["reorders"] = 1, product["purchases"] - 1
        _add_to_figures(db, products, categories, sign=-1)
        # Rows only this user made would otherwise stay behind as zeros, telling that someone was there.
        db.executemany(
            "DELETE FROM product_stats WHERE product_id = ? AND purchases + clicks + carts + views = 0",
            [(product_id,) for product_id in products],
        )
        db.executemany("DELETE FROM category_stats WHERE category = ? AND purchases = 0", [(c,) for c in categories])
        db.execute("DELETE FROM events WHERE user_id = ?", (user_id,))
        db.execute("DELETE FROM user_bought WHERE user_id = ?", (user_id,))
        return len(rows)

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the file can be read."""
        await self._call(self._read, "SELECT 1 FROM events LIMIT 1", ())

    async def close(self) -> None:
        """Close the file and stop the worker thread."""
        if self._db is not None:
            await self._call(self._db.close)
            self._db = None
        if self._worker is not None:
            self._worker.shutdown()
            self._worker = None

    async def _call(self, function: Callable[..., T], *args: object) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._worker, function, *args)
        except sqlite3.OperationalError as error:  # cannot open, read-only, disk full or failing, locked too long
            raise StoreUnavailable(f"profile store {self.url} cannot be read or written: {error}") from error
        except sqlite3.Error as error:
            raise StoreError(f"profile store {self.url} failed: {error}") from error

    def _read(self, query: str, args: Sequence[object]) -> list[tuple]:
        return self._db.execute(query, args).fetchall()

    def _write(self, work: Callable[..., T], *args: object) -> T:
        # BEGIN IMMEDIATE takes the write lock up front, so a concurrent writer waits instead of deadlocking.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = work(self._db, *args)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.rollback()
            raise
        return result


def _add_to_figures(
    db: sqlite3.Connection, products: dict[str, Counter[str]], categories: Counter[str], sign: int
) -> None:
    rows = [(product_id, *(sign * counts[stat] for stat in STATS)) for product_id, counts in products.items()]
    db.executemany(ADD_TO_PRODUCT, rows)
    db.executemany(ADD_TO_CATEGORY, [(category, sign * count) for category, count in categories.items()])
