"""`shoprank eval`: judged queries through the serving path."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .stack import run_on_catalog, triton_options


def cmd_eval(args: argparse.Namespace) -> None:
    from core.catalog import load_catalog  # noqa: PLC0415
    from core.judgments import load_judgments  # noqa: PLC0415
    from core.splits import select  # noqa: PLC0415
    from training.evaluate import evaluate  # noqa: PLC0415

    catalog = Path(args.catalog)
    judgments = select(load_judgments(args.judgments), args.split)
    if args.max_queries:
        judgments = dict(list(judgments.items())[: args.max_queries])
    catalog_ids = {product.product_id for product in load_catalog(catalog)}

    async def work(stub):
        return await evaluate(stub, judgments, catalog_ids, args.task, args.retrieval, seed=args.seed,
                              show_progress=not args.json, rerank=not args.no_rerank)

    result = run_on_catalog(args, catalog, work)
    result["split"] = args.split or "all"
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's commands."""
    sub = commands.add_parser("eval", help="evaluate judged queries through the serving path")
    sub.add_argument("task", choices=("rerank", "search"))
    sub.add_argument("--catalog", required=True)
    sub.add_argument("--judgments", required=True)
    sub.add_argument("--retrieval", choices=("hybrid", "lexical", "dense"), default="hybrid")
    sub.add_argument("--fusion", choices=("rrf", "blend"))
    sub.add_argument("--index", help="prebuilt index of the catalog (default: built once and cached under .shoprank/indexes)")
    sub.add_argument("--seed", type=int, default=0, help="seed of the candidate shuffle in rerank")
    sub.add_argument("--split", choices=("train", "dev", "test"), help="only the queries of this split (core/splits.py)")
    sub.add_argument("--no-rerank", action="store_true", help="skip the cross-encoder: the fused order")
    sub.add_argument("--max-queries", type=int, help="only the first N queries (in file order) of the selection")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    triton_options(sub)
    sub.set_defaults(func=cmd_eval)
