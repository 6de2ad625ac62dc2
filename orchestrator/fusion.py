"""Fusing the retrievers' scores into one ranking, with every item's components kept for explanations.

Both retrievers score every candidate exactly (BM25 from its full score array, the bi-encoder by a dot
product), so fusion sees complete scores. Two methods, compared in benchmarks/retrieval_quality.py:
- rrf: reciprocal rank fusion, sum of 1 / (k + rank) over retrievers; a product BM25 does not match at all
  has no lexical rank and gets nothing from it.
- blend (the default): w * bm25 / max(bm25 over the candidates) + (1 - w) * cosine, w = 0.3 (not tuned).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Component:
    """One retriever's view of the candidates, aligned with `Fused.rows`."""

    name: str
    raw: np.ndarray
    rank: np.ndarray  # 1-based among the candidates; 0 = not retrieved by this retriever
    contribution: np.ndarray


@dataclass(frozen=True)
class Fused:
    """Candidates sorted by final score, best first."""

    rows: np.ndarray
    scores: np.ndarray
    components: tuple[Component, ...]


def ranks(raw: np.ndarray, matched: np.ndarray) -> np.ndarray:
    """1-based rank of each candidate by descending score among the matched ones; 0 for the unmatched."""
    order = np.lexsort((np.arange(len(raw)), -raw))
    order = order[matched[order]]
    result = np.zeros(len(raw), dtype=np.int64)
    result[order] = np.arange(1, len(order) + 1)
    return result


def fuse(rows: np.ndarray, raw_scores: dict[str, np.ndarray], method: str, rrf_k: int = 60,
         lexical_weight: float = 0.3) -> Fused:
    """Fuse the scores of `rows`; `raw_scores` maps a retriever name ("bm25", "dense") to scores aligned with rows.

    With one retriever, its raw score is the final score.
    """
    matched = {name: (raw > 0) if name == "bm25" else np.ones(len(raw), dtype=bool) for name, raw in raw_scores.items()}
    rank = {name: ranks(raw, matched[name]) for name, raw in raw_scores.items()}
    if len(raw_scores) == 1:
        contribution = {name: raw.astype(np.float64) for name, raw in raw_scores.items()}
    elif method == "rrf":
        contribution = {name: np.where(rank[name] > 0, 1.0 / (rrf_k + rank[name]), 0.0) for name in raw_scores}
    elif method == "blend":
        bm25 = raw_scores["bm25"].astype(np.float64)
        top = bm25.max(initial=0.0)
        contribution = {
            "bm25": lexical_weight * (bm25 / top if top > 0 else np.zeros_like(bm25)),
            "dense": (1.0 - lexical_weight) * raw_scores["dense"].astype(np.float64),
        }
    else:
        raise ValueError(f"unknown fusion method {method!r}")
    total = np.sum(list(contribution.values()), axis=0)
    order = np.lexsort((rows, -total))
    components = tuple(
        Component(name, raw_scores[name][order], rank[name][order], contribution[name][order]) for name in raw_scores
    )
    return Fused(rows[order], total[order], components)


def combine_with_reranker(fused: Fused, reranker_scores: np.ndarray, weights: dict[str, float],
                          features: dict[str, np.ndarray] | None = None) -> Fused:
    """Re-order the first len(reranker_scores) fused candidates by a learned linear combination.

    final = w_reranker * cross-encoder score + w_bm25 * bm25 / max(bm25) + w_dense * cosine + sum of w_f * feature f,
    over the reranked candidates, with `features` (core/features.py) aligned with them. Every term is kept
    as a component, so the final score is the sum of the contributions; a weight missing from `weights` is 0,
    except the reranker's (1).
    """
    depth = len(reranker_scores)
    rows = fused.rows[:depth]
    raw = {component.name: component.raw[:depth].astype(np.float64) for component in fused.components}
    rank = {component.name: component.rank[:depth] for component in fused.components}
    contribution = {}
    if "bm25" in raw:
        top = raw["bm25"].max(initial=0.0)
        contribution["bm25"] = weights.get("bm25", 0.0) * (raw["bm25"] / top if top > 0 else np.zeros(depth))
    if "dense" in raw:
        contribution["dense"] = weights.get("dense", 0.0) * raw["dense"]
    raw["reranker"] = reranker_scores.astype(np.float64)
    rank["reranker"] = ranks(raw["reranker"], np.ones(depth, dtype=bool))
    contribution["reranker"] = weights.get("reranker", 1.0) * raw["reranker"]
    for name, values in (features or {}).items():
        raw[name] = np.asarray(values, dtype=np.float64)
        rank[name] = ranks(raw[name], np.ones(depth, dtype=bool))
        contribution[name] = weights.get(name, 0.0) * raw[name]
    total = np.sum(list(contribution.values()), axis=0)
    order = np.lexsort((rows, -total))
    components = tuple(Component(name, raw[name][order], rank[name][order], contribution[name][order]) for name in raw)
    return Fused(rows[order], total[order], components)
