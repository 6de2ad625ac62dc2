"""`shoprank eval`: judged queries sent through the same gRPC Search call that answers users.

- rerank: each query ranks only its judged products (given as candidate ids, shuffled first so the file's
  order leaks nothing); nDCG@10 over them.
- search: each query searches the whole catalog for 100 products; nDCG@10 (unjudged = gain 0),
  recall@100 (judged products with gain >= 1), and client-side latency from one client, one call at a time.
Both count the queries answered degraded and those the service searched for spelling-corrected.
"""

from __future__ import annotations

import random
import time
from typing import Any

import grpc
from tqdm import tqdm

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.metrics import ndcg_at_k, percentile, recall_at_k

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
) -> dict[str, Any]:
    """Run every judged query through Search and return the metrics as one flat dict."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    ndcgs: list[float] = []
    recalls: list[float] = []
    latencies_ms: list[float] = []
    degraded = skipped = missing_judged = corrected = 0
    for query, judged_all in tqdm(judgments.items(), desc=f"eval {task}/{retrieval}", unit="query", disable=not show_progress):
        judged = {pid: gain for pid, gain in judged_all.items() if pid in catalog_ids}
        missing_judged += len(judged_all) - len(judged)
        if not judged:
            skipped += 1
            continue
        request = ranking_pb2.SearchRequest(query=query, retrieval=RETRIEVAL[retrieval], skip_rerank=not rerank)
        if task == "rerank":
            candidates = sorted(judged)
            random.Random(f"{seed}:{query}").shuffle(candidates)
            request.candidate_ids.extend(candidates)
            request.top_k = len(candidates)
        else:
            request.top_k = SEARCH_DEPTH
        started = time.perf_counter()
        try:
            response = await stub.Search(request)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                skipped += 1  # e.g. a query of punctuation only; counted, not hidden
                continue
            raise
        latencies_ms.append((time.perf_counter() - started) * 1000.0)
        degraded += response.degraded
        corrected += bool(response.corrected_query)
        ranked = [item.product_id for item in response.items]
        score = ndcg_at_k(ranked, judged, 10)
        if score is None:
            skipped += 1
            continue
        ndcgs.append(score)
        if task == "search":
            recall = recall_at_k(ranked, judged, SEARCH_DEPTH)
            if recall is not None:
                recalls.append(recall)
    result: dict[str, Any] = {"task": task, "retrieval": retrieval, "rerank": rerank, "ndcg@10": _mean(ndcgs)}
    if task == "search":
        result["recall@100"] = _mean(recalls)
        result["p50_ms"] = round(percentile(latencies_ms, 50), 2)
        result["p99_ms"] = round(percentile(latencies_ms, 99), 2)
    result.update({"queries": len(ndcgs), "skipped_queries": skipped, "judged_not_in_catalog": missing_judged,
                   "degraded": degraded, "spelling_corrected": corrected})
    return result
