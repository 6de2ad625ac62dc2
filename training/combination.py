"""Learning the weights that combine the cross-encoder's score with BM25 and the bi-encoder's cosine.

final = reranker + w_bm25 * bm25 / max(bm25 over the query's candidates) + w_dense * cosine

The components come from the serving path itself (Search with the judged products as candidates and
explain on), so the weights are fit on exactly the numbers the orchestrator combines. The weights are
chosen by grid search on the dev split's nDCG@10; the test split is never used.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from orchestrator._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc

from .metrics import ndcg_at_k

BM25_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
DENSE_GRID = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class Components:
    """One judged query's candidates with the raw component scores the orchestrator saw."""

    product_ids: list[str]
    gains: dict[str, float]
    features: np.ndarray  # [candidates, 3]: reranker, bm25 / max(bm25), cosine


async def collect(stub: ranking_pb2_grpc.RankingStub, judgments: dict[str, dict[str, float]], catalog_ids: set[str],
                  show_progress: bool = True) -> list[Components]:
    """Ask the service for each query's component scores (rerank task, explain on)."""
    collected = []
    for query, judged in tqdm(judgments.items(), desc="components", unit="query", disable=not show_progress):
        candidates = sorted(pid for pid in judged if pid in catalog_ids)
        if not candidates:
            continue
        response = await stub.Search(ranking_pb2.SearchRequest(query=query, candidate_ids=candidates,
                                                               top_k=len(candidates), explain=True))
        if response.degraded:
            raise RuntimeError(f"query {query!r} was answered degraded: {response.degraded_reason}")
        rows = []
        for item in response.items:
            raw = {component.name: component.raw for component in item.components}
            rows.append([raw["reranker"], raw.get("bm25", 0.0), raw.get("dense", 0.0)])
        features = np.array(rows, dtype=np.float64)
        top = features[:, 1].max(initial=0.0)
        features[:, 1] = features[:, 1] / top if top > 0 else 0.0
        collected.append(Components([item.product_id for item in response.items], dict(judged), features))
    return collected


def mean_ndcg(data: list[Components], weights: np.ndarray) -> float:
    values = []
    for item in data:
        order = np.argsort(-(item.features @ weights), kind="stable")
        value = ndcg_at_k([item.product_ids[i] for i in order], item.gains, 10)
        if value is not None:
            values.append(value)
    return float(np.mean(values))


def fit(data: list[Components]) -> tuple[dict[str, float], float, float]:
    """(weights, dev nDCG@10 with them, dev nDCG@10 of the reranker alone)."""
    alone = mean_ndcg(data, np.array([1.0, 0.0, 0.0]))
    best_weights, best = (0.0, 0.0), alone
    for w_bm25, w_dense in itertools.product(BM25_GRID, DENSE_GRID):
        score = mean_ndcg(data, np.array([1.0, w_bm25, w_dense]))
        if score > best + 1e-6:
            best_weights, best = (w_bm25, w_dense), score
    return {"reranker": 1.0, "bm25": best_weights[0], "dense": best_weights[1]}, best, alone
