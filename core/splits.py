"""Deterministic train/dev/test splits of judged queries, by query, so no query leaks across splits.

A query's split depends only on its normalized text (SHA-256), not on file order or on which other queries
exist: adding judgments never moves a query from one split to another.
"""

from __future__ import annotations

import hashlib

SPLITS = {"train": 0.8, "dev": 0.1, "test": 0.1}


def split_of(query: str) -> str:
    """'train', 'dev' or 'test' for a query (80/10/10)."""
    return split_by_hash(" ".join(query.casefold().split()), SPLITS)


def split_by_hash(key: str, shares: dict[str, float]) -> str:
    """The split of `shares` (name -> share, in order) that the SHA-256 of `key` falls in; the last one past
    rounding."""
    position = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2**64
    cumulative = 0.0
    for name, share in shares.items():
        cumulative += share
        if position < cumulative:
            return name
    return list(shares)[-1]


def select(judgments: dict[str, dict[str, float]], split: str | None) -> dict[str, dict[str, float]]:
    """The judgments of one split; all of them when split is None."""
    if split is None:
        return judgments
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    return {query: judged for query, judged in judgments.items() if split_of(query) == split}
