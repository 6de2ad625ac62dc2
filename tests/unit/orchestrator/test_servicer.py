"""orchestrator.servicer: protobuf <-> domain conversion, and domain errors -> status codes (no server)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from core._proto.shoprank.v1 import ranking_pb2 as pb
from core.errors import CatalogStoreError, CatalogUnavailable, DeadlineExceeded, InvalidRequest, TritonError
from orchestrator.filters import Filter
from orchestrator.search import ScoredItem, SearchQuery, SearchResult
from orchestrator.servicer import RankingServicer, to_event, to_query, to_response


def test_minimal_request_defaults():
    query = to_query(pb.SearchRequest(query="drill"))
    assert query == SearchQuery(query="drill")
    assert query.top_k is None
    assert query.filters == ()
    assert query.candidate_ids == ()
    assert query.explain is False
    assert query.mode == "hybrid"
    assert query.correct_spelling is True


def test_top_k_zero_is_kept_not_defaulted():
    # top_k is `optional`: an explicit 0 reaches validation instead of silently becoming the default.
    assert to_query(pb.SearchRequest(query="q", top_k=0)).top_k == 0
    assert to_query(pb.SearchRequest(query="q", top_k=25)).top_k == 25


def test_full_request():
    request = pb.SearchRequest(
        query="cordless drill",
        user_id="u-1",
        top_k=5,
        filters=[
            pb.Filter(field="brand", any_of=["Bosch", "Makita"]),
            pb.Filter(field="price", min=10.0),
            pb.Filter(field="price", max=99.5),
            pb.Filter(field="price", min=0.0, max=0.0),
        ],
        candidate_ids=["p1", "p2"],
        explain=True,
        retrieval=pb.RETRIEVAL_MODE_LEXICAL,
        skip_spelling_correction=True,
    )
    query = to_query(request)
    assert query.query == "cordless drill"
    assert query.user_id == "u-1"
    assert query.top_k == 5
    assert query.filters == (
        Filter("brand", any_of=("Bosch", "Makita")),
        Filter("price", min=10.0),
        Filter("price", max=99.5),
        Filter("price", min=0.0, max=0.0),
    )
    assert isinstance(query.filters[0].any_of, tuple)
    assert query.candidate_ids == ("p1", "p2")
    assert isinstance(query.candidate_ids, tuple)
    assert query.explain is True
    assert query.mode == "lexical"
    assert query.correct_spelling is False


@pytest.mark.parametrize(
    "mode, name",
    [
        (pb.RETRIEVAL_MODE_UNSPECIFIED, "hybrid"),
        (pb.RETRIEVAL_MODE_HYBRID, "hybrid"),
        (pb.RETRIEVAL_MODE_LEXICAL, "lexical"),
        (pb.RETRIEVAL_MODE_DENSE, "dense"),
    ],
)
def test_modes(mode, name):
    assert to_query(pb.SearchRequest(query="q", retrieval=mode)).mode == name


def test_unknown_mode_number_is_not_a_valid_mode():
    mode = to_query(pb.SearchRequest(query="q", retrieval=7)).mode
    assert mode == "unknown (7)"
    assert mode not in ("hybrid", "lexical", "dense")


def test_request_survives_wire_round_trip():
    request = pb.SearchRequest(query="手机", top_k=3, filters=[pb.Filter(field="price", max=5.0)])
    again = pb.SearchRequest.FromString(request.SerializeToString())
    assert to_query(again) == to_query(request)
    assert to_query(again).filters[0].min is None


def test_response_conversion():
    result = SearchResult(
        items=[
            ScoredItem("p1", "Drill", 0.5, (("bm25", 3.2, 1, 1 / 61), ("dense", 0.8, 2, 1 / 62))),
            ScoredItem("p2", "Saw", 0.25),
        ],
        model_versions={"bi_encoder": "1", "index": "abcdef123456"},
        degraded_reason="",
        took_ms=12.5,
        corrected_query="cordless drill",
    )
    response = to_response(result)
    assert isinstance(response, pb.SearchResponse)
    assert [item.product_id for item in response.items] == ["p1", "p2"]
    assert [item.title for item in response.items] == ["Drill", "Saw"]
    assert [item.score for item in response.items] == [0.5, 0.25]
    first = response.items[0].components
    assert [(c.name, c.raw, c.rank, c.contribution) for c in first] == [
        ("bm25", 3.2, 1, pytest.approx(1 / 61)),
        ("dense", 0.8, 2, pytest.approx(1 / 62)),
    ]
    assert len(response.items[1].components) == 0
    assert dict(response.model_versions) == {"bi_encoder": "1", "index": "abcdef123456"}
    assert response.degraded is False
    assert response.degraded_reason == ""
    assert response.took_ms == 12.5
    assert response.corrected_query == "cordless drill"


def test_degraded_response():
    result = SearchResult(items=[], model_versions={}, degraded_reason="dense retrieval skipped", took_ms=1.0)
    response = to_response(result)
    assert response.degraded is True
    assert response.degraded_reason == "dense retrieval skipped"
    assert len(response.items) == 0
    # serializes cleanly
    assert pb.SearchResponse.FromString(response.SerializeToString()) == response


def test_personalization_fields_reach_the_query():
    plain = to_query(pb.SearchRequest(query="q", user_id="u"))
    assert plain.personalize is True and plain.blend_weights is None
    request = pb.SearchRequest(query="q", skip_personalization=True, blend_weights=pb.BlendWeights(preference=0.0, popularity=2.0))
    query = to_query(request)
    assert query.personalize is False
    assert query.blend_weights == {"preference": 0.0, "popularity": 2.0}  # unset groups keep the model's weight


def test_feedback_event_conversion():
    message = pb.FeedbackEvent(event_id="e1", user_id="u1", product_id="p1", type=pb.EVENT_TYPE_CART, query="drill")
    message.time.FromNanoseconds(1_700_000_000_500_000_000)
    event = to_event(message)
    assert (event.event_id, event.user_id, event.product_id, event.type, event.query) == ("e1", "u1", "p1", "cart", "drill")
    assert event.time == pytest.approx(1_700_000_000.5)
    assert event.quantity == 1
    message.quantity = 3
    assert to_event(message).quantity == 3


def test_feedback_event_without_type_or_time_converts_to_what_validation_rejects():
    event = to_event(pb.FeedbackEvent(event_id="e", user_id="u", product_id="p"))
    assert event.type == "unspecified" and event.time == 0.0
    assert to_event(pb.FeedbackEvent(type=42)).type == "unknown (42)"


def test_personalization_fields_reach_the_response():
    response = to_response(SearchResult(items=[], model_versions={}, personalized=True, personalization="personalized from 3 events"))
    assert response.personalized and response.personalization == "personalized from 3 events"


@pytest.mark.parametrize("error, code", [
    (CatalogUnavailable("Milvus at milvus://db:19530 does not answer"), grpc.StatusCode.UNAVAILABLE),
    (TritonError("Triton does not answer"), grpc.StatusCode.UNAVAILABLE),
    (InvalidRequest("query is empty"), grpc.StatusCode.INVALID_ARGUMENT),
    (CatalogStoreError("a collection was not made by shoprank"), grpc.StatusCode.FAILED_PRECONDITION),
    (DeadlineExceeded("Milvus (nearest) did not answer within 12 ms"), grpc.StatusCode.DEADLINE_EXCEEDED),
])
def test_a_search_error_becomes_its_status_code(error, code):
    class Failing:
        async def search(self, query, deadline_s=None):
            assert deadline_s == 1.5  # the caller's remaining time
            raise error

    class Aborted(Exception):
        pass

    class Context:
        def time_remaining(self):
            return 1.5

        async def abort(self, status, details):
            self.status, self.details = status, details
            raise Aborted

    context = Context()
    with pytest.raises(Aborted):
        asyncio.run(RankingServicer(Failing()).Search(pb.SearchRequest(query="drill"), context))  # type: ignore[arg-type]
    assert context.status == code and context.details == str(error)
