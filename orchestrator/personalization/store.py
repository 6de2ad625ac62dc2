"""The user-profile store, opened from its URL: SQLite (one host; stdlib, a file) or Redis (shared by replicas).

    store = open_store("sqlite:///.shoprank/profiles.db")  # or sqlite:////abs/path.db, or redis://127.0.0.1:6379/0

What every store does is store_interface.py's ProfileStore. Durability: SQLite commits each batch in WAL mode with
synchronous=FULL; Redis must run with appendonly yes and appendfsync always (checked by start).
"""

from __future__ import annotations

from pathlib import Path

from core.errors import ConfigError
from orchestrator.personalization.store_interface import ProfileStore


def open_store(url: str) -> ProfileStore:
    """The store at `url`: sqlite:///relative.db, sqlite:////absolute/path.db, a file path, or redis://host:port/db."""
    # Imported once chosen, so that a SQLite store never loads the Redis client.
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
