"""Pipeline.search's wiring on a tiny in-memory index, with stand-ins for Triton (one class under test).

The real thing, Triton and gRPC included, is in tests/integration; these pin down what a stand-in can see:
which query each model gets, and what a busy reranker skips.
"""

from __future__ import annotations

import asyncio
import gc
import threading

import numpy as np
import pytest

import orchestrator.search.rerank as rerank_stage
from core.catalog import Product
from core.errors import CatalogUnavailable, TritonUnavailable
from core.settings import Settings
from core.spelling import SpellingCorrector
from orchestrator.catalog.memory import MemoryCatalog
from orchestrator.search import CrossEncoder, Pipeline, SearchQuery

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

    monkeypatch.setattr(rerank_stage, "match_features", match_features)
    encoder, triton = Encoder(index.dense.embeddings[0]), Triton()
    reranker = CrossEncoder(triton, tokenizer, timeout_s=5.0, max_in_flight=1)
    speller = SpellingCorrector.for_catalog(PRODUCTS)
    pipeline = Pipeline(Settings(), MemoryCatalog(index), encoder, {}, cross_encoder=reranker,  # type: ignore[arg-type]
                        speller=speller)
    return pipeline, encoder, triton, reranker, feature_queries


def test_every_model_gets_the_corrected_query(parts):
    pipeline, encoder, triton, _, feature_queries = parts
    result = asyncio.run(pipeline.search(SearchQuery("tiolet lid", explain=True)))
    assert result.corrected_query == "toilet lid"
    assert set(result.timings_ms) == {"profile", "understand", "retrieve", "rerank", "personalize", "order", "total"}
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


def test_busy_reranker_ranks_without_the_cross_encoder_at_once(parts):
    pipeline, _, triton, reranker, feature_queries = parts
    reranker.in_flight = reranker.max_in_flight  # every slot taken by other queries
    # Weights of the cross-encoder alone (this pipeline's default) have nothing to rank by without it: fused order.
    alone = asyncio.run(pipeline.search(SearchQuery("claw hammer", explain=True)))
    assert alone.degraded_reason == ("reranker_busy: cross-encoder skipped, ranked without it: the reranker is at "
                                     "its limit of concurrent queries")
    assert triton.queries == feature_queries == []
    assert {name for name, *_ in alone.items[0].components} == {"bm25", "dense"}
    # Weights with cheap components rank by them: the match features are computed once, no Triton call.
    weights = {"reranker": 1.0, "bm25": 0.5, "dense": 2.0}
    busy = asyncio.run(pipeline.search(SearchQuery("claw hammer", explain=True, combination_weights=weights)))
    assert busy.degraded_reason.startswith("reranker_busy: ")
    assert triton.queries == [] and feature_queries == ["claw hammer"]
    for item in busy.items:
        contributions = {name: contribution for name, _, _, contribution in item.components}
        assert "reranker" not in contributions and item.score == pytest.approx(sum(contributions.values()))
    reranker.in_flight = 0
    admitted = asyncio.run(pipeline.search(SearchQuery("claw hammer", explain=True)))
    assert not admitted.degraded
    assert feature_queries == ["claw hammer"] * 2
    assert "reranker" in {name for name, *_ in admitted.items[0].components}


TOOLS = [Product(f"t{n}", f"Drill {name}") for n, name in enumerate(["Bit", "Press", "Driver", "Chuck", "Stand", "Case"])]
# The stand-in match feature: how well each title matches, known to the test.
OVERLAP = {"Drill Bit": 0.1, "Drill Press": 0.9, "Drill Driver": 0.3, "Drill Chuck": 0.8, "Drill Stand": 0.2,
           "Drill Case": 0.0}


class RecordingTriton:
    """Scores each pair by its position in the request, recording the texts it was sent."""

    def __init__(self) -> None:
        self.texts: list[list[str]] = []

    async def infer(self, spec, feeds, version=""):
        self.texts.append(list(feeds["texts"]))
        return {"score": np.arange(len(feeds["texts"]), dtype=np.float32).reshape(-1, 1)}


@pytest.fixture
def cascade(monkeypatch, make_index):
    computed: list[str] = []

    def match_features(query, texts):
        computed.append(query)
        return {"overlap": np.array([OVERLAP[text] for text in texts])}

    monkeypatch.setattr(rerank_stage, "match_features", match_features)
    index = make_index(TOOLS)
    triton = RecordingTriton()
    reranker = CrossEncoder(triton, tokenizer, timeout_s=5.0, max_in_flight=1)

    def pipeline(**settings) -> Pipeline:
        return Pipeline(Settings(**settings), MemoryCatalog(index), Encoder(index.dense.embeddings[0]), {},  # type: ignore[arg-type]
                        cross_encoder=reranker)

    return pipeline, triton, reranker, computed


def components_of(item) -> dict[str, tuple[float, float]]:
    return {name: (raw, contribution) for name, raw, _, contribution in item.components}


def test_a_cascade_sends_the_cross_encoder_only_the_head_of_the_cheap_order(cascade):
    pipeline, triton, _, _ = cascade
    query = SearchQuery("drill", top_k=6, explain=True, combination_weights={"reranker": 1.0, "overlap": 1.0})

    result = asyncio.run(pipeline(cross_encoder_depth=2).search(query))

    assert sorted(triton.texts[0]) == ["Drill Chuck", "Drill Press"]  # the two best by overlap, the weights without it
    assert len(result.items) == 6 and not result.degraded
    reranker = {item.title: components_of(item)["reranker"][0] for item in result.items}
    assert sorted([reranker["Drill Chuck"], reranker["Drill Press"]]) == [0.0, 1.0]  # its scores, by request position
    # The others get its scores at their place in the cheap order: within its range, in that order.
    unscored = [reranker[title] for title in ("Drill Case", "Drill Bit", "Drill Stand", "Drill Driver")]
    assert unscored == sorted(unscored) and unscored[0] == 0.0 and unscored[-1] < 1.0
    for item in result.items:  # every score is still the sum of its contributions
        assert item.score == pytest.approx(sum(contribution for _, contribution in components_of(item).values()))


def test_without_a_cascade_the_cross_encoder_scores_every_candidate(cascade):
    pipeline, triton, _, _ = cascade
    query = SearchQuery("drill", top_k=6, combination_weights={"reranker": 1.0, "overlap": 1.0})
    asyncio.run(pipeline(cross_encoder_depth=0).search(query))
    asyncio.run(pipeline(cross_encoder_depth=6).search(query))  # as deep as the candidates: no cascade either
    alone = SearchQuery("drill", top_k=6, combination_weights={"reranker": 1.0})  # no cheap order to cut
    asyncio.run(pipeline(cross_encoder_depth=2).search(alone))
    assert [sorted(texts) for texts in triton.texts] == [sorted(OVERLAP)] * 3


def test_a_busy_reranker_refuses_a_cascade_and_the_answer_takes_the_cheap_order(cascade):
    pipeline, triton, reranker, computed = cascade
    reranker.in_flight = reranker.max_in_flight
    query = SearchQuery("drill", top_k=6, explain=True, combination_weights={"reranker": 1.0, "overlap": 1.0})
    result = asyncio.run(pipeline(cross_encoder_depth=2).search(query))
    assert result.degraded_reason.startswith("reranker_busy: ")
    assert triton.texts == [] and computed == ["drill"]
    assert [item.title for item in result.items] == sorted(OVERLAP, key=OVERLAP.get, reverse=True)
    assert all("reranker" not in {name for name, *_ in item.components} for item in result.items)


def test_the_answer_says_whether_the_shops_own_weights_ranked_it(cascade, make_index):
    pipeline, _, _, _ = cascade
    weights = {"latin": {"reranker": 1.0, "overlap": 1.0}}
    own = Pipeline(Settings(), MemoryCatalog(make_index(TOOLS)), Encoder(np.zeros(384)), {},  # type: ignore[arg-type]
                   combination=weights, shop_weights=True)
    result = asyncio.run(own.search(SearchQuery("drill")))
    assert result.shop_weights and result.shop == ""  # the tiny index names no shop
    asked = asyncio.run(own.search(SearchQuery("drill", combination_weights={"overlap": 1.0})))
    assert not asked.shop_weights  # the request's weights ranked it
    assert not asyncio.run(own.search(SearchQuery("drill", skip_rerank=True))).shop_weights
    assert not asyncio.run(pipeline().search(SearchQuery("drill"))).shop_weights  # the default weights


def test_out_of_stock_products_are_left_out_unless_asked_for_then_ranked_after_those_in_stock(make_index):
    sold_out = Product("t9", "Drill Press Deluxe", attributes={"stock": "0"})
    index = make_index([*TOOLS, sold_out])
    pipeline = Pipeline(Settings(), MemoryCatalog(index), Encoder(index.dense.embeddings[-1]), {})  # type: ignore[arg-type]
    default = asyncio.run(pipeline.search(SearchQuery("drill press deluxe", top_k=10, skip_rerank=True)))
    assert "t9" not in [item.product_id for item in default.items] and len(default.items) == len(TOOLS)
    named = asyncio.run(pipeline.search(SearchQuery("drill", candidate_ids=("t9", "t1"), skip_rerank=True)))
    assert [item.product_id for item in named.items] == ["t1"]
    asked = asyncio.run(pipeline.search(SearchQuery("drill press deluxe", top_k=10, skip_rerank=True,
                                                    include_out_of_stock=True)))
    ids = [item.product_id for item in asked.items]
    assert ids[-1] == "t9" and len(ids) == len(TOOLS) + 1  # the best match by its words and vector, yet last


def test_the_in_process_catalog_scores_exactly_the_ids_asked_in_their_order(make_index):
    catalog = MemoryCatalog(make_index(TOOLS))
    ids = ["t2", "nowhere", "t0"]
    bm25 = asyncio.run(catalog.lexical_scores("drill driver", ids))
    cosines = asyncio.run(catalog.similarities("dense", catalog.index.dense.embeddings[0], ids))
    assert len(bm25) == len(cosines) == 3 and bm25[1] == cosines[1] == 0.0  # an unknown id scores nothing
    assert bm25[0] > bm25[2] > 0 and cosines[2] == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------------------- work a search gives up on

def unreported(scenario) -> list[dict]:
    """Run `scenario()`; what the event loop reported as nobody's (e.g. "Task exception was never retrieved")."""
    reported: list[dict] = []

    async def run():
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: reported.append(context))
        await scenario()

    asyncio.run(run())
    gc.collect()  # a task's unretrieved error is reported when the task is collected
    return [{key: str(value) for key, value in context.items()} for context in reported]


class StuckTriton:
    """A Triton that never answers: records each call's start, and its cancellation."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def infer(self, spec, feeds, version=""):
        self.calls.append("started")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            self.calls.append("cancelled")
            raise
        return {}


class FailingEncoder(Encoder):
    """Triton is down: each encoding fails, the multilingual one as well."""

    multilingual_tokenizer = object()

    async def encode(self, text: str, version: str) -> np.ndarray:
        raise TritonUnavailable("Triton is down")

    async def encode_multilingual(self, text: str, version: str) -> np.ndarray:
        raise TritonUnavailable("Triton is down")


class DownCatalog(MemoryCatalog):
    """Milvus is down: lexical retrieval fails, a moment after the query's encodings were requested."""

    async def lexical(self, text, k, filters=(), in_stock=False):
        await asyncio.sleep(0.01)
        raise CatalogUnavailable("Milvus is down")


def test_both_encodings_failing_answer_lexical_and_leave_no_error_unretrieved(make_index):
    index = make_index(PRODUCTS)
    pipeline = Pipeline(Settings(), MemoryCatalog(index), FailingEncoder(index.dense.embeddings[0]), {})  # type: ignore[arg-type]
    results = []

    async def scenario():
        results.append(await pipeline.search(SearchQuery("claw hammer")))
        await asyncio.sleep(0.01)

    assert unreported(scenario) == []
    assert results[0].degraded_reason.startswith("dense_unavailable: ") and results[0].items


def test_a_failed_retrieval_ends_the_encodings_it_started_and_reads_their_errors(make_index):
    index = make_index(PRODUCTS)
    pipeline = Pipeline(Settings(), DownCatalog(index), FailingEncoder(index.dense.embeddings[0]), {})  # type: ignore[arg-type]
    raised = []

    async def scenario():
        try:
            await pipeline.search(SearchQuery("claw hammer"))
        except CatalogUnavailable as error:
            raised.append(str(error))

    assert unreported(scenario) == []
    assert raised == ["Milvus is down"]


def test_a_search_cancelled_while_its_features_are_computed_cancels_its_cross_encoder_call(monkeypatch, make_index):
    index = make_index(PRODUCTS)
    features_started, release = threading.Event(), threading.Event()

    def match_features(query, texts):
        features_started.set()
        release.wait(5)
        return {}

    triton = StuckTriton()
    calls = triton.calls
    monkeypatch.setattr(rerank_stage, "match_features", match_features)
    reranker = CrossEncoder(triton, tokenizer, timeout_s=30.0, max_in_flight=1)
    pipeline = Pipeline(Settings(), MemoryCatalog(index), Encoder(index.dense.embeddings[0]), {},  # type: ignore[arg-type]
                        cross_encoder=reranker)
    weights = {"reranker": 1.0, "overlap": 1.0}
    seen = {}

    async def scenario():
        search = asyncio.create_task(pipeline.search(SearchQuery("claw hammer", combination_weights=weights)))
        while not features_started.is_set():
            await asyncio.sleep(0.005)
        search.cancel()  # the caller went away while the match features ran and the cross-encoder scored
        try:
            await search
        except asyncio.CancelledError:
            pass
        seen["calls"], seen["in_flight"] = list(calls), reranker.in_flight
        release.set()

    assert unreported(scenario) == []
    assert seen == {"calls": ["started", "cancelled"], "in_flight": 0}  # nothing of the search outlived it
