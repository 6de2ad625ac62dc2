"""Retrieval quality and latency through the serving path: every task x retrieval mode (x fusion method).

Usage:
    .venv/bin/python benchmarks/retrieval_quality.py \
        --catalog ../shared/data/home-depot-product-search-relevance/catalog.csv \
        --judgments ../shared/data/home-depot-product-search-relevance/judgments.csv [--fusions rrf,weighted]

Starts one tritonserver, builds (or reuses) the catalog's index, then runs `shoprank eval --no-rerank` for
each combination against it (retrieval and fusion only; benchmarks/search_latency.py adds the reranker) and
prints one table. Each row is exactly what `shoprank eval ... --json` prints.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import judged_set  # noqa: E402

from orchestrator.harness import cached_index  # noqa: E402
from orchestrator.triton_process import LocalTriton  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--catalog", required=True)
    judged_set.shop_option(parser)
    parser.add_argument("--judgments", required=True)
    parser.add_argument("--fusions", default="rrf", help="comma-separated fusion methods for hybrid rows")
    parser.add_argument("--tasks", default="rerank,search")
    parser.add_argument("--split", choices=("train", "dev", "test"), help="only this split's queries")
    args = parser.parse_args()

    shop = judged_set.shop_of_args(args)
    index = ROOT / cached_index(Path(args.catalog), shop)
    combos = []
    for task in args.tasks.split(","):
        combos += [(task, "lexical", "rrf"), (task, "dense", "rrf")]
        combos += [(task, "hybrid", fusion) for fusion in args.fusions.split(",")]
    with LocalTriton(ROOT / "model_repository" / "cpu") as triton:
        rows = []
        for task, retrieval, fusion in combos:
            command = [sys.executable, "-m", "cli", "eval", task, "--catalog", args.catalog,
                       "--judgments", args.judgments, "--retrieval", retrieval, "--fusion", fusion,
                       "--triton-url", triton.url, "--index", str(index), "--shop", shop, "--json", "--no-rerank"]
            if args.split:
                command += ["--split", args.split]
            print("$", " ".join(command[1:]), file=sys.stderr, flush=True)
            result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            if result.returncode != 0:
                sys.exit(f"eval failed:\n{result.stderr}")
            rows.append({**json.loads(result.stdout.splitlines()[-1]), "fusion": fusion if retrieval == "hybrid" else "-"})
    print(f"{'task':<7} {'retrieval':<8} {'fusion':<6} {'nDCG@10':>8} {'recall@100':>10} {'p50 ms':>7} {'p99 ms':>7} {'queries':>7}")
    for row in rows:
        print(f"{row['task']:<7} {row['retrieval']:<8} {row['fusion']:<6} {row['ndcg@10']:8.4f} "
              f"{row.get('recall@100', float('nan')):10.4f} {row.get('p50_ms', float('nan')):7.2f} "
              f"{row.get('p99_ms', float('nan')):7.2f} {row['queries']:7d}")


if __name__ == "__main__":
    main()
