"""The profile store in Redis, shared by several replicas: Lua scripts keep each append and each forget atomic.

Keys, under a prefix ("shoprank:" by default) so that a shared Redis is safe:

    {prefix}event:{event_id}         the event's dedupe record (its user id)
    {prefix}user:{user_id}:events    sorted set: score the event's time, member a 20-digit arrival number + its JSON
    {prefix}user:{user_id}:bought    set: the products the user has bought
    {prefix}purchases_by_product     sorted set: product id -> purchase events (products bought at least once)
    {prefix}reorders_by_product      hash: product id -> reorders
    {prefix}seq                      the arrival counter

Stores written before these were the only figures also hold {prefix}product:{product_id} (a hash of every event
type's count) and {prefix}category_purchases, which nothing reads: forget deletes the hashes of the user's products
and category_purchases, so that nothing of the user stays behind in them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from redis import exceptions
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from core.errors import StoreError, StoreUnavailable
from orchestrator.personalization.events import STORED_FIELDS, Event
from orchestrator.personalization.store_interface import ProductFigures

# One call per batch: the batch is written atomically, and made durable by one AOF fsync rather than one per event.
# Members of a user's sorted set order by time, then (the arrival number's digits) by arrival.
APPEND = """
-- KEYS: arrival counter, purchases by product, reorders by product, then per event: event id, user's events,
-- user's purchases
-- ARGV: per event: user id, product id, type, time, event JSON
local added = {}
for i = 0, #ARGV / 5 - 1 do
    local key, arg = 3 + 3 * i, 5 * i
    added[i + 1] = 0
    if redis.call('SET', KEYS[key + 1], ARGV[arg + 1], 'NX') then
        local seq = redis.call('INCR', KEYS[1])
        redis.call('ZADD', KEYS[key + 2], ARGV[arg + 4], string.format('%020d', seq) .. ARGV[arg + 5])
        if ARGV[arg + 3] == 'purchase' then
            redis.call('ZINCRBY', KEYS[2], 1, ARGV[arg + 2])
            if redis.call('SADD', KEYS[key + 3], ARGV[arg + 2]) == 0 then
                redis.call('HINCRBY', KEYS[3], ARGV[arg + 2], 1)
            end
        end
        added[i + 1] = 1
    end
end
return added
"""

# Reads the keys to change from the user's events, so it cannot declare them up front (fine outside Redis Cluster).
FORGET = """
-- KEYS: user's events, user's purchases, purchases by product, reorders by product
-- ARGV: key prefix
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local bought = {}
for _, member in ipairs(members) do
    local event = cjson.decode(string.sub(member, 21))
    redis.call('DEL', ARGV[1] .. 'event:' .. event.event_id, ARGV[1] .. 'product:' .. event.product_id)
    if event.type == 'purchase' then
        -- Products only this user bought would otherwise stay behind as zeros, telling that someone was there.
        if tonumber(redis.call('ZINCRBY', KEYS[3], -1, event.product_id)) <= 0 then
            redis.call('ZREM', KEYS[3], event.product_id)
        end
        if bought[event.product_id] and redis.call('HINCRBY', KEYS[4], event.product_id, -1) <= 0 then
            redis.call('HDEL', KEYS[4], event.product_id)
        end
        bought[event.product_id] = true
    end
end
redis.call('DEL', KEYS[1], KEYS[2], ARGV[1] .. 'category_purchases')
return #members
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
        keys, args = [self._key("seq"), self._key("purchases_by_product"), self._key("reorders_by_product")], []
        for event in events:
            keys += [
                self._key("event", event.event_id),
                self._key("user", event.user_id, "events"),
                self._key("user", event.user_id, "bought"),
            ]
            document = json.dumps({name: getattr(event, name) for name in STORED_FIELDS}, ensure_ascii=False)
            args += [event.user_id, event.product_id, event.type, repr(event.time), document]
        with self._errors():
            return [added == 1 for added in await self._append(keys, args)]

    async def user_events(self, user_id: str, limit: int = 10_000) -> list[Event]:
        """The user's most recent `limit` events, oldest first (by time, then arrival)."""
        if limit < 1:  # ZRANGE -0 -1 would be every event
            return []
        with self._errors():
            members = await self._redis.zrange(self._key("user", user_id, "events"), -limit, -1)
        return [Event(**json.loads(member[20:])) for member in members]

    async def product_figures(self) -> dict[str, ProductFigures]:
        """The figures of every product bought at least once."""
        pipe = self._redis.pipeline(transaction=True)  # one snapshot of both
        pipe.zrange(self._key("purchases_by_product"), 0, -1, withscores=True)
        pipe.hgetall(self._key("reorders_by_product"))
        with self._errors():
            purchases, reorders = await pipe.execute()
        return {product_id: ProductFigures(float(count), int(reorders.get(product_id, 0)))
                for product_id, count in purchases}

    async def forget(self, user_id: str) -> int:
        """Delete the user's events, event ids and purchases, and take them out of the figures; return the count."""
        user = self._key("user", user_id)
        keys = [f"{user}:events", f"{user}:bought", self._key("purchases_by_product"), self._key("reorders_by_product")]
        with self._errors():
            return await self._forget(keys, [self.prefix])

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
