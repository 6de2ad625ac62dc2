"""The profile store in Redis, shared by several replicas: Lua scripts keep each append and each forget atomic.

Keys, under a prefix ("shoprank:" by default) so that a shared Redis is safe:

    {prefix}event:{event_id}         the event's dedupe record (its user id)
    {prefix}user:{user_id}:events    sorted set: score the event's time, member a 20-digit arrival number + its JSON
    {prefix}user:{user_id}:bought    set: the products the user has bought
    {prefix}product:{product_id}     hash: ProductStats' counters
    {prefix}category_purchases       hash: category -> purchase events
    {prefix}purchases_by_product     sorted set: product id -> purchase events (products bought at least once)
    {prefix}reorders_by_product      hash: product id -> reorders
    {prefix}seq                      the arrival counter
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields

from redis import exceptions
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from core.errors import StoreError, StoreUnavailable
from orchestrator.personalization.events import Event
from orchestrator.personalization.store import COUNTERS, ProductStats

STATS = [field.name for field in fields(ProductStats)]

# One call per batch: the batch is written atomically, and made durable by one AOF fsync rather than one per event.
# Members of a user's sorted set order by time, then (the arrival number's digits) by arrival.
APPEND = """
-- KEYS: category purchases, arrival counter, purchases by product, reorders by product, then per event: event id,
-- user's events, user's purchases, product
-- ARGV: per event: user id, product id, counter, time, event JSON, category
local added = {}
for i = 0, #ARGV / 6 - 1 do
    local key, arg = 4 + 4 * i, 6 * i
    added[i + 1] = 0
    if redis.call('SET', KEYS[key + 1], ARGV[arg + 1], 'NX') then
        local seq = redis.call('INCR', KEYS[2])
        redis.call('ZADD', KEYS[key + 2], ARGV[arg + 4], string.format('%020d', seq) .. ARGV[arg + 5])
        redis.call('HINCRBY', KEYS[key + 4], ARGV[arg + 3], 1)
        if ARGV[arg + 3] == 'purchases' then
            redis.call('HINCRBY', KEYS[1], ARGV[arg + 6], 1)
            redis.call('ZINCRBY', KEYS[3], 1, ARGV[arg + 2])
            local first = redis.call('SADD', KEYS[key + 3], ARGV[arg + 2]) == 1
            redis.call('HINCRBY', KEYS[key + 4], first and 'buyers' or 'reorders', 1)
            if not first then redis.call('HINCRBY', KEYS[4], ARGV[arg + 2], 1) end
        end
        added[i + 1] = 1
    end
end
return added
"""

# Reads the keys to change from the user's events, so it cannot declare them up front (fine outside Redis Cluster).
FORGET = """
-- KEYS: user's events, user's purchases, category purchases, purchases by product, reorders by product
-- ARGV: key prefix
local counters = {view = 'views', click = 'clicks', cart = 'carts', purchase = 'purchases'}
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local touched, bought = {}, {}
for _, member in ipairs(members) do
    local event = cjson.decode(string.sub(member, 21))
    local product = ARGV[1] .. 'product:' .. event.product_id
    redis.call('DEL', ARGV[1] .. 'event:' .. event.event_id)
    redis.call('HINCRBY', product, counters[event.type], -1)
    touched[product] = true
    if event.type == 'purchase' then
        if redis.call('HINCRBY', KEYS[3], event.category, -1) == 0 then redis.call('HDEL', KEYS[3], event.category) end
        if tonumber(redis.call('ZINCRBY', KEYS[4], -1, event.product_id)) <= 0 then
            redis.call('ZREM', KEYS[4], event.product_id)
        end
        redis.call('HINCRBY', product, bought[product] and 'reorders' or 'buyers', -1)
        if bought[product] and redis.call('HINCRBY', KEYS[5], event.product_id, -1) <= 0 then
            redis.call('HDEL', KEYS[5], event.product_id)
        end
        bought[product] = true
    end
end
-- Hashes only this user made would otherwise stay behind as zeros, telling that someone was there.
for product in pairs(touched) do
    local left = 0
    for _, count in ipairs(redis.call('HMGET', product, 'purchases', 'clicks', 'carts', 'views')) do
        left = left + (tonumber(count) or 0)
    end
    if left == 0 then redis.call('DEL', product) end
end
redis.call('DEL', KEYS[1], KEYS[2])
return #members
"""


# Each key's HMGET of the fields in ARGV, in one round trip and one command.
STATS_OF = """
local rows = {}
for index, key in ipairs(KEYS) do
    rows[index] = redis.call('HMGET', key, unpack(ARGV))
end
return rows
"""

class RedisStore:
    """The profile store in a Redis server that runs with appendonly yes and appendfsync always."""

    def __init__(self, url: str, prefix: str = "shoprank:") -> None:
        self.url = re.sub(r"(?<=://)([^:@/]*):[^@]*@", r"\1:***@", url, count=1)
        self.prefix = prefix
        self._target = url
        self._redis: Redis | None = None

    async def start(self) -> None:
        """Connect, and refuse a server that could lose what it acknowledged."""
        # Few, quick retries: ride out a dropped connection, but tell the caller soon when Redis is down. Retrying an
        # append is safe: an event already applied is skipped by its dedupe record.
        retry = Retry(ExponentialBackoff(cap=0.1, base=0.01), retries=2)
        self._redis = Redis.from_url(self._target, decode_responses=True, retry=retry)
        self._append = self._redis.register_script(APPEND)
        self._forget = self._redis.register_script(FORGET)
        self._stats = self._redis.register_script(STATS_OF)
        with self._errors():
            config = await self._redis.config_get("append*")
        if config.get("appendonly") != "yes" or config.get("appendfsync") != "always":
            raise StoreError(
                f"profile store {self.url} runs with appendonly {config.get('appendonly')} and appendfsync "
                f"{config.get('appendfsync')}: acknowledged events would not be durable "
                "(run redis-server --appendonly yes --appendfsync always)"
            )

    async def append(self, events: Sequence[Event]) -> list[bool]:
        """Record the new events and their figures atomically, in one call; False for each event id already recorded."""
        keys, args = [self._key("category_purchases"), self._key("seq"), self._key("purchases_by_product"),
                      self._key("reorders_by_product")], []
        for event in events:
            keys += [
                self._key("event", event.event_id),
                self._key("user", event.user_id, "events"),
                self._key("user", event.user_id, "bought"),
                self._key("product", event.product_id),
            ]
            document = json.dumps(vars(event), ensure_ascii=False)
            args += [event.user_id, event.product_id, COUNTERS[event.type], repr(event.time), document, event.category]
        with self._errors():
            return [added == 1 for added in await self._append(keys, args)]

    async def user_events(self, user_id: str, limit: int = 10_000) -> list[Event]:
        """The user's most recent `limit` events, oldest first (by time, then arrival)."""
        if limit < 1:  # ZRANGE -0 -1 would be every event
            return []
        with self._errors():
            members = await self._redis.zrange(self._key("user", user_id, "events"), -limit, -1)
        return [Event(**json.loads(member[20:])) for member in members]

    async def product_stats(self, product_ids: Sequence[str]) -> dict[str, ProductStats]:
        """Each product's figures; zero stats for a product nobody touched."""
        ids = list(dict.fromkeys(product_ids))
        if not ids:
            return {}
        # One script call rather than a pipeline of HMGETs: building and parsing 100 commands costs the client ~5 ms.
        with self._errors():
            rows = await self._stats([self._key("product", product_id) for product_id in ids], STATS)
        return {
            product_id: ProductStats(float(row[0] or 0), *(int(count or 0) for count in row[1:]))
            for product_id, row in zip(ids, rows)
        }

    async def product_figures(self) -> dict[str, tuple[float, int]]:
        """(purchase events, reorders) of every product bought at least once."""
        pipe = self._redis.pipeline(transaction=True)  # one snapshot of both
        pipe.zrange(self._key("purchases_by_product"), 0, -1, withscores=True)
        pipe.hgetall(self._key("reorders_by_product"))
        with self._errors():
            purchases, reorders = await pipe.execute()
        return {product_id: (float(count), int(reorders.get(product_id, 0))) for product_id, count in purchases}

    async def category_purchases(self, categories: Sequence[str]) -> dict[str, float]:
        """Each category's purchase events; 0 for a category nobody bought from."""
        names = list(dict.fromkeys(categories))
        if not names:  # HMGET needs at least one field
            return {}
        with self._errors():
            counts = await self._redis.hmget(self._key("category_purchases"), names)
        return {name: float(count or 0) for name, count in zip(names, counts)}

    async def forget(self, user_id: str) -> int:
        """Delete the user's events, event ids and purchases, and take them out of the figures; return the count."""
        user = self._key("user", user_id)
        keys = [f"{user}:events", f"{user}:bought", self._key("category_purchases"), self._key("purchases_by_product"),
                self._key("reorders_by_product")]
        with self._errors():
            return await self._forget(keys, [self.prefix])

    async def ping(self) -> None:
        """Raise StoreUnavailable unless Redis answers."""
        with self._errors():
            await self._redis.ping()

    async def close(self) -> None:
        """Close the connections."""
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (exceptions.ConnectionError, exceptions.TimeoutError) as error:
            raise StoreUnavailable(
                f"profile store {self.url} is unreachable: {error} "
                "(start redis-server, or use --profile-store sqlite:///path/to/profiles.db)"
            ) from error
        except exceptions.ReadOnlyError as error:
            raise StoreUnavailable(f"profile store {self.url} refuses writes: {error}") from error
        except exceptions.RedisError as error:
            raise StoreError(f"profile store {self.url} failed: {error}") from error
