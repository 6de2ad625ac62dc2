"""Retrieval from a shop's catalog in a fresh Milvus Lite server: insert rate, search latency, time to visible.

Usage:
    .venv/bin/python benchmarks/milvus_retrieval.py [--products 47742] [--index IVF_FLAT] [--queries 200]
        [--catalog ../shared/data/home-depot-product-search-relevance/catalog.csv]

Loads the first N products of the catalog (real titles; random unit vectors of 384 and 512 dimensions standing in for
the two encoders, random stock 0-4 and prices $1-$500, so the vectors' latencies are real and their rankings are not)
through orchestrator.catalog.milvus into a Milvus Lite server started for the run (orchestrator.catalog.milvus_process), in batches
of 1,000, each acknowledged (committed) before the next. Then, one call at a time from one client:
BM25 top-100 for queries made of 1-3 words of random titles; dense top-100 (the 384-d field) for random unit
vectors; the same dense search filtered to in-stock products under $100; and, for single-product upserts of a new
word, the time from the upsert's acknowledgement to the product's first appearance in a BM25 search through a second
connection (a second replica), polled without pause.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from core.catalog import Product, load_catalog  # noqa: E402
from orchestrator.filters import Filter  # noqa: E402
from orchestrator.catalog.milvus import (DENSE, CatalogRecord, CollectionSpec, MilvusCatalog,  # noqa: E402
                                         filter_expression)
from orchestrator.catalog.milvus_process import LocalMilvus  # noqa: E402

DEFAULT_CATALOG = ROOT.parent / "shared" / "data" / "home-depot-product-search-relevance" / "catalog.csv"


def title_queries(products: list, count: int, rng: np.random.Generator) -> list[str]:
    """`count` queries of one to three consecutive words of random products' titles."""
    titles = [product.title.split() for product in products]
    queries = []
    for _ in range(count):
        words = titles[rng.integers(len(titles))]
        size = int(rng.integers(1, 4))
        at = int(rng.integers(0, max(1, len(words) - size + 1)))
        queries.append(" ".join(words[at:at + size]))
    return queries


def unit_rows(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def timed(call, runs: list) -> list[float]:
    """Milliseconds of each call."""
    times = []
    for item in runs:
        start = time.perf_counter()
        call(item)
        times.append((time.perf_counter() - start) * 1000)
    return times


def percentiles(times: list[float]) -> str:
    return f"p50 {np.percentile(times, 50):.1f} ms, p99 {np.percentile(times, 99):.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=47742)
    parser.add_argument("--catalog", type=Path, default=DEFAULT_CATALOG)
    parser.add_argument("--index", default="IVF_FLAT", choices=["FLAT", "IVF_FLAT", "AUTOINDEX"])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--fresh", type=int, default=50, help="upserts timed to visible")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    products = load_catalog(args.catalog, skip_untitled=True)[:args.products]
    dense = unit_rows(rng, len(products), 384)
    multilingual = unit_rows(rng, len(products), 512)
    priced = [Product(p.product_id, p.title, p.description, p.brand, p.category, p.department,
                      float(rng.uniform(1, 500)), p.image_url, p.attributes) for p in products]
    stock = rng.integers(0, 5, len(products))
    records = [CatalogRecord(product, int(count), dense[i], multilingual[i])
               for i, (product, count) in enumerate(zip(priced, stock))]
    print(f"{len(records)} products from {args.catalog.name}: real titles, RANDOM unit vectors (384-d, 512-d), "
          f"random stock and prices; index {args.index}")

    with tempfile.TemporaryDirectory(prefix="shoprank-milvus-bench-") as folder, LocalMilvus(Path(folder)) as milvus:
        catalog = MilvusCatalog(milvus.url, "bench", timeout_s=60)
        replica = MilvusCatalog(milvus.url, "bench", timeout_s=60)
        catalog.ensure(CollectionSpec(index_type=args.index))
        start = time.perf_counter()
        for first in range(0, len(records), 1000):
            catalog.upsert(records[first:first + 1000])
        seconds = time.perf_counter() - start
        print(f"insert: {len(records) / seconds:,.0f} products/s ({seconds:.1f} s; count {catalog.count()})")

        queries = title_queries(products, args.queries, rng)
        vectors = unit_rows(rng, args.queries, 384)
        for query in queries[:10]:  # warm up: the first searches load the collection's segments
            catalog.lexical(query, 100)
            catalog.dense(DENSE, vectors[0], 100)
        print(f"BM25 top-100: {percentiles(timed(lambda q: catalog.lexical(q, 100), queries))}")
        print(f"dense top-100: {percentiles(timed(lambda v: catalog.dense(DENSE, v, 100), list(vectors)))}")
        keep = filter_expression([Filter("price", max=100)], in_stock=True)
        print(f"filtered dense top-100 (in stock, under $100): "
              f"{percentiles(timed(lambda v: catalog.dense(DENSE, v, 100, keep), list(vectors)))}")

        acknowledged, visible, polls = [], [], []
        for index in range(args.fresh):
            word = f"freshness{index}x"
            record = CatalogRecord(Product(f"fresh-{index}", f"{word} cordless drill"), 1, unit_rows(rng, 1, 384)[0],
                                   unit_rows(rng, 1, 512)[0])
            start = time.perf_counter()
            catalog.upsert([record])
            acked = time.perf_counter()
            searches = 1
            while replica.lexical(word, 1).ids != [record.product.product_id]:
                searches += 1
            polls.append(searches)
            acknowledged.append((acked - start) * 1000)
            visible.append((time.perf_counter() - acked) * 1000)
        print(f"upsert acknowledged: p50 {np.median(acknowledged):.1f} ms, max {max(acknowledged):.1f} ms; "
              f"then visible through another connection: p50 {np.median(visible):.1f} ms, max {max(visible):.1f} ms "
              f"(searches until seen: max {max(polls)})")
        catalog.close()
        replica.close()


if __name__ == "__main__":
    main()
