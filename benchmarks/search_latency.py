"""End-to-end search latency with and without reranking 100 candidates, through the real gRPC service.

Usage:
    .venv/bin/python benchmarks/search_latency.py [--queries 100] [--split test] [--rerank-depth 100] \
        [--cross-encoder-depth 30] [--rounds 1] \
        [--catalog ../shared/data/home-depot-product-search-relevance/catalog.csv \
         --judgments ../shared/data/home-depot-product-search-relevance/judgments.csv]

Starts tritonserver on the cpu model repository and the orchestrator (port 0), then sends the split's first
N judged queries, one call at a time from one client, as full-catalog searches for 100 products: once with
reranking (the top `--rerank-depth` fused candidates combined; the first `--cross-encoder-depth` of them in the
order of the weights without the cross-encoder rescored by it in one Triton request, 0: all) and once with
`skip_rerank`, and with `--cheap`, a third time combined by the served weights without the cross-encoder's
(its weight 0: BM25, cosines, match features and intent over the same top `--rerank-depth`, no reranker call).
Prints client-side p50/p99 and nDCG@10 for each. With `--rounds N` the queries go N times, each round through
every variant in turn, and the percentiles are over all N x queries calls: the p99 of 100 calls is about their
second slowest, and on this machine one run's differs from the next by 20-40 ms. The index is the one
`shoprank eval` builds and caches under .shoprank/indexes/.

Before that, on the same Triton, the query encoding alone: each query tokenized in-process and embedded by each
encoder (MiniLM, multilingual) in one request at a time, as the orchestrator does; p50/p99 in ms.

Last, the machine's own speed (ten 600x600 float32 matrix products on one thread, p50 of 20 samples, measured
before and after the searches): this machine's speed moves by a third within an hour, so figures from different
runs compare only alongside it (docs/reranker.md, "Where a reranked search's time goes").
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import judged_set  # noqa: E402

from core.catalog import load_catalog  # noqa: E402
from core.judgments import load_judgments  # noqa: E402
from core.language import LATIN  # noqa: E402
from core.metrics import percentile  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.specs import BI_ENCODER, MULTILINGUAL_ENCODER, RERANKER  # noqa: E402
from core.splits import select  # noqa: E402
from core.tokenization import SentencePieceEncoder, TextEncoder  # noqa: E402
from core.weights import read_combination  # noqa: E402
from orchestrator.harness import cached_index, run_on_catalog  # noqa: E402
from orchestrator.rollout.versions import combination_file, repository_versions  # noqa: E402
from orchestrator.triton import TritonClient  # noqa: E402
from orchestrator.triton_process import triton_endpoint  # noqa: E402
from training.evaluate import evaluate  # noqa: E402

HD = judged_set.HD


async def encoding_latency(url: str, settings: Settings, queries: list[str]) -> dict[str, tuple[float, float]]:
    """Encoder name -> (p50, p99) ms of tokenizing and embedding one query, one request at a time."""
    client = TritonClient(url, timeout_s=10.0)
    encoders = [(BI_ENCODER, TextEncoder(settings.tokenizer_file, settings.max_query_tokens)),
                (MULTILINGUAL_ENCODER, SentencePieceEncoder(settings.multilingual_tokenizer_file, settings.max_query_tokens))]
    results = {}
    try:
        await client.wait_until_ready([spec for spec, _ in encoders], settings.triton_start_timeout_s)
        for spec, tokenizer in encoders:
            for query in queries[:10]:  # warm-up
                await client.infer(spec, tokenizer([query]))
            times = []
            for query in queries:
                started = time.perf_counter()
                await client.infer(spec, tokenizer([query]))
                times.append((time.perf_counter() - started) * 1000.0)
            results[spec.name] = (percentile(times, 50), percentile(times, 99))
    finally:
        await client.close()
    return results


def machine_speed_ms(samples: int = 20) -> float:
    """p50 ms of ten 600x600 float32 matrix products on one thread: a yardstick for this moment's machine."""
    from threadpoolctl import threadpool_limits  # noqa: PLC0415

    matrix = np.random.default_rng(0).random((600, 600), dtype=np.float32)
    times = []
    with threadpool_limits(1):
        for _ in range(samples):
            started = time.perf_counter()
            for _ in range(10):
                matrix @ matrix
            times.append((time.perf_counter() - started) * 1000.0)
    return percentile(times, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", type=Path, default=HD / "catalog.csv")
    judged_set.shop_option(parser)
    parser.add_argument("--judgments", type=Path, default=HD / "judgments.csv")
    parser.add_argument("--split", choices=("train", "dev", "test"), default="test")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--rerank-depth", type=int, default=100)
    parser.add_argument("--cross-encoder-depth", type=int, default=Settings.cross_encoder_depth,
                        help="the cross-encoder scores the first N of the cheap order of those (0: all of them)")
    parser.add_argument("--model-repository", type=Path, default=ROOT / "model_repository" / "cpu")
    parser.add_argument("--top-k", type=int, default=100,
                        help="products asked for (the service reranks at least this many: 10 to measure a depth < 100)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="send the queries N times (percentiles over all calls; nDCG from the first round)")
    parser.add_argument("--cheap", action="store_true",
                        help="also the served combination without the cross-encoder (its weight set to 0)")
    args = parser.parse_args()

    judgments = dict(list(select(load_judgments(args.judgments), args.split).items())[: args.queries])
    catalog_ids = {product.product_id for product in load_catalog(args.catalog)}
    shop = judged_set.shop_of_args(args)
    index_dir = ROOT / cached_index(args.catalog, shop)

    scored = (f"{args.cross_encoder_depth} of " if 0 < args.cross_encoder_depth < args.rerank_depth else "") + "top"
    variants = {f"reranked ({scored} {args.rerank_depth})": {"rerank": True}, "fused (no rerank)": {"rerank": False}}
    if args.cheap:
        newest = repository_versions(args.model_repository, RERANKER.name)[-1]  # what a fresh service serves
        latin = read_combination(combination_file(args.model_repository, RERANKER.name, newest))[LATIN]
        cheap = {name: weight for name, weight in latin.items() if name != "reranker" and weight}
        variants[f"no cross-encoder (top {args.rerank_depth})"] = {"rerank": True, "combination_weights": cheap}

    async def work(stub):
        results, latencies = {}, {label: [] for label in variants}
        for label, options in variants.items():
            await evaluate(stub, dict(list(judgments.items())[:5]), catalog_ids, "search", show_progress=False,
                           top_k=args.top_k, **options)  # warm-up
        for round_number in range(args.rounds):
            for label, options in variants.items():
                result = await evaluate(stub, judgments, catalog_ids, "search", top_k=args.top_k,
                                        latencies=latencies[label], **options)
                results.setdefault(label, result)
        for label, result in results.items():
            result["p50_ms"], result["p99_ms"] = percentile(latencies[label], 50), percentile(latencies[label], 99)
            result["calls"] = len(latencies[label])
        return results

    # Settings from the environment, with this script's --model-repository, --rerank-depth and --cross-encoder-depth.
    settings = Settings.from_env(model_repository=args.model_repository, rerank_depth=args.rerank_depth,
                                 cross_encoder_depth=args.cross_encoder_depth, shop=shop)
    speed_before = machine_speed_ms()
    with triton_endpoint(settings.triton_url, settings.model_repository, settings.triton_start_timeout_s) as url:
        encoding = asyncio.run(encoding_latency(url, settings, list(judgments)))
        results = run_on_catalog(dataclasses.replace(settings, triton_url=url), args.catalog, work, index_dir=index_dir)
    speed_after = machine_speed_ms()
    print(f"{len(judgments)} {args.split}-split queries, query encoding through Triton (tokenizer included)")
    for name, (p50, p99) in encoding.items():
        print(f"{name:<22} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms")
    rounds = f", {args.rounds} rounds" if args.rounds > 1 else ""
    print(f"{len(judgments)} {args.split}-split queries{rounds}, full-catalog search for {args.top_k} products, "
          "one client")
    print(f"{'':<32} {'p50 ms':>8} {'p99 ms':>8} {'nDCG@10':>8} {'degraded':>9}")
    for label, result in results.items():
        print(f"{label:<32} {result['p50_ms']:8.1f} {result['p99_ms']:8.1f} {result['ndcg@10']:8.4f} {result['degraded']:9d}")
    print(f"machine speed (ten 600x600 float32 products on one thread, p50): {speed_before:.0f} ms before, "
          f"{speed_after:.0f} ms after")


if __name__ == "__main__":
    main()
