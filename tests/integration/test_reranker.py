"""The released cross-encoder served by a real tritonserver, and reranking in the search path."""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton_grpc

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.features import FEATURES
from core.model_repository import versions
from core.specs import RERANKER
from core.tokenization import PairEncoder

from .conftest import ServiceThread

pytestmark = pytest.mark.integration

PAIRS = [
    ("cordless drill", "Kestrel 20V Cordless Drill/Driver Kit with 2 Batteries"),
    ("cordless drill", "Sonara Go Portable Bluetooth Speaker Waterproof Teal"),
    ("手机推荐", "青岚 Note 11 智能手机 8GB+256GB 星空蓝"),
    ("1 gallon paint " * 20, "Brightcoat Semi-Gloss Paint Swiss Coffee 5 Gallon"),
]


def test_served_reranker_matches_its_onnx_file(triton, model_repository, settings):
    """Triton's answer (dynamic batching, padding in the Python backend) equals ONNX Runtime on the same file."""
    folder = model_repository / RERANKER.name
    config = triton_grpc.InferenceServerClient(triton.url).get_model_config(RERANKER.name).config
    newest = str(versions(folder)[-1])  # what Triton serves by default
    onnx_file = folder / newest / config.parameters["onnx_file"].string_value
    encoder = PairEncoder(settings.tokenizer_file, settings.max_pair_tokens)
    feeds = encoder([q for q, _ in PAIRS], [t for _, t in PAIRS])
    disabled = config.parameters["disabled_optimizers"].string_value.split(",")  # as the Python backend runs it
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"], disabled_optimizers=disabled)
    expected = session.run(["score"], feeds)[0]

    client = triton_grpc.InferenceServerClient(triton.url)
    inputs = []
    for tensor in RERANKER.inputs:
        item = triton_grpc.InferInput(tensor.name, list(feeds[tensor.name].shape), "INT64")
        item.set_data_from_numpy(feeds[tensor.name])
        inputs.append(item)
    served = client.infer(RERANKER.name, inputs).as_numpy("score")
    np.testing.assert_allclose(served, expected, atol=1e-4, rtol=0)


def test_search_reranks_and_explains(stub, model_repository):
    response = stub.Search(ranking_pb2.SearchRequest(query="wireless earbuds", top_k=5, explain=True,
                                                     combination_weights={"reranker": 1.0}), timeout=30)
    assert not response.degraded
    # A fresh service serves the repository's newest version.
    assert response.model_versions["reranker"] == str(versions(model_repository / RERANKER.name)[-1])
    for item in response.items:
        assert {c.name for c in item.components} == {"bm25", "dense", "multilingual", "reranker", *FEATURES, "intent"}
        assert item.score == pytest.approx(sum(c.contribution for c in item.components))
    # "wireless earbuds" has no numbers: the number feature is neutral for every product.
    assert all({c.name: c.raw for c in item.components}["numbers"] == 0.0 for item in response.items)
    fused = stub.Search(ranking_pb2.SearchRequest(query="wireless earbuds", top_k=5, explain=True, skip_rerank=True))
    assert {c.name for c in fused.items[0].components} == {"bm25", "dense", "multilingual"}
    # The cross-encoder alone orders them when asked to.
    alone = stub.Search(ranking_pb2.SearchRequest(query="wireless earbuds", top_k=5, explain=True,
                                                  combination_weights={"reranker": 1.0}), timeout=30)
    reranker = [next(c.raw for c in item.components if c.name == "reranker") for item in alone.items]
    assert reranker == sorted(reranker, reverse=True)


def test_missed_reranker_deadline_ranks_without_the_cross_encoder(triton, settings, demo_index):
    running = ServiceThread(dataclasses.replace(settings, index_dir=demo_index, triton_url=triton.url,
                                                rerank_timeout_s=1e-6))
    weights = {"reranker": 1.0, "bm25": 0.5, "dense": 2.0, "overlap": 4.0}
    try:
        running.start()
        with grpc.insecure_channel(running.address) as channel:
            stub = ranking_pb2_grpc.RankingStub(channel)
            degraded = stub.Search(ranking_pb2.SearchRequest(query="garden hose", top_k=5, explain=True,
                                                             combination_weights=weights), timeout=30)
            without = {name: weight for name, weight in weights.items() if name != "reranker"}
            cheap = stub.Search(ranking_pb2.SearchRequest(query="garden hose", top_k=5, explain=True,
                                                          combination_weights=without), timeout=30)
    finally:
        running.stop()
    assert degraded.degraded and degraded.degraded_reason.startswith("reranker_deadline: ")
    assert not cheap.degraded  # no cross-encoder asked for: no deadline to miss
    assert [item.product_id for item in degraded.items] == [item.product_id for item in cheap.items]
    assert "reranker" not in {c.name for c in degraded.items[0].components}


def test_reranks_past_the_concurrency_limit_are_answered_at_once_without_the_cross_encoder(triton, settings, demo_index):
    queries = ["garden hose", "cordless drill", "wireless earbuds", "patio chair", "led bulb", "coffee maker"]
    # Admission admits them all: the reranker's own limit is what is tested.
    running = ServiceThread(dataclasses.replace(settings, index_dir=demo_index, triton_url=triton.url,
                                                max_concurrent_reranks=1, max_inflight_searches=len(queries)))
    try:
        running.start()
        with grpc.insecure_channel(running.address) as channel:
            stub = ranking_pb2_grpc.RankingStub(channel)
            with ThreadPoolExecutor(max_workers=len(queries)) as pool:
                responses = list(pool.map(
                    lambda q: stub.Search(ranking_pb2.SearchRequest(query=q, top_k=5), timeout=30), queries))
    finally:
        running.stop()
    assert all(response.items for response in responses)  # every query answered
    busy = [response for response in responses if response.degraded]
    assert busy and all(response.degraded_reason.startswith("reranker_busy: ") for response in busy)
    assert len(busy) < len(queries)  # the query holding the slot was reranked


def test_a_cascade_sends_triton_only_the_head_of_the_cheap_order(triton, settings, demo_index):
    """Counted by Triton itself: a search's reranker request holds `cross_encoder_depth` pairs, or every candidate
    of the rerank depth with 0; the answer still explains each score by all its components."""
    client = triton_grpc.InferenceServerClient(triton.url)

    def pairs_scored() -> int:  # Triton counts each row of a batched request
        return sum(model.inference_count for model in client.get_inference_statistics(RERANKER.name).model_stats)

    counted = {}
    for depth in (12, 0):
        running = ServiceThread(dataclasses.replace(settings, index_dir=demo_index, triton_url=triton.url,
                                                    cross_encoder_depth=depth))
        try:
            running.start()
            with grpc.insecure_channel(running.address) as channel:
                stub = ranking_pb2_grpc.RankingStub(channel)
                before = pairs_scored()
                response = stub.Search(ranking_pb2.SearchRequest(query="garden hose", top_k=40, explain=True), timeout=30)
                # Triton updates its statistics just after it answers: poll briefly for this request's.
                deadline = time.monotonic() + 5
                while pairs_scored() == before and time.monotonic() < deadline:
                    time.sleep(0.05)
                counted[depth] = pairs_scored() - before
        finally:
            running.stop()
        assert not response.degraded and len(response.items) == 40
        for item in response.items:
            assert "reranker" in {c.name for c in item.components}
            assert item.score == pytest.approx(sum(c.contribution for c in item.components))
    assert counted[12] == 12
    assert counted[0] >= 40  # every candidate of the rerank depth (100, or fewer where fewer were retrieved)
