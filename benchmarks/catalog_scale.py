"""How far one Milvus Lite server carries a shop's catalog: ingest rate, retrieval latency, memory and disk for N
products.

Usage:
    .venv/bin/python benchmarks/catalog_scale.py --products 100000 [--queries 200] [--batch 10000]
        [--index IVF_FLAT] [--nlist 128] [--nprobe 32] [--data ../shared/data]
        [--measure-at 300000,...] [--ingest-budget-s SECONDS]
    (docs/catalog-scale.md: the figures for 100,000 and 1,000,000 products, and what they mean)

The products are made from the real catalogs' titles: every `DATA/*/catalog.csv`, read with core.catalog.load_catalog
(ids prefixed by the catalog's folder). Past their total, further products are made deterministically: the k-th
round's product from real product i has the title of i followed by the first three words of real product
(i + k * 7919) mod R (for Home Depot usually a brand and a product word), and i's category and department. Every
product gets a seeded random price ($1-$500), stock (0-4) and RANDOM unit vectors (384-d and 512-d): this measures
the engine, not relevance.

A fresh Milvus Lite server (orchestrator.catalog.milvus_process.LocalMilvus, a temporary data directory) takes them
through orchestrator.catalog.milvus.MilvusCatalog into one generation (CollectionSpec's defaults unless told: IVF_FLAT,
the 'shoprank' BM25 analyzer), in upserts of 1,000 rows, each acknowledged (committed) before the next. Then, one call
at a time from one client, `--queries` of each: BM25 top-100 (1-3 consecutive words of a random title), dense top-100
on each vector field (random unit vectors), dense top-100 filtered to a price range, one category and stock > 0 (the
service's default), the BM25 scores of 400 stored candidates, and the fetch of those 400 without and with both vectors.
`--measure-at 300000` measures on the way too; `--ingest-budget-s` stops a run that cannot finish and measures what
was stored (the JSON line says "stopped").

Memory is the server process's resident set (VmRSS of the `milvus` binary, and VmHWM, its peak), disk the data
directory's allocated size. Prints progress, a summary, and one JSON line with every figure last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.milvus_retrieval import timed, title_queries  # noqa: E402
from core.catalog import Product, load_catalog  # noqa: E402
from core.metrics import percentile  # noqa: E402
from orchestrator.catalog.milvus import (DENSE, MULTILINGUAL, VECTOR_FIELDS, CatalogRecord,  # noqa: E402
                                         CollectionSpec, MilvusCatalog, filter_expression)
from orchestrator.catalog.milvus_process import LocalMilvus  # noqa: E402
from orchestrator.filters import Filter  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
DONOR_STRIDE = 7919  # a prime: each round pairs every real product with a different one
DONOR_WORDS = 3
TOP_K = 100
CANDIDATES = 400  # what a search fetches: the union of the retrievers' candidates
PRICE_RANGE = (20.0, 100.0)
FILTER_CATEGORIES = 10  # the filtered search rotates over the most common categories


def real_products(data: Path) -> tuple[list[Product], list[str]]:
    """Every titled product of DATA/*/catalog.csv, its id prefixed by the catalog's folder; and what was read."""
    products, read = [], []
    for path in sorted(data.glob("*/catalog.csv")):
        loaded = load_catalog(path, skip_untitled=True)
        products.extend(Product(f"{path.parent.name}:{p.product_id}", p.title, p.description, p.brand, p.category,
                                p.department, None, p.image_url, p.attributes) for p in loaded)
        read.append(f"{path.parent.name} ({len(loaded):,})")
    return products, read


def product_at(real: list[Product], index: int) -> Product:
    """The index-th product: a real one, or past them a deterministic combination of two real titles."""
    count = len(real)
    if index < count:
        return real[index]
    round_, base_at = divmod(index, count)
    base, donor = real[base_at], real[(base_at + round_ * DONOR_STRIDE) % count]
    head = " ".join(donor.title.split()[:DONOR_WORDS])
    return Product(f"made{round_}:{base.product_id}", f"{base.title} {head}", brand=base.brand,
                   category=base.category, department=base.department)


def unit_rows(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    """Random unit vectors, drawn in float32 (half the memory and time of milvus_retrieval's float64 draw)."""
    rows = rng.standard_normal((count, dim), dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def batches(real: list[Product], total: int, size: int, rng: np.random.Generator,
            spec: CollectionSpec) -> Iterator[list[CatalogRecord]]:
    """The catalog's records, `size` at a time (only one batch's vectors are held at once)."""
    for first in range(0, total, size):
        count = min(size, total - first)
        prices = rng.uniform(1, 500, count)
        stock = rng.integers(0, 5, count)
        dense, multilingual = unit_rows(rng, count, spec.dense_dim), unit_rows(rng, count, spec.multilingual_dim)
        records = []
        for offset in range(count):
            made = product_at(real, first + offset)
            product = Product(made.product_id, made.title, made.description, made.brand, made.category,
                              made.department, round(float(prices[offset]), 2), made.image_url, made.attributes)
            records.append(CatalogRecord(product, int(stock[offset]), dense[offset], multilingual[offset]))
        yield records


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak) of a process, in KiB."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0])
    return figures


def disk_bytes(folder: Path) -> int:
    """Bytes allocated to every file under `folder`."""
    return sum(os.lstat(Path(root) / name).st_blocks * 512 for root, _, names in os.walk(folder) for name in names)


def p50_p99(times: list[float]) -> dict[str, float]:
    return {"p50_ms": round(percentile(times, 50), 2), "p99_ms": round(percentile(times, 99), 2)}


class Run:
    """The run's state, and the measurement of the catalog as stored so far."""

    def __init__(self, args: argparse.Namespace, spec: CollectionSpec, real: list[Product], read: list[str],
                 catalog: MilvusCatalog, pid: int, data_dir: Path, empty_kib: int, rng: np.random.Generator) -> None:
        self.args, self.spec, self.real, self.read, self.catalog = args, spec, real, read, catalog
        self.pid, self.data_dir, self.empty_kib, self.rng = pid, data_dir, empty_kib, rng
        self.categories: Counter[str] = Counter()  # in stock and in PRICE_RANGE, by category
        self.stored, self.ingest_s, self.wall_s = 0, 0.0, 0.0

    def measure(self, final: bool, stopped: bool) -> None:
        """Time each kind of search `--queries` times against the products stored now; print them and a JSON line."""
        args, spec, catalog, rng, stored = self.args, self.spec, self.catalog, self.rng, self.stored
        print(f"measuring at {stored:,} products: ingest {stored / self.ingest_s:,.0f} products/s in upserts "
              f"({self.ingest_s:.0f} s; {self.wall_s:.0f} s wall with making the records and vectors); "
              f"count {catalog.count():,}", flush=True)
        queries = title_queries(self.real[:stored], args.queries, rng)
        vectors = {name: unit_rows(rng, args.queries, spec.dense_dim if name == DENSE else spec.multilingual_dim)
                   for name in VECTOR_FIELDS}

        start = time.perf_counter()  # the first searches load what was written since the last
        catalog.lexical(queries[0], TOP_K)
        for name in VECTOR_FIELDS:
            catalog.dense(name, vectors[name][0], TOP_K)
        first_search_s = time.perf_counter() - start
        print(f"  first BM25 + 2 dense searches: {first_search_s:.1f} s", flush=True)
        for query in queries[:10]:
            catalog.lexical(query, TOP_K)

        figures: dict[str, object] = {}
        figures["bm25_top100"] = p50_p99(timed(lambda q: catalog.lexical(q, TOP_K), queries))
        print(f"  BM25 top-{TOP_K}: {figures['bm25_top100']}", flush=True)
        for name in VECTOR_FIELDS:
            figures[f"{name}_top100"] = p50_p99(timed(lambda v: catalog.dense(name, v, TOP_K), vectors[name]))
            print(f"  dense {name} top-{TOP_K}: {figures[f'{name}_top100']}", flush=True)

        common = [name for name, _ in self.categories.most_common() if name][:FILTER_CATEGORIES]
        price = Filter("price", min=PRICE_RANGE[0], max=PRICE_RANGE[1])
        if common:
            expressions = [filter_expression([price, Filter("category", any_of=(common[i % len(common)],))],
                                             in_stock=True) for i in range(args.queries)]
            kept = [self.categories[common[i % len(common)]] for i in range(args.queries)]
        else:  # no product with a category among those stored
            expressions = [filter_expression([price], in_stock=True)] * args.queries
            kept = [sum(self.categories.values())] * args.queries
        filtered = timed(lambda pair: catalog.dense(DENSE, pair[0], TOP_K, pair[1]),
                         list(zip(vectors[DENSE], expressions)))
        figures["filtered_dense_top100"] = {**p50_p99(filtered), "products_kept_median": int(np.median(kept))}
        which = f"one of the {len(common)} most common categories" if common else "no category (none stored has one)"
        print(f"  filtered dense top-{TOP_K} (price ${PRICE_RANGE[0]:.0f}-${PRICE_RANGE[1]:.0f}, {which}, in stock; "
              f"median {int(np.median(kept)):,} products pass): {figures['filtered_dense_top100']}", flush=True)

        picks = [(query, [product_at(self.real, int(i)).product_id
                          for i in rng.choice(stored, min(CANDIDATES, stored), replace=False)]) for query in queries]
        figures["bm25_scores_of_400"] = p50_p99(timed(lambda pair: catalog.lexical_scores_of(*pair), picks))
        print(f"  BM25 scores of {CANDIDATES} candidates: {figures['bm25_scores_of_400']}", flush=True)
        figures["fetch_400"] = p50_p99(timed(lambda pair: catalog.fetch(pair[1]), picks))
        print(f"  fetch {CANDIDATES} candidates by id, no vectors: {figures['fetch_400']}", flush=True)
        figures["fetch_400_with_vectors"] = p50_p99(timed(lambda pair: catalog.fetch(pair[1], VECTOR_FIELDS),
                                                          picks))
        print(f"  fetch {CANDIDATES} candidates by id with both vectors: {figures['fetch_400_with_vectors']}",
              flush=True)

        memory = rss_kib(self.pid)
        disk = disk_bytes(self.data_dir)
        millions = stored / 1e6
        per_million = (memory["VmRSS"] - self.empty_kib) / 2**20 / millions
        print(f"  server RSS {memory['VmRSS'] / 2**20:.2f} GiB (peak so far {memory['VmHWM'] / 2**20:.2f} GiB, "
              f"empty {self.empty_kib / 1024:.0f} MiB): {per_million:.2f} GiB per million products above the empty "
              f"server; data directory {disk / 2**30:.2f} GiB ({disk / 2**30 / millions:.2f} GiB per million)",
              flush=True)
        print(json.dumps({
            "products": stored, "asked": args.products, "final": final, "stopped": stopped,
            "real_products": min(stored, len(self.real)), "made_products": max(0, stored - len(self.real)),
            "catalogs": self.read, "vectors": "random unit", "index": spec.index_type, "nlist": spec.nlist,
            "nprobe": spec.nprobe, "analyzer": spec.analyzer, "queries": args.queries,
            "ingest_products_per_s": round(stored / self.ingest_s), "ingest_s": round(self.ingest_s, 1),
            "ingest_wall_s": round(self.wall_s, 1), "first_search_s": round(first_search_s, 2), **figures,
            "server_rss_gib": round(memory["VmRSS"] / 2**20, 3),
            "server_peak_rss_gib": round(memory["VmHWM"] / 2**20, 3),
            "empty_server_rss_mib": round(self.empty_kib / 1024), "rss_gib_per_million": round(per_million, 2),
            "disk_gib": round(disk / 2**30, 3), "disk_gib_per_million": round(disk / 2**30 / millions, 2),
        }), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, required=True)
    parser.add_argument("--queries", type=int, default=200, help="searches of each kind")
    parser.add_argument("--batch", type=int, default=10000, help="products made and upserted per step")
    parser.add_argument("--index", default="IVF_FLAT", choices=["FLAT", "IVF_FLAT", "AUTOINDEX"])
    parser.add_argument("--nlist", type=int, default=CollectionSpec.nlist)
    parser.add_argument("--nprobe", type=int, default=CollectionSpec.nprobe)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of <name>/catalog.csv")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure-at", type=lambda text: [int(size) for size in text.split(",") if size],
                        default=[], help="also measure on the way, once this many products are stored: 300000,...")
    parser.add_argument("--ingest-budget-s", type=float, default=0.0,
                        help="stop ingesting past this many seconds and measure what is stored (0: no limit)")
    args = parser.parse_args()

    real, read = real_products(args.data)
    total = args.products
    made = max(0, total - len(real))
    spec = CollectionSpec(index_type=args.index, nlist=args.nlist, nprobe=args.nprobe)
    print(f"{total:,} products: {min(total, len(real)):,} real titles from {', '.join(read)}", flush=True)
    if made:
        print(f"  + {made:,} made past them: title of real product i + first {DONOR_WORDS} words of real product "
              f"(i + round * {DONOR_STRIDE}) mod {len(real):,}, i's category and department; deterministic", flush=True)
    print(f"RANDOM unit vectors ({spec.dense_dim}-d {DENSE}, {spec.multilingual_dim}-d {MULTILINGUAL}), seeded random "
          f"prices $1-$500 and stock 0-4: this measures the engine, not relevance. Index {spec.index_type} "
          f"{spec.index_params()} searched with {spec.search_params()}; BM25 analyzer {spec.analyzer!r}", flush=True)

    rng = np.random.default_rng(args.seed)
    checkpoints = sorted({size for size in args.measure_at if 0 < size < total} | {total})
    with tempfile.TemporaryDirectory(prefix="shoprank-catalog-scale-") as folder, \
            LocalMilvus(Path(folder)) as milvus:
        data_dir = Path(folder)
        empty = rss_kib(milvus.pid)["VmRSS"]
        catalog = MilvusCatalog(milvus.url, "scale", timeout_s=600, alias_ttl_s=1.0)
        number = catalog.create_generation(spec)
        catalog.switch_alias(number)
        writer = catalog.generation(number)  # as a rebuild fills a generation; searches go through the alias
        print(f"Milvus Lite pid {milvus.pid} on {milvus.url}, data {data_dir}; empty server RSS "
              f"{empty / 1024:.0f} MiB", flush=True)
        # queries from a generator of their own, so that measuring on the way changes no product
        run = Run(args, spec, real, read, catalog, milvus.pid, data_dir, empty, np.random.default_rng(args.seed + 1))

        started = time.perf_counter()
        step = max(args.batch, total // 10)
        stopped = False
        for records in batches(real, total, args.batch, rng, spec):
            run.categories.update(record.product.category for record in records if record.stock > 0
                                  and PRICE_RANGE[0] <= record.product.price <= PRICE_RANGE[1])
            start = time.perf_counter()
            writer.upsert(records)
            run.ingest_s += time.perf_counter() - start
            before, run.stored = run.stored, run.stored + len(records)
            run.wall_s = time.perf_counter() - started
            if run.stored // step != before // step or run.stored == total:
                memory = rss_kib(milvus.pid)
                print(f"  ingested {run.stored:,}/{total:,}: {run.stored / run.ingest_s:,.0f} products/s in upserts, "
                      f"{run.wall_s:.0f} s wall; server RSS {memory['VmRSS'] / 2**20:.2f} GiB, "
                      f"disk {disk_bytes(data_dir) / 2**30:.2f} GiB", flush=True)
            stopped = bool(args.ingest_budget_s) and run.wall_s > args.ingest_budget_s and run.stored < total
            if stopped:
                print(f"STOPPED: ingest passed --ingest-budget-s {args.ingest_budget_s:.0f} at {run.stored:,} of "
                      f"{total:,} products; measuring what is stored", flush=True)
            if any(before < size <= run.stored for size in checkpoints) or stopped:
                measuring = time.perf_counter()
                run.measure(final=run.stored == total or stopped, stopped=stopped)
                started += time.perf_counter() - measuring  # measuring is no part of the ingest's wall time
            if stopped:
                break
        catalog.close()


if __name__ == "__main__":
    main()
