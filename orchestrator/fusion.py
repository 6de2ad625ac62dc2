"""Fusing the retrievers' scores into one ranking, with every item's components kept for explanations.

Both retrievers score every candidate exactly (BM25 from its full score array, the bi-encoder by a dot
product), so fusion sees complete scores. Two methods, compared in benchmarks/retrieval_quality.py:
- rrf: reciprocal rank fusion, sum of 1 / (k + rank) over retrievers; a product BM25 does not match at all
  has no lexical rank and gets nothing from it.
- weighted (the default): w * bm25 / max(bm25 over the candidates) + (1 - w) * cosine, w = 0.3 (not tuned); with
  two encoders (MiniLM "dense" and "multilingual") the cosine is their mean.
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
    """Fuse the scores of `rows`; `raw_scores` maps a retriever name ("bm25", "dense", "multilingual") to scores
    aligned with rows.

    With one retriever, its raw score is the final score.
    """
    matched = {name: (raw > 0) if name == "bm25" else np.ones(len(raw), dtype=bool) for name, raw in raw_scores.items()}
    rank = {name: ranks(raw, matched[name]) for name, raw in raw_scores.items()}
    if len(raw_scores) == 1:
        contribution = {name: raw.astype(np.float64) for name, raw in raw_scores.items()}
    elif method == "rrf":
        contribution = {name: np.where(rank[name] > 0, 1.0 / (rrf_k + rank[name]), 0.0) for name in raw_scores}
    elif method == "weighted":
        cosines = [name for name in raw_scores if name != "bm25"]
        contribution = {}
        if "bm25" in raw_scores:
            bm25 = raw_scores["bm25"].astype(np.float64)
            top = bm25.max(initial=0.0)
            contribution["bm25"] = lexical_weight * (bm25 / top if top > 0 else np.zeros_like(bm25))
        cosine_weight = (1.0 - lexical_weight) if "bm25" in raw_scores else 1.0
        for name in cosines:
            contribution[name] = cosine_weight / len(cosines) * raw_scores[name].astype(np.float64)
    else:
        raise ValueError(f"unknown fusion method {method!r}")
    total = np.sum(list(contribution.values()), axis=0)
    order = np.lexsort((rows, -total))
    components = tuple(
        Component(name, raw_scores[name][order], rank[name][order], contribution[name][order]) for name in raw_scores
    )
    return Fused(rows[order], total[order], components)


def impute(values: np.ndarray, readable: np.ndarray, proxy: np.ndarray | None = None) -> np.ndarray:
    """`values` where `readable`; elsewhere what a component that could read the candidate would likely give it.

    A component that cannot read a candidate (the English cross-encoder on a Chinese title, BM25 between a
    Chinese query and an English title) must neither push it down nor lift it. With a `proxy` that reads every
    candidate (the multilingual cosine), an unreadable candidate gets the value at its proxy quantile among the
    readable candidates' values: the multilingual model's opinion, in this component's scale. Without one, the
    median of the readable values. 0 when no candidate is readable.
    """
    if readable.all():
        return values
    if not readable.any():
        return np.where(readable, values, 0.0)
    if proxy is None:
        return np.where(readable, values, float(np.median(values[readable])))
    # Quantile of each candidate's proxy among all candidates (0 = lowest, 1 = highest), ties averaged.
    order = np.argsort(proxy, kind="stable")
    quantile = np.empty(len(proxy))
    quantile[order] = np.arange(len(proxy)) / max(len(proxy) - 1, 1)
    guessed = np.quantile(values[readable], quantile)
    return np.where(readable, values, guessed)


def combine(fused: Fused, weights: dict[str, float], extra: dict[str, np.ndarray]) -> Fused:
    """Re-order the first `depth` fused candidates by a learned linear combination, depth being the length of
    the arrays in `extra` (the cross-encoder's scores, match features, intent; aligned with the fused order).

    final = w_bm25 * bm25 / max(bm25) + w_dense * cosine + w_multilingual * cosine + sum of w_c * c over `extra`,
    over those candidates. Every term is kept as a component, so the final score is the sum of the
    contributions; a weight missing from `weights` is 0, except the reranker's (1).
    """
    rows, raw, contribution = _terms(fused, weights, extra)
    depth = len(rows)
    total = np.sum(list(contribution.values()), axis=0)
    order = np.lexsort((rows, -total))
    rank = {component.name: component.rank[:depth] for component in fused.components}
    rank.update({name: ranks(raw[name], np.ones(depth, dtype=bool)) for name in extra})
    components = tuple(Component(name, raw[name][order], rank[name][order], contribution[name][order]) for name in raw)
    return Fused(rows[order], total[order], components)


def combined_scores(fused: Fused, weights: dict[str, float], extra: dict[str, np.ndarray]) -> np.ndarray:
    """What `combine` would score each of the first `depth` fused candidates, aligned with the fused order."""
    return np.sum(list(_terms(fused, weights, extra)[2].values()), axis=0)


def _terms(fused: Fused, weights: dict[str, float],
           extra: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(the first `depth` rows, each component's raw values, each one's contribution), in the fused order."""
    depth = len(next(iter(extra.values()))) if extra else len(fused.rows)
    raw = {component.name: component.raw[:depth].astype(np.float64) for component in fused.components}
    contribution = {}
    for name in raw:
        if name == "bm25":
            top = raw["bm25"].max(initial=0.0)
            contribution["bm25"] = weights.get("bm25", 0.0) * (raw["bm25"] / top if top > 0 else np.zeros(depth))
        else:
            contribution[name] = weights.get(name, 0.0) * raw[name]
    for name, values in extra.items():
        raw[name] = np.asarray(values, dtype=np.float64)
        contribution[name] = weights.get(name, 1.0 if name == "reranker" else 0.0) * raw[name]
    return fused.rows[:depth], raw, contribution
