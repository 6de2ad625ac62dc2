"""The profile stores behind one interface: each store test runs on a SQLite file and on a real redis-server."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import redis

from core.errors import ConfigError, StoreError, StoreUnavailable
from orchestrator.personalization.events import STORED_FIELDS, Event
from orchestrator.personalization.redis_store import RedisStore
from orchestrator.personalization.sqlite_store import SQLiteStore
from orchestrator.personalization.store import open_store
from orchestrator.personalization.store_interface import ProductFigures
from tests.redis_server import RedisServer, free_port

T0 = 1_700_000_000.0


def event(event_id: str, user: str = "u1", product: str = "p1", type_: str = "view", time: float = T0, **rest) -> Event:
    return Event(event_id, user, product, type_, time, **{"category": "tools", **rest})


def with_store(url: str, work):
    """Runs `work(store)` on a started store and closes it after; returns what `work` returned."""

    async def main():
        store = open_store(url)
        try:
            await store.start()
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(main())


def stored_text(url: str) -> str:
    """Everything the store holds, as text: the SQLite file's dump, or every Redis key and value."""
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            return "\n".join(db.iterdump())
    with redis.Redis.from_url(url, decode_responses=True) as client:
        read = {"string": client.get, "hash": client.hgetall, "set": client.smembers,
                "zset": lambda key: client.zrange(key, 0, -1)}
        return "\n".join(f"{key} {read[client.type(key)](key)}" for key in client.keys("*"))


def test_user_events_are_the_latest_oldest_first(store_url):
    events = [
        event("e1", time=T0 + 2, query="cordless drill", quantity=2, category="power tools"),
        event("e2", time=T0 + 1, query="鑽頭"),
        event("e3", user="u2", time=T0),
        event("e4", time=T0 + 1, type_="click"),  # same time as e2, arrived later
    ]

    async def work(store):
        assert await store.append(events) == [True] * 4
        return await store.user_events("u1"), await store.user_events("u1", limit=2), await store.user_events("u9")

    everything, latest, nobody = with_store(store_url, work)
    assert everything == [events[1], events[3], events[0]]
    assert latest == [events[3], events[0]]
    assert nobody == []


def test_a_replayed_event_id_counts_once(store_url):
    async def work(store):
        assert await store.append([event("e1", type_="purchase")]) == [True]
        # A replay of e1, even one that says something else, is skipped; so is an id twice in one batch.
        assert await store.append([event("e1", type_="purchase"), event("e1", type_="click"), event("e2")]) == [
            False, False, True]
        assert await store.append([event("e3", type_="purchase"), event("e3", type_="purchase")]) == [True, False]
        return await store.user_events("u1"), await store.product_figures()

    events, figures = with_store(store_url, work)
    assert [e.event_id for e in events] == ["e1", "e2", "e3"]
    assert figures == {"p1": (2.0, 1)}


def test_product_figures_are_the_purchases_and_reorders_of_bought_products(store_url):
    events = [
        event("e1", type_="purchase"),
        event("e2", type_="purchase", time=T0 + 5),  # u1 buys p1 again: a reorder
        event("e3", user="u2", type_="purchase", quantity=5),  # counts once, whatever the quantity
        event("e4", user="u2", type_="click"),
        event("e5", user="u3", type_="view"),
        event("e6", user="u3", type_="cart"),
        event("e7", product="p2", type_="purchase", category="garden"),
        event("e8", user="u3", product="p2", type_="view", category="garden"),
    ]

    async def work(store):
        await store.append(events)
        return await store.product_figures()

    figures = with_store(store_url, work)
    assert figures == {"p1": ProductFigures(purchases=3.0, reorders=1), "p2": ProductFigures(purchases=1.0, reorders=0)}
    assert all(type(figure) is ProductFigures for figure in figures.values())


def test_forget_leaves_nothing_of_the_user_and_the_figures_as_if_never_there(store_url):
    others = [
        event("o1", user="u2", type_="purchase"),
        event("o2", user="u2", type_="purchase", time=T0 + 1),
        event("o3", user="u2", product="p2", type_="cart", category="garden"),
        event("o4", user="u3", product="p2", type_="purchase", category="garden"),
    ]
    forgotten = [
        event("forget-me-1", user="user-to-forget", type_="purchase"),
        event("forget-me-2", user="user-to-forget", type_="purchase", time=T0 + 2),
        event("forget-me-3", user="user-to-forget", product="p2", type_="purchase", category="garden"),
        event("forget-me-4", user="user-to-forget", product="p2", type_="click", category="garden"),
        event("forget-me-5", user="user-to-forget", product="p-only-forgotten", type_="purchase", category="paint"),
        event("forget-me-6", user="user-to-forget", product="p3", type_="view", category="paint"),
    ]

    async def work(store):
        await store.append(forgotten[:3] + others + forgotten[3:])
        with_user = await store.product_figures()
        deleted = await store.forget("user-to-forget")
        return with_user, deleted, await store.user_events("user-to-forget"), await store.product_figures()

    with_user, deleted, left, after = with_store(store_url, work)
    assert with_user == {"p1": (4.0, 2), "p2": (2.0, 0), "p-only-forgotten": (1.0, 0)}  # bought products only
    assert after == {"p1": (2.0, 1), "p2": (1.0, 0)}  # the other users' figures alone
    assert (deleted, left) == (6, [])
    dump = stored_text(store_url)
    assert "o1" in dump and "user-to-forget" not in dump and "forget-me" not in dump and "p-only-forgotten" not in dump
    # The event ids went too, so the same ids are new again.
    assert with_store(store_url, lambda store: store.append(forgotten[:1])) == [True]


# What the stores held before product_figures: every event type counted per product (buyers, clicks, carts, views,
# which nothing read) and purchases per category. u1 bought p1 twice and viewed p2; u2 bought p1 once.
OLD_EVENTS = [event("e1", type_="purchase"), event("e2", type_="purchase", time=T0 + 5),
              event("e3", product="p2", category="garden", time=T0 + 2), event("e4", user="u2", type_="purchase")]
OLD_SQLITE = """
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL, product_id TEXT NOT NULL, type TEXT NOT NULL, time REAL NOT NULL,
    query TEXT NOT NULL, quantity INTEGER NOT NULL, category TEXT NOT NULL
);
CREATE INDEX events_by_user ON events (user_id, time, seq);
CREATE TABLE product_stats (
    product_id TEXT PRIMARY KEY, purchases INTEGER NOT NULL, buyers INTEGER NOT NULL, reorders INTEGER NOT NULL,
    clicks INTEGER NOT NULL, carts INTEGER NOT NULL, views INTEGER NOT NULL
);
CREATE TABLE category_stats (category TEXT PRIMARY KEY, purchases INTEGER NOT NULL);
CREATE TABLE user_bought (
    user_id TEXT NOT NULL, product_id TEXT NOT NULL, PRIMARY KEY (user_id, product_id)
) WITHOUT ROWID;
INSERT INTO product_stats VALUES ('p1', 3, 2, 1, 0, 0, 0), ('p2', 0, 0, 0, 0, 0, 1);
INSERT INTO category_stats VALUES ('tools', 3);
INSERT INTO user_bought VALUES ('u1', 'p1'), ('u2', 'p1');
"""


def write_old_layout(url: str) -> None:
    if url.startswith("sqlite:///"):
        with closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            db.executescript(OLD_SQLITE)
            db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [(seq, *(getattr(e, name) for name in STORED_FIELDS)) for seq, e in enumerate(OLD_EVENTS, 1)])
            db.commit()
        return
    with redis.Redis.from_url(url, decode_responses=True) as client:
        for seq, e in enumerate(OLD_EVENTS, 1):
            client.set(f"shoprank:event:{e.event_id}", e.user_id)
            client.zadd(f"shoprank:user:{e.user_id}:events",
                        {f"{seq:020d}" + json.dumps({name: getattr(e, name) for name in STORED_FIELDS}, ensure_ascii=False): e.time})
        client.sadd("shoprank:user:u1:bought", "p1")
        client.sadd("shoprank:user:u2:bought", "p1")
        client.hset("shoprank:product:p1", mapping={"purchases": 3, "buyers": 2, "reorders": 1})
        client.hset("shoprank:product:p2", mapping={"views": 1})
        client.hset("shoprank:category_purchases", "tools", 3)
        client.zadd("shoprank:purchases_by_product", {"p1": 3})
        client.hset("shoprank:reorders_by_product", "p1", 1)
        client.set("shoprank:seq", len(OLD_EVENTS))


def test_a_store_written_before_product_figures_loads_and_forgets(store_url):
    write_old_layout(store_url)

    async def work(store):
        before = await store.user_events("u1"), await store.product_figures()
        assert await store.append([event("e5", user="u2", type_="purchase", time=T0 + 9)]) == [True]  # a reorder
        added = await store.product_figures()
        return before, added, await store.forget("u1"), await store.product_figures()

    (events, figures), added, deleted, after = with_store(store_url, work)
    assert events == [OLD_EVENTS[0], OLD_EVENTS[2], OLD_EVENTS[1]] and figures == {"p1": (3.0, 1)}
    assert added == {"p1": (4.0, 2)}
    assert deleted == 3 and after == {"p1": (2.0, 1)}
    # The old counts went with the user: nothing tells that u1 was there, nor what they viewed.
    dump = stored_text(store_url)
    assert "e4" in dump and "u1" not in dump and "p2" not in dump and "buyers" not in dump
    # And it opens again as it is now.
    assert with_store(store_url, lambda store: store.product_figures()) == {"p1": (2.0, 1)}


def test_a_second_store_on_the_same_url_shares_the_data(store_url):
    async def work():
        first, second = open_store(store_url), open_store(store_url)
        try:
            await first.start()
            await second.start()
            assert await first.append([event("e1", type_="purchase")]) == [True]
            assert await second.user_events("u1") == [event("e1", type_="purchase")]
            assert await second.append([event("e1", type_="purchase"), event("e2", type_="purchase")]) == [False, True]
            return await first.product_figures()
        finally:
            await first.close()
            await second.close()

    assert asyncio.run(work()) == {"p1": (2.0, 1)}
    # And a store opened later, as after a restart, finds it all.
    assert [e.event_id for e in with_store(store_url, lambda store: store.user_events("u1"))] == ["e1", "e2"]


@pytest.mark.parametrize(
    "url, kind, path",
    [
        ("sqlite:///relative/profiles.db", SQLiteStore, Path("relative/profiles.db")),
        ("sqlite:////absolute/profiles.db", SQLiteStore, Path("/absolute/profiles.db")),
        ("data/profiles.db", SQLiteStore, Path("data/profiles.db")),
        ("redis://127.0.0.1:6379/0", RedisStore, None),
    ],
)
def test_open_store_picks_the_backend_from_the_url(url, kind, path):
    store = open_store(url)
    assert isinstance(store, kind)
    assert path is None or store.path == path


@pytest.mark.parametrize("url", ["postgres://db/profiles", "sqlite://profiles.db", "sqlite:///", ""])
def test_open_store_refuses_other_urls_saying_what_it_accepts(url):
    with pytest.raises(ConfigError, match="use sqlite:///relative/path.db, sqlite:////absolute/path.db"):
        open_store(url)


@pytest.mark.parametrize("url", ["redis://:hunter2@127.0.0.1:6379/0", "redis://alice:hunter2@127.0.0.1:6379/0"])
def test_a_redis_password_never_shows_in_the_url(url):
    assert "hunter2" not in open_store(url).url and "127.0.0.1:6379/0" in open_store(url).url


def test_a_sqlite_file_that_cannot_be_created_is_unavailable_naming_the_path(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(StoreUnavailable, match=re.escape(f"cannot create the directory {blocker}/sub")):
        with_store(f"sqlite:///{blocker}/sub/profiles.db", lambda store: store.user_events("u1"))
    unopenable = re.escape(f"profile store sqlite:///{tmp_path} cannot be read or written")
    with pytest.raises(StoreUnavailable, match=unopenable):
        with_store(f"sqlite:///{tmp_path}", lambda store: store.user_events("u1"))  # a directory, not a file


def test_redis_down_at_start_is_unavailable_with_what_to_do():
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(StoreUnavailable, match=re.escape(f"profile store {url} is unreachable: ") + ".*redis-server"):
        with_store(url, lambda store: store.user_events("u1"))


def test_redis_killed_while_open_fails_the_append_and_it_is_not_recorded():
    with RedisServer() as server:

        async def work():
            store = open_store(server.url)
            try:
                await store.start()
                assert await store.append([event("e1")]) == [True]
                server.kill()
                with pytest.raises(StoreUnavailable, match=re.escape(f"profile store {server.url} is unreachable")):
                    await store.append([event("e2")])
                with pytest.raises(StoreUnavailable):
                    await store.user_events("u1")
                server.restart()
                return await store.user_events("u1"), await store.append([event("e2")])
            finally:
                await store.close()

        events, added = asyncio.run(work())
    assert [e.event_id for e in events] == ["e1"]
    assert added == [True]


def test_an_event_survives_kill_9_right_after_its_append_returned():
    with RedisServer() as server:
        assert with_store(server.url, lambda store: store.append([event("e1", type_="purchase")])) == [True]
        server.restart()  # SIGKILL: no shutdown, no save; only the AOF
        events = with_store(server.url, lambda store: store.user_events("u1"))
        figures = with_store(server.url, lambda store: store.product_figures())
        replay = with_store(server.url, lambda store: store.append([event("e1", type_="purchase")]))
    assert events == [event("e1", type_="purchase")]
    assert figures == {"p1": (1.0, 0)}
    assert replay == [False]


def test_a_redis_that_would_lose_acknowledged_events_is_refused():
    with RedisServer(appendonly=False) as server, redis.Redis.from_url(server.url) as client:
        with pytest.raises(StoreError, match="appendonly no and appendfsync always: .* would not be durable") as error:
            with_store(server.url, lambda store: store.user_events("u1"))
        assert not isinstance(error.value, StoreUnavailable)
        client.config_set("appendonly", "yes")
        client.config_set("appendfsync", "everysec")
        with pytest.raises(StoreError, match="appendonly yes and appendfsync everysec"):
            with_store(server.url, lambda store: store.user_events("u1"))
        client.config_set("appendfsync", "always")
        with_store(server.url, lambda store: store.user_events("u1"))


def test_sqlite_commits_in_wal_mode_with_full_sync(tmp_path):
    # synchronous is a setting of each connection, so ask the store's own.
    url = f"sqlite:///{tmp_path}/profiles.db"
    synchronous = with_store(url, lambda store: store._call(store._read, "PRAGMA synchronous", ()))
    assert synchronous == [(2,)]  # FULL
    with closing(sqlite3.connect(tmp_path / "profiles.db")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
