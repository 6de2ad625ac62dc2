"""Learning the weights that combine the cross-encoder's score with BM25, the cosine and match features.

final = reranker + w_bm25 * bm25 / max(bm25 over the query's candidates) + w_dense * cosine
        + w_overlap * overlap + w_numbers * numbers + w_units * units   (core/features.py)

The components come from the serving path itself (Search with the judged products as candidates and
explain on), so the weights are fit on exactly the numbers the orchestrator combines. The reranker's weight
stays 1 (only the ratios matter); the others are found by coordinate ascent on the dev split's nDCG@10, each
weight in turn set to the best value of WEIGHT_GRID, until a full round changes nothing. The test split is
never used. `cross_validate` fits on half of the dev queries and measures on the other half, both ways, for
an estimate that is not measured on the queries the weights were chosen on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.metrics import ndcg_at_k
from core.weights import DEFAULT_WEIGHTS

# Every weight the orchestrator combines, the reranker's first (its weight stays 1).
COMPONENTS = tuple(DEFAULT_WEIGHTS)
# No negative weights: a closer lexical or semantic match never counts against a product. On dev the fit with
# negative values allowed (BM25 -0.5) scored the same (0.9392, 2-fold 0.9379 vs 0.9380 without).
WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
MAX_ROUNDS = 5


@dataclass(frozen=True)
class Components:
    """One judged query's candidates with the raw component scores the orchestrator saw."""

    query: str
    product_ids: list[str]
    gains: dict[str, float]
    features: np.ndarray  # [candidates, len(COMPONENTS)], bm25 divided by its maximum over the candidates


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
            if "reranker" not in raw:
                raise RuntimeError(f"query {query!r} was not reranked: is the reranker served and rerank_depth > 0?")
            rows.append([raw.get(name, 0.0) for name in COMPONENTS])
        features = np.array(rows, dtype=np.float64)
        top = features[:, 1].max(initial=0.0)
        features[:, 1] = features[:, 1] / top if top > 0 else 0.0
        collected.append(Components(query, [item.product_id for item in response.items], dict(judged), features))
    return collected


def mean_ndcg(data: list[Components], weights: np.ndarray) -> float:
    values = []
    for item in data:
        order = np.argsort(-(item.features @ weights), kind="stable")
        value = ndcg_at_k([item.product_ids[i] for i in order], item.gains, 10)
        if value is not None:
            values.append(value)
    return float(np.mean(values)) if values else float("nan")


def _coordinate_ascent(data: list[Components]) -> np.ndarray:
    weights = np.zeros(len(COMPONENTS))
    weights[0] = 1.0
    best = mean_ndcg(data, weights)
    for _ in range(MAX_ROUNDS):
        changed = False
        for position in range(1, len(COMPONENTS)):
            for value in WEIGHT_GRID:
                trial = weights.copy()
                trial[position] = value
                score = mean_ndcg(data, trial)
                if score > best + 1e-6:
                    weights, best, changed = trial, score, True
        if not changed:
            break
    return weights


def fit(data: list[Components]) -> tuple[dict[str, float], float, float]:
    """(weights, dev nDCG@10 with them, dev nDCG@10 of the reranker alone)."""
    alone = np.zeros(len(COMPONENTS))
    alone[0] = 1.0
    weights = _coordinate_ascent(data)
    return dict(zip(COMPONENTS, weights.tolist())), mean_ndcg(data, weights), mean_ndcg(data, alone)


def cross_validate(data: list[Components]) -> float:
    """Mean nDCG@10 over the dev queries, each scored with weights fit on the other half (halves by query hash)."""
    half = [int(hashlib.sha256(item.query.encode()).hexdigest(), 16) % 2 for item in data]
    folds = [[item for item, side in zip(data, half) if side == k] for k in (0, 1)]
    total, count = 0.0, 0
    for k in (0, 1):
        weights = _coordinate_ascent(folds[1 - k])
        total += mean_ndcg(folds[k], weights) * len(folds[k])
        count += len(folds[k])
    return total / count
