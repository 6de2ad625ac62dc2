"""Judged queries as lists to score: the shape training, the export gate and their metrics share.

A QueryList holds one query's judged products (and, for training, mined negatives at gain 0) in a seeded
shuffled order, so no file order leaks into tie-breaking.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass

import numpy as np

from .base_model import base_model_dir
from .catalog import Product
from .metrics import ndcg_by_score
from .spelling import SpellingCorrector
from .tokenization import TextEncoder


@dataclass(frozen=True)
class QueryList:
    """One judged query: its products' texts and gains."""

    query: str
    product_ids: tuple[str, ...]
    texts: tuple[str, ...]
    gains: np.ndarray


def build_lists(products: list[Product], judgments: dict[str, dict[str, float]], seed: int,
                mined: dict[str, list[str]] | None = None, negatives_per_query: int = 0) -> list[QueryList]:
    """QueryLists in a seeded shuffled product order, so no file order leaks into tie-breaking; with `mined`,
    each query's judged products plus up to `negatives_per_query` of its mined negatives at gain 0."""
    by_id = {product.product_id: product for product in products}
    lists = []
    for query, judged_all in judgments.items():
        judged = {pid: gain for pid, gain in judged_all.items() if pid in by_id}
        if not judged:
            continue
        if mined and negatives_per_query:
            extra = [pid for pid in sample_negatives(mined, query, negatives_per_query, seed) if pid in by_id]
            judged.update({pid: 0.0 for pid in extra if pid not in judged})
        ids = sorted(judged)
        random.Random(f"{seed}:{query}").shuffle(ids)
        lists.append(QueryList(query, tuple(ids), tuple(by_id[pid].search_text() for pid in ids),
                               np.array([judged[pid] for pid in ids], dtype=np.float32)))
    return lists


def correct_queries(splits: dict[str, list[QueryList]], products: list[Product]) -> dict[str, list[QueryList]]:
    """The splits with their queries spelling-corrected as the service corrects them (same catalog, same
    tokenizer vocabulary); which split a query is in, and its mined negatives, follow the query as typed."""
    words = TextEncoder(base_model_dir() / "tokenizer.json", 64).words()
    corrector = SpellingCorrector.for_catalog(products, words)
    return {name: [dataclasses.replace(item, query=corrector.correct(item.query)) for item in lists]
            for name, lists in splits.items()}


def ndcg_per_query(lists: list[QueryList], scores: list[np.ndarray], k: int = 10) -> list[float | None]:
    """nDCG@k of ranking each list by its scores (stable: ties keep the shuffled order); None for a list with
    no positive gain, the same lists whatever the scores, so two scorers' values pair up by position."""
    return [ndcg_by_score(score, item.gains, k) for item, score in zip(lists, scores)]


def mean_ndcg_over_queries(lists: list[QueryList], scores: list[np.ndarray], k: int = 10) -> float:
    """Mean nDCG@k over the lists that have a positive gain."""
    values = [value for value in ndcg_per_query(lists, scores, k) if value is not None]
    return float(np.mean(values)) if values else float("nan")


def sample_negatives(mined: dict[str, list[str]], query: str, count: int, seed: int) -> list[str]:
    """A seeded sample of `count` of the query's mined negatives (fewer when fewer were mined)."""
    pool = mined.get(query, [])
    return random.Random(f"{seed}:negatives:{query}").sample(pool, min(count, len(pool)))


def paired_report(lists: list[QueryList], scores: dict[str, list[np.ndarray]], subject: str, k: int = 10) -> dict:
    """nDCG@k of each scorer on the same lists, and the paired bootstrap 95% interval of `subject` minus each of
    the others over the queries (core/stats.py)."""
    from .stats import paired_bootstrap  # noqa: PLC0415

    per_query = {name: ndcg_per_query(lists, values, k) for name, values in scores.items()}
    kept = [i for i, value in enumerate(per_query[subject]) if value is not None]
    report: dict = {"queries": len(kept),
                    f"ndcg@{k}": {name: round(float(np.mean([values[i] for i in kept])), 4) if kept else None
                                  for name, values in per_query.items()}}
    for name, values in per_query.items():
        if name != subject and kept:
            interval = paired_bootstrap([per_query[subject][i] for i in kept], [values[i] for i in kept])
            report[f"{subject} - {name}"] = {"difference": round(interval.mean_difference, 4),
                                             "ci95": [round(interval.low, 4), round(interval.high, 4)],
                                             "excludes_zero": interval.excludes_zero}
    return report


def interval_text(difference: dict) -> str:
    """One difference of `paired_report`, e.g. '+0.0046 [+0.0013, +0.0078]'."""
    low, high = difference["ci95"]
    return f"{difference['difference']:+.4f} [{low:+.4f}, {high:+.4f}]"
