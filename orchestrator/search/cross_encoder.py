"""The cross-encoder's client: one Triton request per query, a limit on requests in flight, a deadline."""

from __future__ import annotations

import asyncio

import numpy as np

from core.errors import DeadlineMissed, RerankerBusy
from core.specs import RERANKER
from core.tokenization import PairEncoder

from ..deadline import remaining
from ..triton import TritonClient


class CrossEncoder:
    """Scores (query, product text) pairs with the cross-encoder in Triton: one request per query.

    At most `max_in_flight` requests wait on Triton at once; past that a query is not queued behind them
    (where it would most likely miss its deadline anyway) but refused at once (RerankerBusy), and the search
    ranks without the cross-encoder, degraded.
    """

    def __init__(self, client: TritonClient, tokenizer: PairEncoder, timeout_s: float, max_in_flight: int = 2) -> None:
        self.client = client
        self.tokenizer = tokenizer
        self.timeout_s = timeout_s
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    def admit(self) -> None:
        """RerankerBusy when `max_in_flight` requests are already waiting on Triton."""
        if self.in_flight >= self.max_in_flight:
            raise RerankerBusy(f"reranker busy: {self.in_flight} requests already in flight")

    async def score(self, query: str, texts: list[str], version: str = "") -> np.ndarray:
        """Cross-encoder scores of that version; RerankerBusy when busy, DeadlineMissed past the deadline,
        TritonError when Triton fails."""
        self.admit()
        left = remaining()  # the caller's deadline (orchestrator/deadline.py), when shorter than the reranker's
        timeout = self.timeout_s if left is None else min(self.timeout_s, left)
        if timeout <= 0:
            raise DeadlineMissed("reranker not asked: the call's deadline had passed")
        self.in_flight += 1
        try:
            feeds = self.tokenizer(query, texts)
            output = await asyncio.wait_for(self.client.infer(RERANKER, feeds, version), timeout)
        except asyncio.TimeoutError:
            raise DeadlineMissed(f"reranker missed its {timeout * 1000:.0f} ms deadline") from None
        finally:
            self.in_flight -= 1
        return output["score"][:, 0]
