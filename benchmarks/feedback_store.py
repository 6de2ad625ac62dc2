"""Sustained append throughput of each profile store, fed in batches as the feedback stream feeds it.

Usage:
    .venv/bin/python benchmarks/feedback_store.py [--events 100000] [--batch 500] [--users 10000] [--products 50000]

Appends synthetic events (70% views, 20% clicks, 7% carts, 3% purchases, random users and products) one batch
after another, each awaited before the next, into a SQLite file in a temporary directory and into a redis-server
started for the run (AOF, appendfsync always). Prints, per store, events/s over the whole run and the p50/p99 latency
of one batch's append, which returns only once the batch is durable (fsynced).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from orchestrator.personalization.events import Event  # noqa: E402
from orchestrator.personalization.store import open_store  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402


def synthetic_events(count: int, users: int, products: int, seed: int = 0) -> list[Event]:
    """Feedback events in arrival order, with a catalog of 100 categories."""
    rng = random.Random(seed)
    types = rng.choices(["view", "click", "cart", "purchase"], weights=[70, 20, 7, 3], k=count)
    start = time.time() - count
    events = []
    for index, type_ in enumerate(types):
        product = rng.randrange(products)
        events.append(Event(f"event-{seed}-{index}", f"user-{rng.randrange(users)}", f"product-{product}", type_,
                            start + index, query="cordless drill", category=f"category-{product % 100}"))
    return events


async def append_all(url: str, events: list[Event], batch: int) -> tuple[float, list[float]]:
    """Seconds for the whole run and each batch's append latency, appending into the store at `url`."""
    store = open_store(url)
    await store.start()
    try:
        latencies = []
        began = time.perf_counter()
        for offset in range(0, len(events), batch):
            sent = time.perf_counter()
            await store.append(events[offset : offset + batch])
            latencies.append(time.perf_counter() - sent)
        return time.perf_counter() - began, latencies
    finally:
        await store.close()


def report(name: str, events: int, batch: int, seconds: float, latencies: list[float]) -> None:
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99])
    print(f"{name:7} {events / seconds:>9,.0f} events/s  ({events:,} events in {seconds:.2f} s; "
          f"append of {batch} events: p50 {p50:.1f} ms, p99 {p99:.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=50_000)
    args = parser.parse_args()

    events = synthetic_events(args.events, args.users, args.products)
    with tempfile.TemporaryDirectory(prefix="shoprank-bench-") as directory:
        seconds, latencies = asyncio.run(append_all(f"sqlite:///{directory}/profiles.db", events, args.batch))
    report("sqlite", args.events, args.batch, seconds, latencies)
    with RedisServer() as server:
        seconds, latencies = asyncio.run(append_all(server.url, events, args.batch))
    report("redis", args.events, args.batch, seconds, latencies)


if __name__ == "__main__":
    main()
