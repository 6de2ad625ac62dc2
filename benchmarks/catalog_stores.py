"""The two catalog stores on the same judged queries: the index in the service's process against the shop's
catalog in Milvus (Milvus Lite here), paired query by query.

Usage:
    .venv/bin/python benchmarks/catalog_stores.py [--split dev|test|all] [--tasks rerank,search] [--max-queries N] \
        [--catalog ../shared/data/home-depot-product-search-relevance/catalog.csv \
         --judgments ../shared/data/home-depot-product-search-relevance/judgments.csv] [--shop home-depot]

One tritonserver and one Milvus Lite server (a fresh data directory). Milvus is filled from the catalog's cached
index (the same products and the same vectors, no second embedding), which times ingest apart from embedding. Then
for each task a fresh service on each store runs every judged query of the split, one call at a time from one
client, as `shoprank eval` does. Prints nDCG@10 (and recall@100 for search), client-side p50/p99 ms, and the
paired bootstrap 95% interval of Milvus minus the in-process index.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import judged_set  # noqa: E402

from core.catalog import catalog_digest, stock_of  # noqa: E402
from core.metrics import percentile  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.specs import BI_ENCODER, MULTILINGUAL_ENCODER  # noqa: E402
from core.stats import paired_bootstrap  # noqa: E402
from orchestrator.catalog.milvus import CatalogRecord, CollectionSpec, MilvusCatalog  # noqa: E402
from orchestrator.catalog.milvus_process import LocalMilvus  # noqa: E402
from orchestrator.harness import cached_index, catalog_stack, run_on_catalog  # noqa: E402
from orchestrator.index import CatalogIndex  # noqa: E402
from training.evaluate import evaluate  # noqa: E402


def fill_from_index(url: str, shop: str, index_dir: Path, catalog: Path, analyzer: str) -> tuple[int, float]:
    """The index's products and vectors as the shop's live generation in Milvus; (products, seconds to ingest)."""
    index = CatalogIndex.load(index_dir)
    store = MilvusCatalog(url, shop, timeout_s=60.0)
    try:
        spec = CollectionSpec(analyzer=analyzer, dense_version=index.encoder_versions[BI_ENCODER.name],
                              multilingual_version=index.encoder_versions[MULTILINGUAL_ENCODER.name],
                              source=catalog_digest(catalog))
        number = store.create_generation(spec)
        records = [CatalogRecord(product, stock_of(product), dense, multilingual) for product, dense, multilingual
                   in zip(index.products, index.dense.embeddings, index.multilingual.embeddings)]
        started = time.perf_counter()
        store.generation(number).upsert(records)
        seconds = time.perf_counter() - started
        store.switch_alias(number)
        return len(records), seconds
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    judged_set.add_options(parser)
    parser.add_argument("--tasks", default="rerank,search", help="comma-separated: rerank (judged products), search")
    parser.add_argument("--fused", action="store_true",
                        help="the fused order only (no combination, no cross-encoder): retrieval and fusion alone")
    parser.add_argument("--analyzer", default="shoprank",
                        help="the Milvus collection's BM25 analyzer: shoprank (the in-process index's terms) or a "
                             "Milvus built-in (english, standard, chinese)")
    args = parser.parse_args()
    judged_set.check(parser, args)
    judgments, catalog_ids = judged_set.load(args)
    shop = judged_set.shop_of_args(args)
    base = Settings.from_env(model_repository=args.model_repository, shop=shop)
    results: dict[tuple[str, str], tuple[dict, dict[str, float], list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="shoprank-milvus-") as scratch, LocalMilvus(Path(scratch)) as milvus:
        with catalog_stack(base, args.catalog, ROOT / cached_index(args.catalog, shop)) as memory:
            products, seconds = fill_from_index(milvus.url, shop, memory.index_dir, args.catalog, args.analyzer)
            print(f"Milvus ingest (vectors from the index, no embedding): {products} products in {seconds:.1f} s, "
                  f"{products / seconds:.0f} products/s", flush=True)
            stores = {"in-process index": memory,
                      f"Milvus Lite ({args.analyzer})": dataclasses.replace(memory, catalog_store=milvus.url)}
            for task in args.tasks.split(","):
                for label, settings in stores.items():
                    async def work(stub, task=task):
                        await evaluate(stub, dict(list(judgments.items())[:5]), catalog_ids, task,
                                       show_progress=False, rerank=not args.fused)  # warm-up
                        scores: dict[str, float] = {}
                        latencies: list[float] = []
                        summary = await evaluate(stub, judgments, catalog_ids, task, per_query=scores,
                                                 latencies=latencies, rerank=not args.fused)
                        return summary, scores, latencies

                    results[(task, label)] = run_on_catalog(settings, args.catalog, work,
                                                            index_dir=settings.index_dir)
    subject = "in-process index"
    print(f"\n{args.split} split of {args.judgments} ({len(judgments)} queries), shop {shop!r}, one client"
          + (", fused order only" if args.fused else ""))
    print(f"{'task':<7} {'store':<26} {'nDCG@10':>8} {'recall@100':>10} {'p50 ms':>7} {'p99 ms':>7} {'degraded':>8}  "
          f"minus the in-process index (paired 95%)")
    for (task, label), (summary, scores, latencies) in results.items():
        difference = ""
        if label != subject:
            reference = results[(task, subject)][1]
            shared = [query for query in scores if query in reference]
            difference = paired_bootstrap([scores[q] for q in shared], [reference[q] for q in shared]).text()
        recall = summary.get("recall@100")
        print(f"{task:<7} {label:<26} {summary['ndcg@10']:8.4f} {recall if recall is not None else '':>10} "
              f"{percentile(latencies, 50):7.1f} {percentile(latencies, 99):7.1f} "
              f"{summary['degraded']:8d}  {difference}")


if __name__ == "__main__":
    main()
