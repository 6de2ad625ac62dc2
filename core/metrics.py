"""Ranking metrics shared by `shoprank eval`, the benchmarks and training: linear-gain nDCG and recall."""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np


def dcg(gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of the first k gains: sum of gain / log2(position + 1), positions from 1."""
    return sum(gain / math.log2(position + 2) for position, gain in enumerate(gains[:k]))


def ndcg_at_k(ranked_ids: Sequence[str], judged: dict[str, float], k: int) -> float | None:
    """nDCG@k with linear gains; unjudged products count as gain 0; the ideal order is the judged set sorted.

    None when no judged product has a positive gain: every order is then ideal and the query measures nothing.
    """
    ideal = dcg(sorted(judged.values(), reverse=True), k)
    if ideal <= 0:
        return None
    return dcg([judged.get(product_id, 0.0) for product_id in ranked_ids], k) / ideal


def ndcg_by_score(scores: np.ndarray, gains: Sequence[float], k: int,
                  judged: Iterable[float] | None = None) -> float | None:
    """nDCG@k of candidates ordered by descending score, ties keeping their order: `gains` are the candidates'
    in their order, `judged` every judged gain of the query for the ideal order (default: `gains`). None when no
    judged gain is positive, as `ndcg_at_k`."""
    gains = np.asarray(gains, dtype=np.float64)
    ideal = dcg(sorted(gains.tolist() if judged is None else judged, reverse=True), k)
    if ideal <= 0:
        return None
    return dcg(gains[np.argsort(-np.asarray(scores), kind="stable")].tolist(), k) / ideal


def recall_at_k(ranked_ids: Sequence[str], judged: dict[str, float], k: int, min_gain: float = 1.0) -> float | None:
    """Share of judged products with gain >= min_gain found in the first k; None when there are none."""
    relevant = {product_id for product_id, gain in judged.items() if gain >= min_gain}
    if not relevant:
        return None
    return len(relevant.intersection(ranked_ids[:k])) / len(relevant)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
