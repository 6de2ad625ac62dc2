"""`shoprank eval`: judged queries (rerank, search) and users' next orders (personal) through the serving path."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from core.errors import ShoprankError

from orchestrator.harness import fresh_profile_store, triton_options

from .options import catalog_options, on_catalog


# The cross-encoder alone is always shown beside the zero-shot bi-encoder it was trained from and the fused order.
RERANKER_ONLY_BASELINES = ("dense=1", "fused")


def baseline_specs(given: list[str], reranker_only: bool) -> list[str]:
    """The baselines to run: those given, and with --reranker-only the zero-shot MiniLM and fused order too."""
    extra = [spec for spec in RERANKER_ONLY_BASELINES if reranker_only and spec not in given]
    return list(given) + extra


def cmd_eval(args: argparse.Namespace) -> None:
    if args.task == "personal":
        cmd_eval_personal(args)
        return
    if not args.judgments:
        raise ShoprankError(f"eval {args.task} needs --judgments")
    from core.catalog import load_catalog  # noqa: PLC0415
    from core.judgments import load_judgments  # noqa: PLC0415
    from core.splits import select  # noqa: PLC0415
    from training.evaluate import Arm, compare, load_report_groups  # noqa: PLC0415

    catalog = Path(args.catalog)
    judgments = select(load_judgments(args.judgments), args.split)
    if args.max_queries:
        judgments = dict(list(judgments.items())[: args.max_queries])
    catalog_ids = {product.product_id for product in load_catalog(catalog, skip_untitled=args.skip_untitled)}
    default = Arm("default", args.retrieval, not args.no_rerank)
    if args.reranker_only:
        default = Arm("reranker only", args.retrieval, combination_weights={"reranker": 1.0})
    baselines = [Arm.parse(spec) for spec in baseline_specs(args.baseline, args.reranker_only)]
    groups = load_report_groups(Path(args.groups)) if args.groups else None

    async def work(stub):
        return await compare(stub, judgments, catalog_ids, args.task, default, baselines, groups, seed=args.seed,
                             show_progress=not args.json, top_k=args.top_k or 0)

    result = on_catalog(args, catalog, work)
    result["split"] = args.split or "all"
    _print(result, args.json)


def cmd_eval_personal(args: argparse.Namespace) -> None:
    """Replay each user's past orders into a fresh profile store, then search the aisles of their last order."""
    from core.catalog import load_catalog  # noqa: PLC0415
    from training.blend_fit import split_of_user  # noqa: PLC0415
    from training.personal import evaluate_personal, load_histories  # noqa: PLC0415

    if not args.events:
        raise ShoprankError("eval personal needs --events")
    catalog = Path(args.catalog)
    products = load_catalog(catalog, skip_untitled=args.skip_untitled)
    histories = load_histories(Path(args.events))
    if args.split:
        histories = {user: h for user, h in histories.items() if split_of_user(user) == args.split}
    if args.max_users:
        histories = dict(list(histories.items())[: args.max_users])
    if not histories:
        raise ShoprankError(f"no users in {args.events}" + (f" in the {args.split} split" if args.split else ""))

    with fresh_profile_store("eval") as store:
        def fresh_store(settings):  # the replay must start from nothing
            return dataclasses.replace(settings, profile_store=store)

        result = on_catalog(args, catalog, lambda stub: evaluate_personal(stub, histories, products,
                                                                           show_progress=not args.json),
                            adjust=fresh_store)
    result["split"] = args.split or "all"
    _print(result, args.json)


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value}")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's commands."""
    sub = commands.add_parser("eval", help="evaluate judged queries through the serving path")
    sub.add_argument("task", choices=("rerank", "search", "personal"),
                     help="rerank, search: judged queries (--judgments); personal: users' last orders (--events)")
    sub.add_argument("--catalog", required=True)
    sub.add_argument("--judgments", help="rerank and search: the judged queries")
    sub.add_argument("--events", help="personal: users' events (FORMATS.md); all but each user's last order are replayed")
    sub.add_argument("--max-users", type=int, help="personal: only the first N users (in file order) of the selection")
    sub.add_argument("--retrieval", choices=("hybrid", "lexical", "dense"), default="hybrid")
    sub.add_argument("--fusion", choices=("rrf", "weighted"))
    sub.add_argument("--index", help="prebuilt index of the catalog (default: built once and cached under .shoprank/indexes)")
    sub.add_argument("--seed", type=int, default=0, help="seed of the candidate shuffle in rerank")
    sub.add_argument("--split", choices=("train", "dev", "test"), help="only the queries (personal: the users) of this split (core/splits.py; training/blend_fit.py)")
    sub.add_argument("--no-rerank", action="store_true", help="skip the cross-encoder: the fused order")
    sub.add_argument("--reranker-only", action="store_true",
                     help="rank by the cross-encoder's score alone (combination weights {reranker: 1}), beside "
                          "the zero-shot MiniLM (dense=1) and the fused order, with paired intervals")
    sub.add_argument("--baseline", action="append", default=[],
                     help="also rank the same queries another way and report the paired bootstrap 95%% interval of "
                          "the difference: fused, lexical, or combination weights such as reranker=1, dense=1, "
                          "multilingual=1 (repeatable)")
    sub.add_argument("--groups", help="CSV query,group: report nDCG@10 per group as well")
    sub.add_argument("--max-queries", type=int, help="only the first N queries (in file order) of the selection")
    sub.add_argument("--top-k", type=int, help="search: products asked for (default 100, with recall@100); the "
                                               "service reranks at least this many, so measure a --rerank-depth "
                                               "below 100 with --top-k 10")
    sub.add_argument("--json", action="store_true", help="print one JSON object")
    catalog_options(sub)
    triton_options(sub)
    sub.set_defaults(func=cmd_eval)
