"""What personalization adds to one search, as served: the profile read from a real store, built, and the blend.

Usage:
    .venv/bin/python benchmarks/personalization_cost.py [--runs 500] [--events 300] [--candidates 100] [--store sqlite|redis]

A catalog of 5,000 products (384-dimensional unit embeddings, like the bi-encoder's), one user with --events
events in the store, and a relevance order of --candidates products of which 10 are the user's own. Per run, the
Personalizer reads the user's events and builds the profile (what a search awaits before retrieval), then reads
the candidates' product and category figures and scores them with the released blend (models/blend). Prints
p50/p99 in milliseconds of each step and of both together. Redis is a real redis-server started here.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.catalog import Product  # noqa: E402
from core.settings import Settings  # noqa: E402
from orchestrator.catalog.memory import MemoryCatalog  # noqa: E402
from orchestrator.fusion import fuse  # noqa: E402
from orchestrator.index import CatalogIndex  # noqa: E402
from orchestrator.personalization.blend import BlendModel  # noqa: E402
from orchestrator.personalization.events import Event  # noqa: E402
from orchestrator.personalization.personalizer import Personalizer  # noqa: E402
from orchestrator.personalization.store import open_store  # noqa: E402
from orchestrator.retrieval import DenseIndex, LexicalIndex  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

PRODUCTS = 5000


def catalog_index() -> CatalogIndex:
    rng = np.random.default_rng(0)
    products = [Product(f"p{i}", f"product {i}", brand=f"b{i % 300}", category=f"c{i % 120}", department=f"d{i % 20}")
                for i in range(PRODUCTS)]
    embeddings = rng.standard_normal((PRODUCTS, 384)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    multilingual = rng.standard_normal((PRODUCTS, 512)).astype(np.float32)
    multilingual /= np.linalg.norm(multilingual, axis=1, keepdims=True)
    return CatalogIndex(products=products, lexical=LexicalIndex.build([p.title for p in products]),
                        dense=DenseIndex.build(embeddings), multilingual=DenseIndex.build(multilingual), intent=None,
                        manifest={"catalog_sha256": "0" * 64})


async def measure(store_url: str, args: argparse.Namespace) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    index = catalog_index()
    store = open_store(store_url)
    await store.start()
    now = time.time()
    favourites = rng.choice(PRODUCTS, 60, replace=False)
    kinds = rng.choice(["view", "click", "cart", "purchase"], args.events, p=[0.4, 0.3, 0.1, 0.2])
    events = [Event(f"e{i}", "user", f"p{rng.choice(favourites)}", str(kind), now - float(rng.integers(1, 365)) * 86400)
              for i, kind in enumerate(kinds)]
    others = [Event(f"o{i}", f"other{i % 200}", f"p{rng.integers(PRODUCTS)}", "purchase", now - 86400) for i in range(20_000)]
    await store.append(others)
    await store.append(events)
    blend = BlendModel.load(args.model)
    catalog = MemoryCatalog(index)
    personalizer = Personalizer(store, catalog, blend, Settings(blend_depth=args.candidates))
    rows = np.unique(np.concatenate([favourites[:10], rng.choice(PRODUCTS, args.candidates - 10, replace=False)]))
    candidates = await catalog.fetch([index.products[row].product_id for row in rows.tolist()], ("dense",))
    pool = fuse(np.arange(len(rows)), {"bm25": rng.random(len(rows))}, "weighted")

    times = {"profile (read + build)": [], "blend (figures + features + score)": [], "both": []}
    for run in range(args.runs + 20):
        started = time.perf_counter()
        profile = await personalizer.profile("user")
        middle = time.perf_counter()
        await personalizer.blend(candidates, pool, pool, profile, explain=False)
        ended = time.perf_counter()
        if run >= 20:  # warm-up
            times["profile (read + build)"].append(middle - started)
            times["blend (figures + features + score)"].append(ended - middle)
            times["both"].append(ended - started)
    await store.close()
    return {name: np.array(values) * 1000 for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--store", choices=("sqlite", "redis"), action="append")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "blend")
    args = parser.parse_args()
    for kind in args.store or ["sqlite", "redis"]:
        with tempfile.TemporaryDirectory() as scratch:
            if kind == "sqlite":
                results = asyncio.run(measure(f"sqlite:///{Path(scratch).resolve()}/profiles.db", args))
            else:
                with RedisServer() as server:
                    results = asyncio.run(measure(server.url, args))
        print(f"{kind}: user with {args.events} events, {args.candidates} candidates, {args.runs} runs")
        for name, values in results.items():
            print(f"  {name:<38} p50 {np.percentile(values, 50):6.2f} ms   p99 {np.percentile(values, 99):6.2f} ms")


if __name__ == "__main__":
    main()
