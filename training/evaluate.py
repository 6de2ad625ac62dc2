"""`shoprank eval`: judged queries sent through the same gRPC Search call that answers users.

- rerank: each query ranks only its judged products (given as candidate ids, shuffled first so the file's
  order leaks nothing); nDCG@10 over them.
- search: each query searches the whole catalog for 100 products; nDCG@10 (unjudged = gain 0),
  recall@100 (judged products with gain >= 1), and client-side latency from one client, one call at a time.
Both count the queries answered degraded and those the service searched for spelling-corrected.

`compare` runs the default and named baselines (`Arm`) over the same queries in one service, and reports
each baseline's difference to the default with a paired bootstrap 95% interval over queries, overall and per
query group.
"""

from __future__ import annotations

import csv
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from tqdm import tqdm

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.errors import ShoprankError
from core.metrics import ndcg_at_k, percentile, recall_at_k
from core.stats import paired_bootstrap

TASKS = ("rerank", "search")
RETRIEVAL = {
    "hybrid": ranking_pb2.RETRIEVAL_MODE_HYBRID,
    "lexical": ranking_pb2.RETRIEVAL_MODE_LEXICAL,
    "dense": ranking_pb2.RETRIEVAL_MODE_DENSE,
}
SEARCH_DEPTH = 100


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else float("nan")


async def evaluate(
    stub: ranking_pb2_grpc.RankingStub,
    judgments: dict[str, dict[str, float]],
    catalog_ids: set[str],
    task: str,
    retrieval: str = "hybrid",
    seed: int = 0,
    show_progress: bool = True,
    rerank: bool = True,
    combination_weights: dict[str, float] | None = None,
    per_query: dict[str, float] | None = None,
    top_k: int = 0,
    latencies: list[float] | None = None,
) -> dict[str, Any]:
    """Run every judged query through Search and return the metrics as one flat dict; each query's nDCG@10 is
    also written into `per_query` when given, and each call's client-side milliseconds into `latencies`. Searches
    ask for `top_k` products (default SEARCH_DEPTH); recall is reported only when that is SEARCH_DEPTH. The
    service reranks at least top_k candidates, so a rerank depth below 100 is measured with a smaller top_k (10:
    nDCG@10 only)."""
    top_k = top_k or SEARCH_DEPTH
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    ndcgs: list[float] = []
    recalls: list[float] = []
    latencies_ms: list[float] = []
    degraded = skipped = missing_judged = corrected = own_weights = 0
    shop = ""
    for query, judged_all in tqdm(judgments.items(), desc=f"eval {task}/{retrieval}", unit="query", disable=not show_progress):
        judged = {pid: gain for pid, gain in judged_all.items() if pid in catalog_ids}
        missing_judged += len(judged_all) - len(judged)
        if not judged:
            skipped += 1
            continue
        request = ranking_pb2.SearchRequest(query=query, retrieval=RETRIEVAL[retrieval], skip_rerank=not rerank,
                                            combination_weights=combination_weights or {})
        if task == "rerank":
            candidates = sorted(judged)
            random.Random(f"{seed}:{query}").shuffle(candidates)
            request.candidate_ids.extend(candidates)
            request.top_k = len(candidates)
        else:
            request.top_k = top_k
        started = time.perf_counter()
        try:
            response = await stub.Search(request)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                skipped += 1  # e.g. a query of punctuation only; counted, not hidden
                continue
            raise
        latencies_ms.append((time.perf_counter() - started) * 1000.0)
        if latencies is not None:
            latencies.append(latencies_ms[-1])
        degraded += response.degraded
        corrected += bool(response.corrected_query)
        own_weights += response.shop_weights
        shop = response.shop
        ranked = [item.product_id for item in response.items]
        score = ndcg_at_k(ranked, judged, 10)
        if score is None:
            skipped += 1
            continue
        ndcgs.append(score)
        if per_query is not None:
            per_query[query] = score
        if task == "search" and top_k == SEARCH_DEPTH:
            recall = recall_at_k(ranked, judged, SEARCH_DEPTH)
            if recall is not None:
                recalls.append(recall)
    result: dict[str, Any] = {"task": task, "retrieval": retrieval, "rerank": rerank, "ndcg@10": _mean(ndcgs)}
    if task == "search":
        if top_k == SEARCH_DEPTH:
            result["recall@100"] = _mean(recalls)
        else:
            result["top_k"] = top_k
        result["p50_ms"] = round(percentile(latencies_ms, 50), 2)
        result["p99_ms"] = round(percentile(latencies_ms, 99), 2)
    result.update({"queries": len(ndcgs), "skipped_queries": skipped, "judged_not_in_catalog": missing_judged,
                   "degraded": degraded, "spelling_corrected": corrected,
                   # the shop's own weights ranked every answer (False for the default's, or for none at all)
                   "shop": shop, "shop_weights": bool(latencies_ms) and own_weights == len(latencies_ms)})
    return result


@dataclass(frozen=True)
class Arm:
    """One way of ranking: the served default, the fused order, one retriever, or given combination weights."""

    name: str
    retrieval: str = "hybrid"
    rerank: bool = True
    combination_weights: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> "Arm":
        """"fused" (no combination), "lexical" (BM25 alone), or weights "reranker=1" / "dense=1,bm25=0.5"."""
        if spec == "fused":
            return cls(spec, rerank=False)
        if spec == "lexical":
            return cls(spec, retrieval="lexical", rerank=False)
        try:
            weights = {name.strip(): float(value) for name, value in (part.split("=") for part in spec.split(","))}
        except ValueError:
            raise ShoprankError(f"baseline {spec!r}: expected fused, lexical or NAME=WEIGHT[,NAME=WEIGHT...]") from None
        return cls(spec, combination_weights=weights)


def load_report_groups(path: Path) -> dict[str, str]:
    """query -> group, the groups a report breaks nDCG down by (eval --groups), from a CSV with columns query,group."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"query", "group"} <= set(reader.fieldnames):
            raise ShoprankError(f"{path}: expected columns query,group, found {reader.fieldnames}")
        return {row["query"]: row["group"] for row in reader}


def _by_group(values: dict[str, float], groups: dict[str, str]) -> dict[str, float]:
    grouped: dict[str, list[float]] = {}
    for query, value in values.items():
        grouped.setdefault(groups.get(query, "(no group)"), []).append(value)
    return {group: _mean(grouped[group]) for group in sorted(grouped)}


async def compare(
    stub: ranking_pb2_grpc.RankingStub,
    judgments: dict[str, dict[str, float]],
    catalog_ids: set[str],
    task: str,
    default: Arm,
    baselines: list[Arm],
    groups: dict[str, str] | None = None,
    seed: int = 0,
    show_progress: bool = True,
    top_k: int = 0,
) -> dict[str, Any]:
    """`evaluate` of the default arm, then of each baseline on the same queries, with paired intervals."""
    scores: dict[str, float] = {}
    result = await evaluate(stub, judgments, catalog_ids, task, default.retrieval, seed, show_progress, default.rerank,
                            default.combination_weights, scores, top_k)
    if groups is not None:
        result["groups"] = _by_group(scores, groups)
    for arm in baselines:
        other: dict[str, float] = {}
        summary = await evaluate(stub, judgments, catalog_ids, task, arm.retrieval, seed, show_progress, arm.rerank,
                                 arm.combination_weights, other, top_k)
        shared = [query for query in scores if query in other]
        entry: dict[str, Any] = {"ndcg@10": summary["ndcg@10"]}
        if shared:
            entry["default_minus_this"] = paired_bootstrap([scores[q] for q in shared], [other[q] for q in shared]).text()
        if groups is not None:
            entry["groups"] = _by_group(other, groups)
            entry["groups_default_minus_this"] = {}
            for group in result["groups"]:
                members = [q for q in shared if groups.get(q, "(no group)") == group]
                if len(members) > 1:
                    entry["groups_default_minus_this"][group] = paired_bootstrap(
                        [scores[q] for q in members], [other[q] for q in members]).text()
        result.setdefault("baselines", {})[arm.name] = entry
    return result
