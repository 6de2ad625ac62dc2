"""Admission control and deadlines on a real service (real Triton, real gRPC server)."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc

from .conftest import ServiceThread

pytestmark = pytest.mark.integration

QUERIES = ["cordless drill", "wireless earbuds", "garden hose", "phone case", "bluetooth speaker", "led light bulb"]


@pytest.fixture
def narrow(settings, triton, demo_index, tmp_path):
    """A service that admits one search at a time."""
    service = ServiceThread(dataclasses.replace(
        settings, index_dir=demo_index, triton_url=triton.url, max_inflight_searches=1, retry_after_ms=250,
        profile_store=f"sqlite:///{tmp_path / 'profiles.db'}", experiment_state=tmp_path / "experiments.json",
        impression_log=tmp_path / "impressions")).start()
    try:
        yield service
    finally:
        service.stop()


async def _burst(address: str, count: int) -> list[tuple[str, str]]:
    """`count` searches at once, each with its feedback event after it: (status of the search, its retry hint)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = ranking_pb2_grpc.RankingStub(channel)

        async def one(turn: int) -> tuple[str, str]:
            call = stub.Search(ranking_pb2.SearchRequest(query=QUERIES[turn % len(QUERIES)], top_k=5), timeout=30)
            try:
                await call
                return "OK", ""
            except grpc.RpcError as error:
                hint = dict(await call.trailing_metadata() or ()).get("retry-after-ms", "")
                return error.code().name, hint

        return await asyncio.gather(*(one(turn) for turn in range(count)))


def test_searches_past_the_bound_are_refused_at_once_with_a_retry_hint_and_feedback_still_gets_in(narrow):
    outcomes = asyncio.run(_burst(narrow.address, 12))
    statuses = {status for status, _ in outcomes}
    assert statuses == {"OK", "RESOURCE_EXHAUSTED"}, outcomes
    assert all(hint == "250" for status, hint in outcomes if status == "RESOURCE_EXHAUSTED")
    assert narrow.service.gate.refused["search"] == sum(status != "OK" for status, _ in outcomes)
    assert narrow.service.gate.in_flight["search"] == 0  # every admitted search left the gate

    # Searches do not starve feedback: it has its own bound.
    async def searches_and_feedback():
        burst = asyncio.create_task(_burst(narrow.address, 12))
        async with grpc.aio.insecure_channel(narrow.address) as channel:
            stub = ranking_pb2_grpc.RankingStub(channel)
            stamp = Timestamp()
            stamp.GetCurrentTime()
            acks = await asyncio.gather(*(stub.Feedback(ranking_pb2.FeedbackEvent(
                event_id=f"overload-{turn}", user_id="u1", product_id="D0092", type=ranking_pb2.EVENT_TYPE_CLICK,
                time=stamp), timeout=30) for turn in range(4)))
        await burst
        return acks

    assert len(asyncio.run(searches_and_feedback())) == 4


def test_a_short_deadline_is_kept_and_no_work_outlives_it(service):
    """With 50 ms to answer a reranked search, the service answers within the deadline (the stages that ran out of
    time skipped, degraded) or the call ends DEADLINE_EXCEEDED; either way nothing goes on working for it."""
    with grpc.insecure_channel(service.address) as channel:
        stub = ranking_pb2_grpc.RankingStub(channel)
        stub.Search(ranking_pb2.SearchRequest(query="garden hose", top_k=5), timeout=30)  # the channel is up
        for query in ("cordless drill with two batteries", "wireless earbuds with charging case", "led light bulb"):
            try:
                response = stub.Search(ranking_pb2.SearchRequest(query=query, top_k=50), timeout=0.05)
            except grpc.RpcError as late:
                assert late.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            else:
                assert response.took_ms < 50 and response.items
            deadline = time.monotonic() + 10
            while service.service.gate.in_flight["search"] or service.service.cross_encoder.in_flight:
                assert time.monotonic() < deadline, "the work for a late search went on"
                time.sleep(0.01)
        # The service answers the next call as usual.
        assert stub.Search(ranking_pb2.SearchRequest(query="cordless drill", top_k=5), timeout=30).items
