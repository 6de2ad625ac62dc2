"""Pipeline.search's wiring on a tiny in-memory index, with stand-ins for Triton (one class under test).

The real thing, Triton and gRPC included, is in tests/integration; these pin down what a stand-in can see:
which query each model gets, and what a busy reranker skips.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import orchestrator.pipeline as pipeline_module
from core.catalog import Product
from core.settings import Settings
from core.spelling import SpellingCorrector
from orchestrator.pipeline import Pipeline, Reranker, SearchQuery

PRODUCTS = [Product("p1", "Cordless Drill"), Product("p2", "Claw Hammer"), Product("p3", "Toilet Tank Lid")]


class Encoder:
    """Records the texts it encodes; every query embeds like the first product. No multilingual encoder."""

    multilingual_tokenizer = None

    def __init__(self, embedding: np.ndarray) -> None:
        self.embedding = embedding
        self.texts: list[str] = []
        self.versions: list[str] = []

    async def encode(self, text: str, version: str) -> np.ndarray:
        self.texts.append(text)
        self.versions.append(version)
        return self.embedding


class Triton:
    """Scores each pair by its position, recording the queries it was sent."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    async def infer(self, spec, feeds, version=""):
        self.queries.append(feeds["query"])
        return {"score": np.arange(len(feeds["texts"]), dtype=np.float32).reshape(-1, 1)}


def tokenizer(query, texts):
    return {"query": query, "texts": texts}


@pytest.fixture
def parts(monkeypatch, make_index):
    index = make_index(PRODUCTS)
    feature_queries: list[str] = []

    def match_features(query, texts):
        feature_queries.append(query)
        return {}

    monkeypatch.setattr(pipeline_module, "match_features", match_features)
    encoder, triton = Encoder(index.dense.embeddings[0]), Triton()
    reranker = Reranker(triton, tokenizer, timeout_s=5.0, max_in_flight=1)
    speller = SpellingCorrector.for_catalog(PRODUCTS)
    pipeline = Pipeline(Settings(), index, encoder, {}, reranker=reranker, speller=speller)  # type: ignore[arg-type]
    return pipeline, encoder, triton, reranker, feature_queries


def test_every_model_gets_the_corrected_query(parts):
    pipeline, encoder, triton, _, feature_queries = parts
    result = asyncio.run(pipeline.search(SearchQuery("tiolet lid", explain=True)))
    assert result.corrected_query == "toilet lid"
    assert set(result.timings_ms) == {"correct", "retrieve", "rerank", "personalize", "total"}
    assert encoder.texts == triton.queries == feature_queries == ["toilet lid"]
    assert encoder.versions == ["1"]  # the index's own encoder version (its manifest), never another
    bm25 = {item.product_id: next(raw for name, raw, *_ in item.components if name == "bm25") for item in result.items}
    assert bm25["p3"] > 0 and bm25["p1"] == bm25["p2"] == 0  # BM25 matched the corrected words
    assert not result.degraded


def test_query_as_typed_when_asked_or_when_nothing_changes(parts):
    pipeline, encoder, triton, _, _ = parts
    exact = asyncio.run(pipeline.search(SearchQuery("tiolet lid", correct_spelling=False)))
    plain = asyncio.run(pipeline.search(SearchQuery("cordless drill")))
    assert exact.corrected_query == plain.corrected_query == ""
    assert encoder.texts == triton.queries == ["tiolet lid", "cordless drill"]


def test_busy_reranker_gives_fused_order_without_computing_features(parts):
    pipeline, _, triton, reranker, feature_queries = parts
    reranker.in_flight = reranker.max_in_flight  # every slot taken by other queries
    busy = asyncio.run(pipeline.search(SearchQuery("claw hammer", explain=True)))
    assert busy.degraded_reason == "reranker_busy: reranking skipped, fused order: the reranker is at its limit of concurrent queries"
    assert triton.queries == feature_queries == []
    assert {name for name, *_ in busy.items[0].components} == {"bm25", "dense"}
    reranker.in_flight = 0
    admitted = asyncio.run(pipeline.search(SearchQuery("claw hammer", explain=True)))
    assert not admitted.degraded
    assert feature_queries == ["claw hammer"]
    assert "reranker" in {name for name, *_ in admitted.items[0].components}
