"""Rerank depth against quality and latency, on the same judged queries: how many fused candidates the
cross-encoder should rescore, and how many of the cheap order's (a cascade).

Usage:
    .venv/bin/python benchmarks/rerank_depth.py [--depths 100 50 20 0] [--cascades 50 30 20] [--split dev] \
        [--max-queries N] \
        [--model-repository model_repository/cpu] \
        [--catalog ../shared/data/home-depot-product-search-relevance/catalog.csv \
         --judgments ../shared/data/home-depot-product-search-relevance/judgments.csv]

One tritonserver; for each depth a fresh service (`rerank_depth` D, 0: no cross-encoder call) runs every judged
query of the split as a whole-catalog search for 10 products, one call at a time from one client, as
`shoprank eval search --top-k 10` does. A last arm, "no cross-encoder", combines the served weights without the
cross-encoder's (its weight 0) over the top 100. Prints nDCG@10, the paired bootstrap 95% interval of each arm
minus the first depth, and client-side p50/p99 ms. For a shop whose served weights include the cross-encoder,
depth 0 is the fused order. Each cascade K combines the top 100 fused candidates, and the cross-encoder scores
only the first K of them in the order of the weights without it (`cross_encoder_depth` K).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import judged_set  # noqa: E402

from core.language import LATIN  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.specs import RERANKER  # noqa: E402
from core.stats import paired_bootstrap  # noqa: E402
from core.weights import read_combination  # noqa: E402
from orchestrator.harness import cached_index, run_on_catalog  # noqa: E402
from orchestrator.rollout.versions import combination_file, repository_versions  # noqa: E402
from orchestrator.triton_process import triton_endpoint  # noqa: E402
from training.evaluate import evaluate  # noqa: E402

TOP_K = 10  # the service reranks at least top_k candidates: 10 lets every depth from 10 up be measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depths", type=int, nargs="+", default=[100, 50, 20, 0],
                        help="rerank depths; the first is the one the others are compared against")
    parser.add_argument("--cascades", type=int, nargs="*", default=[],
                        help="cross-encoder depths of a cascade over the top 100 (each below 100)")
    judged_set.add_options(parser)
    args = parser.parse_args()
    judged_set.check(parser, args)
    if any(depth < 0 for depth in args.depths) or len(set(args.depths)) != len(args.depths):
        parser.error("--depths takes distinct depths of 0 or more")
    if any(0 < depth < TOP_K for depth in args.depths):
        parser.error(f"the service reranks at least top_k ({TOP_K}) candidates: give depths of 0 or {TOP_K} and more")
    if any(not 0 < pairs < 100 for pairs in args.cascades):
        parser.error("--cascades takes cross-encoder depths between 1 and 99")
    versions = repository_versions(args.model_repository, RERANKER.name)
    if not versions:
        parser.error(f"no reranker version in {args.model_repository}")

    judgments, catalog_ids = judged_set.load(args)
    shop = judged_set.shop_of_args(args)
    index_dir = ROOT / cached_index(args.catalog, shop)
    # What a fresh service serves to a shop without weights of its own: the cross-encoder's weight is 0 there.
    latin = read_combination(combination_file(args.model_repository, RERANKER.name, versions[-1]))[LATIN]
    cheap = {name: weight for name, weight in latin.items() if name != "reranker" and weight}

    arms = [(f"depth {depth}", depth, 0, None) for depth in args.depths]
    arms += [(f"cascade {pairs} of 100", 100, pairs, None) for pairs in args.cascades]
    arms.append(("no cross-encoder (top 100)", 100, 0, cheap))
    results: dict[str, tuple[dict, dict[str, float]]] = {}
    settings = Settings.from_env(model_repository=args.model_repository, shop=shop)
    with triton_endpoint(settings.triton_url, settings.model_repository, settings.triton_start_timeout_s) as url:
        for label, depth, pairs, weights in arms:
            async def work(stub, weights=weights):
                await evaluate(stub, dict(list(judgments.items())[:5]), catalog_ids, "search", show_progress=False,
                               top_k=TOP_K, combination_weights=weights)  # warm-up
                scores: dict[str, float] = {}
                summary = await evaluate(stub, judgments, catalog_ids, "search", top_k=TOP_K,
                                         combination_weights=weights, per_query=scores)
                return summary, scores

            arm = dataclasses.replace(settings, triton_url=url, rerank_depth=depth, cross_encoder_depth=pairs)
            results[label] = run_on_catalog(arm, args.catalog, work, index_dir=index_dir)

    subject = arms[0][0]
    print(f"{args.split} split of {args.judgments}, {len(judgments)} queries: whole-catalog search for {TOP_K} "
          f"products, one client")
    print(f"{'':<28} {'nDCG@10':>8} {'p50 ms':>7} {'p99 ms':>7} {'degraded':>9}  minus {subject} (paired 95%)")
    for label, (summary, scores) in results.items():
        difference = ""
        if label != subject:
            shared = [query for query in scores if query in results[subject][1]]
            difference = paired_bootstrap([scores[q] for q in shared], [results[subject][1][q] for q in shared]).text()
        print(f"{label:<28} {summary['ndcg@10']:8.4f} {summary['p50_ms']:7.1f} {summary['p99_ms']:7.1f} "
              f"{summary['degraded']:9d}  {difference}")


if __name__ == "__main__":
    main()
