"""The cross-encoder alone on judged sets, beside the zero-shot MiniLM bi-encoder, in PyTorch (no Triton).

Usage:
    .venv/bin/python benchmarks/cross_encoder_quality.py --model models/reranker --model DIR ... \
        --set CATALOG JUDGMENTS[:SPLIT] ...

For each set (all its queries, or one split of core/splits.py with :dev / :test), each model's nDCG@10 when it
alone orders each query's judged products, the zero-shot bi-encoder's, and the paired bootstrap 95% interval of
every model minus the bi-encoder and minus the first model, over the same queries. Queries are spelling-corrected
as the service corrects them against their own catalog. This is `shoprank eval rerank --reranker-only` without
the service: the same figures for a trained model before it is exported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.catalog import load_catalog  # noqa: E402
from core.cross_encoder import CrossEncoder, is_release  # noqa: E402
from core.query_lists import build_lists, correct_queries, interval_text, paired_report  # noqa: E402
from core.judgments import load_judgments  # noqa: E402
from core.splits import select  # noqa: E402
from training.train import BI_ENCODER, TrainConfig, score_lists, zero_shot_bi_encoder, zero_shot_scores  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="a trained cross-encoder folder (repeatable)")
    parser.add_argument("--set", nargs=2, action="append", required=True, metavar=("CATALOG", "JUDGMENTS[:SPLIT]"))
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    for model in args.model:
        if not is_release(Path(model)):
            parser.error(f"--model {model} holds no trained cross-encoder (adapter or weights, and head)")

    config = TrainConfig()
    encoder = config.pair_encoder()
    bi_encoder = zero_shot_bi_encoder()
    models = {model: CrossEncoder.from_adapter(Path(model)) for model in args.model}
    first = args.model[0]
    results = {}
    for catalog, spec in args.set:
        judgments_path, _, split = spec.partition(":")
        products = load_catalog(Path(catalog))
        lists = build_lists(products, select(load_judgments(Path(judgments_path)), split or None), config.seed)
        lists = correct_queries({"set": lists}, products)["set"]
        scores = {BI_ENCODER: zero_shot_scores(lists, bi_encoder)}
        scores.update({name: score_lists(model, encoder, lists) for name, model in models.items()})
        name = f"{judgments_path} ({split or 'all'})"
        reports = {model: paired_report(lists, scores, model) for model in args.model}
        results[name] = {"queries": reports[first]["queries"], "ndcg@10": reports[first]["ndcg@10"],
                         "intervals": {f"{model} - {other}": reports[model][f"{model} - {other}"]
                                       for model in args.model for other in (BI_ENCODER, first) if other != model}}
        if not args.json:
            print(f"{name}, {results[name]['queries']} queries: " + ", ".join(
                f"{model} {value}" for model, value in results[name]["ndcg@10"].items()), flush=True)
            for label, interval in results[name]["intervals"].items():
                print(f"  {label}: {interval_text(interval)}", flush=True)
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
