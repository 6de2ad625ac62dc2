"""search.CrossEncoder's admission limit and deadline, with a stand-in Triton client (one class under test)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from core.errors import DeadlineMissed, RerankerBusy
from orchestrator.search import CrossEncoder


class HeldTriton:
    """Answers `infer` only when released, so requests stay in flight as long as the test wants."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0

    async def infer(self, spec, feeds, version=""):
        self.calls += 1
        await self.release.wait()
        return {"score": np.ones((len(feeds["texts"]), 1), dtype=np.float32)}


def tokenizer(query, texts):
    return {"texts": texts}


def test_queries_past_the_in_flight_limit_are_refused_at_once_not_queued():
    async def scenario():
        triton = HeldTriton()
        reranker = CrossEncoder(triton, tokenizer, timeout_s=5.0, max_in_flight=1)
        first = asyncio.create_task(reranker.score("drill", ["a", "b"]))
        while not triton.calls:  # until the first request waits on Triton
            await asyncio.sleep(0)
        with pytest.raises(RerankerBusy, match="busy"):
            await reranker.score("saw", ["c"])
        assert triton.calls == 1  # the refused query never reached Triton
        triton.release.set()
        assert (await first).tolist() == [1.0, 1.0]
        assert reranker.in_flight == 0
        assert (await reranker.score("saw", ["c"])).tolist() == [1.0]  # room again

    asyncio.run(scenario())


def test_missed_deadline_frees_its_slot():
    async def scenario():
        reranker = CrossEncoder(HeldTriton(), tokenizer, timeout_s=0.01, max_in_flight=1)
        with pytest.raises(DeadlineMissed, match="deadline"):
            await reranker.score("drill", ["a"])
        assert reranker.in_flight == 0

    asyncio.run(scenario())
