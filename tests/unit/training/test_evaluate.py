"""training.evaluate.evaluate: what it asks the service for, and what it reports (a fake stub: one function's logic)."""

from __future__ import annotations

import asyncio

from core._proto.shoprank.v1 import ranking_pb2
from training.evaluate import SEARCH_DEPTH, evaluate


class Stub:
    """Answers every search with products p0, p1, ... up to the top_k asked for, recording the requests."""

    def __init__(self) -> None:
        self.requests: list[ranking_pb2.SearchRequest] = []

    async def Search(self, request):  # noqa: N802 - the gRPC method's name
        self.requests.append(request)
        return ranking_pb2.SearchResponse(items=[ranking_pb2.Item(product_id=f"p{i}") for i in range(request.top_k)])


JUDGMENTS = {"drill": {"p0": 2.0, "p50": 1.0}}
CATALOG = {f"p{i}" for i in range(200)}


def test_search_asks_for_the_search_depth_and_reports_recall():
    stub = Stub()
    result = asyncio.run(evaluate(stub, JUDGMENTS, CATALOG, "search", show_progress=False))
    assert stub.requests[0].top_k == SEARCH_DEPTH
    assert result["recall@100"] == 1.0 and "top_k" not in result


def test_a_smaller_top_k_is_asked_for_and_recall_is_not_reported():
    stub = Stub()
    result = asyncio.run(evaluate(stub, JUDGMENTS, CATALOG, "search", show_progress=False, top_k=10))
    assert stub.requests[0].top_k == 10
    assert "recall@100" not in result and result["top_k"] == 10
    assert 0.0 < result["ndcg@10"] < 1.0  # p50 is judged relevant but not among the 10
