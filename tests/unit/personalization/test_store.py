"""The profile stores behind one interface: each store test runs on a SQLite file and on a real redis-server."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import redis

from core.errors import ConfigError, StoreError, StoreUnavailable
from orchestrator.personalization.events import Event
from orchestrator.personalization.redis_store import RedisStore
from orchestrator.personalization.sqlite_store import SQLiteStore
from orchestrator.personalization.store import ProductStats, open_store
from tests.redis_server import RedisServer, free_port

T0 = 1_700_000_000.0
PRODUCTS = ["p1", "p2", "p3", "p-only-forgotten"]
CATEGORIES = ["tools", "garden", "paint"]


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


async def figures(store) -> tuple[dict, dict]:
    return await store.product_stats(PRODUCTS), await store.category_purchases(CATEGORIES)


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
        return await store.user_events("u1"), await store.product_stats(["p1"])

    events, stats = with_store(store_url, work)
    assert [e.event_id for e in events] == ["e1", "e2", "e3"]
    assert stats == {"p1": ProductStats(purchases=2, buyers=1, reorders=1, views=1)}


def test_product_and_category_figures(store_url):
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
        return await store.product_stats(["p1", "p2", "p9"]), await store.category_purchases(["tools", "garden", "x"])

    stats, categories = with_store(store_url, work)
    assert stats == {
        "p1": ProductStats(purchases=3, buyers=2, reorders=1, clicks=1, carts=1, views=1),
        "p2": ProductStats(purchases=1, buyers=1, views=1),
        "p9": ProductStats(),
    }
    assert stats["p1"].reorder_rate == pytest.approx(1 / 3)
    assert stats["p2"].reorder_rate == 0 and stats["p9"].reorder_rate == 0
    assert categories == {"tools": 3.0, "garden": 1.0, "x": 0.0}


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
        with_user = await figures(store), await store.product_figures()
        deleted = await store.forget("user-to-forget")
        return with_user, deleted, await figures(store), await store.user_events("user-to-forget"), await store.product_figures()

    (with_user, counts), deleted, after, left, counts_after = with_store(store_url, work)
    assert with_user[0]["p1"] == ProductStats(purchases=4, buyers=2, reorders=2)
    assert counts == {"p1": (4.0, 2), "p2": (2.0, 0), "p-only-forgotten": (1.0, 0)}  # bought products only
    assert counts_after == {"p1": (2.0, 1), "p2": (1.0, 0)}
    assert (deleted, left) == (6, [])
    assert after == (  # the other users' figures alone
        {
            "p1": ProductStats(purchases=2, buyers=1, reorders=1),
            "p2": ProductStats(purchases=1, buyers=1, carts=1),
            "p3": ProductStats(),
            "p-only-forgotten": ProductStats(),
        },
        {"tools": 2.0, "garden": 1.0, "paint": 0.0},
    )
    dump = stored_text(store_url)
    assert "o1" in dump and "user-to-forget" not in dump and "forget-me" not in dump and "p-only-forgotten" not in dump
    # The event ids went too, so the same ids are new again.
    assert with_store(store_url, lambda store: store.append(forgotten[:1])) == [True]


def test_a_second_store_on_the_same_url_shares_the_data(store_url):
    async def work():
        first, second = open_store(store_url), open_store(store_url)
        try:
            await first.start()
            await second.start()
            assert await first.append([event("e1", type_="purchase")]) == [True]
            assert await second.user_events("u1") == [event("e1", type_="purchase")]
            assert await second.append([event("e1", type_="purchase"), event("e2", type_="purchase")]) == [False, True]
            return await first.product_stats(["p1"])
        finally:
            await first.close()
            await second.close()

    assert asyncio.run(work()) == {"p1": ProductStats(purchases=2, buyers=1, reorders=1)}
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
        with_store(f"sqlite:///{blocker}/sub/profiles.db", lambda store: store.ping())
    unopenable = re.escape(f"profile store sqlite:///{tmp_path} cannot be read or written")
    with pytest.raises(StoreUnavailable, match=unopenable):
        with_store(f"sqlite:///{tmp_path}", lambda store: store.ping())  # a directory, not a file


def test_redis_down_at_start_is_unavailable_with_what_to_do():
    url = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(StoreUnavailable, match=re.escape(f"profile store {url} is unreachable: ") + ".*redis-server"):
        with_store(url, lambda store: store.ping())


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
                    await store.ping()
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
        stats = with_store(server.url, lambda store: store.product_stats(["p1"]))
        replay = with_store(server.url, lambda store: store.append([event("e1", type_="purchase")]))
    assert events == [event("e1", type_="purchase")]
    assert stats == {"p1": ProductStats(purchases=1, buyers=1)}
    assert replay == [False]


def test_a_redis_that_would_lose_acknowledged_events_is_refused():
    with RedisServer(appendonly=False) as server, redis.Redis.from_url(server.url) as client:
        with pytest.raises(StoreError, match="appendonly no and appendfsync always: .* would not be durable") as error:
            with_store(server.url, lambda store: store.ping())
        assert not isinstance(error.value, StoreUnavailable)
        client.config_set("appendonly", "yes")
        client.config_set("appendfsync", "everysec")
        with pytest.raises(StoreError, match="appendonly yes and appendfsync everysec"):
            with_store(server.url, lambda store: store.ping())
        client.config_set("appendfsync", "always")
        with_store(server.url, lambda store: store.ping())


def test_sqlite_commits_in_wal_mode_with_full_sync(tmp_path):
    # synchronous is a setting of each connection, so ask the store's own.
    url = f"sqlite:///{tmp_path}/profiles.db"
    synchronous = with_store(url, lambda store: store._call(store._read, "PRAGMA synchronous", ()))
    assert synchronous == [(2,)]  # FULL
    with closing(sqlite3.connect(tmp_path / "profiles.db")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
