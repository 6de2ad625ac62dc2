"""The profile store in one SQLite file: WAL mode, synchronous=FULL, one transaction per appended batch.

Tables: events (each with its arrival number), product_figures (purchases and reorders of every product bought),
user_bought (the products each user has bought, which tells a reorder from a first purchase).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from core.errors import StoreError, StoreUnavailable
from orchestrator.personalization.events import STORED_FIELDS, Event
from orchestrator.personalization.store_interface import ProductFigures

T = TypeVar("T")


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


EVENT_FIELDS = list(STORED_FIELDS)
COLUMNS = ", ".join(EVENT_FIELDS)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,  -- arrival order: an alias of the rowid, which VACUUM keeps
    event_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL, product_id TEXT NOT NULL, type TEXT NOT NULL, time REAL NOT NULL,
    query TEXT NOT NULL, quantity INTEGER NOT NULL, category TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id, time, seq);
CREATE TABLE IF NOT EXISTS product_figures (
    product_id TEXT PRIMARY KEY, purchases INTEGER NOT NULL, reorders INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS user_bought (
    user_id TEXT NOT NULL, product_id TEXT NOT NULL, PRIMARY KEY (user_id, product_id)
) WITHOUT ROWID;
"""

# ON CONFLICT (event_id) rather than OR IGNORE: only a replayed id is skipped, never a row breaking another rule.
INSERT_EVENT = f"INSERT INTO events ({COLUMNS}) VALUES ({_marks(EVENT_FIELDS)}) ON CONFLICT (event_id) DO NOTHING"
ADD_PURCHASE = "INSERT INTO user_bought VALUES (?, ?) ON CONFLICT DO NOTHING"
ADD_TO_PRODUCT = (
    "INSERT INTO product_figures VALUES (?, ?, ?) ON CONFLICT (product_id) DO UPDATE SET "
    "purchases = purchases + excluded.purchases, reorders = reorders + excluded.reorders"
)
# Files written before product_figures kept, in product_stats, views, clicks, carts and buyers of every product
# beside its purchases and reorders, and purchases per category in category_stats, which nothing read.
OLD_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('product_stats', 'category_stats')"


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
            if db.execute(OLD_TABLES).fetchall():
                _write(db, _drop_old_tables)
        except BaseException:
            db.close()
            raise
        return db

    async def append(self, events: Sequence[Event]) -> list[bool]:
        """Record the new events and their figures in one transaction; False for each event id already recorded."""
        return await self._call(self._write, self._append, events)

    def _append(self, db: sqlite3.Connection, events: Sequence[Event]) -> list[bool]:
        added = []
        purchases: Counter[str] = Counter()
        reorders: Counter[str] = Counter()
        for event in events:
            new = db.execute(INSERT_EVENT, [getattr(event, name) for name in EVENT_FIELDS])
            added.append(new.rowcount == 1)
            if new.rowcount == 1 and event.type == "purchase":
                purchases[event.product_id] += 1
                first = db.execute(ADD_PURCHASE, (event.user_id, event.product_id))
                if first.rowcount == 0:
                    reorders[event.product_id] += 1
        db.executemany(ADD_TO_PRODUCT, [(product_id, count, reorders[product_id])
                                        for product_id, count in purchases.items()])
        return added

    async def user_events(self, user_id: str, limit: int = 10_000) -> list[Event]:
        """The user's most recent `limit` events, oldest first (by time, then arrival)."""
        latest = f"SELECT seq, {COLUMNS} FROM events WHERE user_id = ? ORDER BY time DESC, seq DESC LIMIT ?"
        rows = await self._call(self._read, f"SELECT {COLUMNS} FROM ({latest}) ORDER BY time, seq", (user_id, limit))
        return [Event(*row) for row in rows]

    async def product_figures(self) -> dict[str, ProductFigures]:
        """The figures of every product bought at least once."""
        rows = await self._call(self._read, "SELECT product_id, purchases, reorders FROM product_figures "
                                            "WHERE purchases > 0", ())
        return {product_id: ProductFigures(float(count), int(reorders)) for product_id, count, reorders in rows}

    async def forget(self, user_id: str) -> int:
        """Delete the user's events, event ids and purchases, and take them out of the figures; return the count."""
        return await self._call(self._write, self._forget, user_id)

    def _forget(self, db: sqlite3.Connection, user_id: str) -> int:
        rows = db.execute("SELECT product_id, type FROM events WHERE user_id = ?", (user_id,)).fetchall()
        purchases = Counter(product_id for product_id, type_ in rows if type_ == "purchase")
        # The user's first purchase of a product was not a reorder, every later one was.
        db.executemany(
            "UPDATE product_figures SET purchases = purchases - ?, reorders = reorders - ? WHERE product_id = ?",
            [(count, count - 1, product_id) for product_id, count in purchases.items()],
        )
        # Rows only this user made would otherwise stay behind as zeros, telling that someone was there.
        db.executemany("DELETE FROM product_figures WHERE product_id = ? AND purchases <= 0",
                       [(product_id,) for product_id in purchases])
        db.execute("DELETE FROM events WHERE user_id = ?", (user_id,))
        db.execute("DELETE FROM user_bought WHERE user_id = ?", (user_id,))
        return len(rows)

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
        return _write(self._db, work, *args)


def _write(db: sqlite3.Connection, work: Callable[..., T], *args: object) -> T:
    """work(db, *args) in one transaction."""
    # BEGIN IMMEDIATE takes the write lock up front, so a concurrent writer waits instead of deadlocking.
    db.execute("BEGIN IMMEDIATE")
    try:
        result = work(db, *args)
        db.execute("COMMIT")
    except BaseException:
        db.rollback()
        raise
    return result


def _drop_old_tables(db: sqlite3.Connection) -> None:
    """Keep the purchases and reorders of a file written before product_figures, and drop the counts nothing read."""
    old = {name for (name,) in db.execute(OLD_TABLES)}  # none when another process did it while this one waited
    if "product_stats" in old:
        db.execute("INSERT INTO product_figures SELECT product_id, purchases, reorders FROM product_stats "
                   "WHERE purchases > 0")
    for name in old:
        db.execute(f"DROP TABLE {name}")
