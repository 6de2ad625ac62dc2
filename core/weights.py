"""The combination weights' names and their fallback: the reranker alone, used when no fitted combination exists."""

from __future__ import annotations

from .features import FEATURES

DEFAULT_WEIGHTS = {"reranker": 1.0, "bm25": 0.0, "dense": 0.0, **{name: 0.0 for name in FEATURES}}
