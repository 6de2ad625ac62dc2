"""Two reranker versions of one model repository, each served with its own combination weights, on the same
queries: nDCG@10 of each and the paired bootstrap 95% interval of the difference.

Usage:
    .venv/bin/python benchmarks/reranker_versions.py --versions 2 4 [--task search --task rerank] [--split dev] \
        [--model-repository model_repository/cpu] [--max-queries N] \
        [--catalog ../shared/data/home-depot-product-search-relevance/catalog.csv \
         --judgments ../shared/data/home-depot-product-search-relevance/judgments.csv]

`shoprank eval --baseline` compares weights inside one service; this compares what a rollout would switch
between: for each version a fresh service is started on it (`--reranker-version`, its own combination.json),
and every judged query of the split is run through Search as `shoprank eval` runs it. The first version is the
subject: each line after it says first minus that version. A candidate is exported into a scratch copy of the
repository with `shoprank export --model-repository DIR --model reranker --adapter CANDIDATE`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import judged_set  # noqa: E402

from core.settings import Settings  # noqa: E402
from core.stats import paired_bootstrap  # noqa: E402
from orchestrator.harness import run_on_catalog  # noqa: E402
from training.evaluate import evaluate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", nargs="+", required=True, help="reranker versions; the first is the subject")
    parser.add_argument("--task", action="append", choices=("search", "rerank"), help="default: both")
    judged_set.add_options(parser)
    args = parser.parse_args()
    judged_set.check(parser, args)
    if len(args.versions) < 2:
        parser.error("--versions needs at least two versions to compare")
    missing = [v for v in args.versions if not (args.model_repository / "reranker" / v).is_dir()]
    if missing:
        parser.error(f"no reranker version {', '.join(missing)} in {args.model_repository}")
    tasks = args.task or ["search", "rerank"]

    judgments, catalog_ids = judged_set.load(args)

    per_query: dict[tuple[str, str], dict[str, float]] = {}
    summaries: dict[tuple[str, str], dict] = {}
    for version in args.versions:
        async def work(stub):
            results = {}
            for task in tasks:
                scores: dict[str, float] = {}
                summary = await evaluate(stub, judgments, catalog_ids, task, per_query=scores)
                results[task] = (summary, scores)
            return results

        settings = Settings.from_env(model_repository=args.model_repository, reranker_version=version,
                                     shop=judged_set.shop_of_args(args))
        for task, (summary, scores) in run_on_catalog(settings, args.catalog, work).items():
            summaries[task, version] = summary
            per_query[task, version] = scores

    subject = args.versions[0]
    print(f"{args.split} split of {args.judgments}, {len(judgments)} queries; reranker versions of {args.model_repository}")
    for task in tasks:
        line = ", ".join(f"version {v} {summaries[task, v]['ndcg@10']:.4f} ({summaries[task, v]['degraded']} degraded)"
                         for v in args.versions)
        print(f"{task} nDCG@10: {line}")
        for other in args.versions[1:]:
            shared = [q for q in per_query[task, subject] if q in per_query[task, other]]
            interval = paired_bootstrap([per_query[task, subject][q] for q in shared],
                                        [per_query[task, other][q] for q in shared])
            print(f"  {task}: version {subject} - version {other}: {interval.text()}")


if __name__ == "__main__":
    main()
