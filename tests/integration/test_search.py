"""Search calls through a real gRPC server backed by a real tritonserver, over the demo catalog: every test that
takes `stub` runs against both catalog stores, the index in the service's process and the shop in Milvus."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.catalog import load_catalog
from core.features import FEATURES
from core.model_repository import versions
from core.specs import RERANKER

from .conftest import DEMO_CATALOG

pytestmark = pytest.mark.integration

PRODUCTS = {product.product_id: product for product in load_catalog(DEMO_CATALOG)}


@pytest.fixture(scope="module", params=["memory", "milvus"])
def store_service(request):
    """The service over each catalog store in turn."""
    return request.getfixturevalue("service" if request.param == "memory" else "milvus_service")


@pytest.fixture(scope="module")
def stub(store_service):
    with grpc.insecure_channel(store_service.address) as channel:
        yield ranking_pb2_grpc.RankingStub(channel)


def search(stub, query: str, **fields) -> ranking_pb2.SearchResponse:
    return stub.Search(ranking_pb2.SearchRequest(query=query, **fields), timeout=30)


@pytest.mark.parametrize(
    "query, expected_id",
    [
        ("Voltra X12 Smartphone 128GB Midnight Blue", "D0001"),
        ("kestrel 20v drill driver kit with 2 batteries", "D0092"),
    ],
)
def test_obviously_right_product_comes_first(stub, query, expected_id):
    response = search(stub, query)
    assert response.items[0].product_id == expected_id
    assert not response.degraded


def test_typo_and_chinese_queries_find_the_right_category(stub):
    drills = search(stub, "cordles drill", top_k=5)
    assert sum(PRODUCTS[item.product_id].category == "Drills" for item in drills.items) >= 3
    phones = search(stub, "手机推荐", top_k=5)
    assert sum(PRODUCTS[item.product_id].category == "Phones" for item in phones.items) >= 3


@pytest.mark.parametrize("query, wanted", [
    ("无线耳机", {"D0027", "D0028", "D0029", "D0030"}),  # wireless headphones: only English titles have them
    ("phone for elderly parents", {"D0011"}),  # 小禾 A5 老人手机: only a Chinese title says so
])
def test_a_query_finds_products_written_in_the_other_language(stub, query, wanted):
    top3 = [item.product_id for item in search(stub, query, top_k=3).items]
    assert wanted & set(top3), top3


def test_a_chinese_query_is_not_scored_by_the_english_only_models(stub):
    response = search(stub, "无线耳机", top_k=5, explain=True)
    names = {component.name for component in response.items[0].components}
    assert "multilingual" in names and "intent" in names
    assert not names & {"reranker", "dense"}
    assert not response.degraded


@pytest.mark.parametrize("query", ["手机推荐", "phone"])
def test_a_query_for_a_device_ranks_devices_above_their_cases(stub, query):
    categories = [PRODUCTS[item.product_id].category for item in search(stub, query, top_k=20).items]
    assert categories[0] == "Phones", categories
    if "Phone Accessories" in categories:
        assert categories.index("Phones") < categories.index("Phone Accessories")
    assert categories[:5].count("Phones") >= 4, categories


def test_misspelled_query_is_corrected_and_can_be_searched_as_typed(stub):
    corrected = search(stub, "cordles drill", top_k=5, explain=True)
    assert corrected.corrected_query == "cordless drill"
    spelled_right = search(stub, "cordless drill", top_k=5, explain=True)
    assert spelled_right.corrected_query == ""
    assert [(item.product_id, item.score) for item in corrected.items] == [
        (item.product_id, item.score) for item in spelled_right.items
    ]
    # As typed, "cordles" matches no product's terms: the same product gets less from BM25.
    top = corrected.items[0]
    exact = search(stub, "cordles drill", candidate_ids=[top.product_id], explain=True, skip_spelling_correction=True)
    assert exact.corrected_query == ""
    bm25 = {response: next(c.raw for c in item.components if c.name == "bm25")
            for response, item in (("corrected", top), ("exact", exact.items[0]))}
    assert bm25["exact"] < bm25["corrected"]


def test_response_reports_models_explanations_and_time(stub, model_repository):
    response = search(stub, "wireless earbuds", top_k=7, explain=True)
    assert len(response.items) == 7
    assert response.model_versions["bi_encoder"] == "1"  # the version that embedded the index
    assert response.model_versions["multilingual_encoder"] == "1"
    # The demo shop's weights rerank; a fresh service serves the repository's newest reranker version.
    assert response.model_versions["reranker"] == str(versions(model_repository / RERANKER.name)[-1])
    assert response.model_versions["index"]
    assert response.took_ms > 0
    scores = [item.score for item in response.items]
    assert scores == sorted(scores, reverse=True)
    for item in response.items:
        assert {c.name for c in item.components} == {"bm25", "dense", "multilingual", "reranker", *FEATURES, "intent"}
        assert item.score == pytest.approx(sum(c.contribution for c in item.components))
    assert not search(stub, "wireless earbuds").items[0].components  # no explain, no components


def test_default_top_k_is_ten(stub):
    assert len(search(stub, "shoes").items) == 10


def test_filters_hold_for_every_item(stub):
    response = search(
        stub,
        "phone",
        top_k=50,
        filters=[
            ranking_pb2.Filter(field="category", any_of=["phones"]),
            ranking_pb2.Filter(field="price", min=100, max=400),
        ],
    )
    assert response.items
    for item in response.items:
        product = PRODUCTS[item.product_id]
        assert product.category == "Phones" and 100 <= product.price <= 400


def test_candidate_ids_rank_only_those(stub):
    candidates = ["D0200", "D0001", "D0092", "D0150"]
    response = search(stub, "smartphone", candidate_ids=candidates, top_k=10)
    assert sorted(item.product_id for item in response.items) == sorted(candidates)
    assert response.items[0].product_id == "D0001"


@pytest.mark.parametrize("mode, components, combined", [
    (ranking_pb2.RETRIEVAL_MODE_LEXICAL, {"bm25"}, set()),  # no query embedding: no intent
    (ranking_pb2.RETRIEVAL_MODE_DENSE, {"dense", "multilingual"}, {"intent"}),
    (ranking_pb2.RETRIEVAL_MODE_HYBRID, {"bm25", "dense", "multilingual"}, {"intent"}),
])
def test_retrieval_modes_use_their_retrievers(stub, mode, components, combined):
    response = search(stub, "garden hose", retrieval=mode, explain=True, skip_rerank=True)
    assert response.items
    assert {c.name for c in response.items[0].components} == components
    reranked = search(stub, "garden hose", retrieval=mode, explain=True, combination_weights={"reranker": 1.0})
    assert {c.name for c in reranked.items[0].components} == components | {"reranker", *FEATURES} | combined


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"query": ""}, "query is empty"),
        ({"query": "   "}, "query is empty"),
        ({"query": "drill " * 20_000}, "characters"),
        ({"query": "drill", "top_k": 0}, "top_k"),
        ({"query": "drill", "top_k": 1_000_000}, "top_k"),
        ({"query": "drill", "filters": [ranking_pb2.Filter(field="colour", any_of=["red"])]}, "unknown filter field 'colour'"),
        ({"query": "drill", "filters": [ranking_pb2.Filter(field="price", min=50, max=10)]}, "min"),
        ({"query": "drill", "candidate_ids": ["D0001", "NOPE-1"]}, "NOPE-1"),
        ({"query": "drill", "retrieval": 42}, "retrieval mode"),
    ],
)
def test_bad_requests_get_invalid_argument_and_the_server_keeps_serving(stub, fields, message):
    with pytest.raises(grpc.RpcError) as caught:
        stub.Search(ranking_pb2.SearchRequest(**fields), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in caught.value.details()
    assert search(stub, "drill").items


def test_concurrent_calls_are_served_concurrently(stub, store_service, settings):
    """Many calls at once all succeed, and the service works on several of them at the same time (Triton's batching
    of simultaneous encodings is tested on its own in test_triton_models)."""
    gate = store_service.service.gate
    gate.peak["search"] = 0
    queries = [f"item {n} for the kitchen" for n in range(48)]
    # As many at once as admission control admits (max_inflight_searches): more are refused by design.
    with ThreadPoolExecutor(max_workers=settings.max_inflight_searches) as pool:
        # Without the reranker: on 2 cores, 48 simultaneous 100-pair reranks would miss their deadline (by design).
        responses = list(pool.map(lambda q: search(stub, q, skip_rerank=True), queries))
    assert all(response.items and not response.degraded for response in responses)
    assert gate.peak["search"] > 1  # a service that answered one call at a time would never have two in flight


def test_health_and_reflection(service):
    with grpc.insecure_channel(service.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "shoprank.v1.Ranking"):
            status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = {service.name for answer in answers for service in answer.list_services_response.service}
        assert {"shoprank.v1.Ranking", "grpc.health.v1.Health"} <= names
