"""orchestrator.search.Pipeline.validate on a tiny in-memory index (no Triton, no encoder), and the candidate ids
a lexical search (no encoder either) finds the catalog does not hold."""

from __future__ import annotations

import asyncio

import pytest

from core.catalog import Product
from core.errors import InvalidRequest
from core.settings import Settings
from orchestrator.catalog.memory import MemoryCatalog
from orchestrator.filters import Filter
from orchestrator.index import CatalogIndex
from orchestrator.search import Pipeline, SearchQuery

PRODUCTS = [
    Product("p1", "Cordless Drill", brand="Bosch", price=99.0),
    Product("p2", "Hammer", brand="Stanley", price=15.0),
    Product("p3", "LED Bulb", brand="Philips"),
    Product("104", "手机 支架"),
]
SHA = "0123456789abcdef" * 4


@pytest.fixture(scope="module")
def index(make_index) -> CatalogIndex:
    return make_index(PRODUCTS, catalog_sha256=SHA)


def make_pipeline(index: CatalogIndex, **settings) -> Pipeline:
    return Pipeline(Settings(**settings), MemoryCatalog(index), encoder=None, model_versions={})  # type: ignore[arg-type]


@pytest.fixture
def pipeline(index) -> Pipeline:
    return make_pipeline(index)


def test_model_versions_name_the_index_and_its_encoder_versions(pipeline):
    assert pipeline.model_versions == {"bi_encoder": "1", "multilingual_encoder": "1", "index": SHA[:12]}


def test_default_top_k_when_none(index):
    assert make_pipeline(index).validate(SearchQuery("drill")) == 10
    assert make_pipeline(index, default_top_k=3).validate(SearchQuery("drill", top_k=None)) == 3


def test_explicit_top_k_returned(pipeline):
    assert pipeline.validate(SearchQuery("drill", top_k=1)) == 1
    assert pipeline.validate(SearchQuery("drill", top_k=1000)) == 1000


@pytest.mark.parametrize("query", ["", "   ", "\t\n", "\u3000"])
def test_empty_or_whitespace_query(pipeline, query):
    with pytest.raises(InvalidRequest, match="query is empty"):
        pipeline.validate(SearchQuery(query))


def test_too_long_query(pipeline):
    query = "a" * 100_000
    with pytest.raises(InvalidRequest) as error:
        pipeline.validate(SearchQuery(query))
    assert "100000 characters" in str(error.value)
    assert "1000" in str(error.value)


def test_query_at_the_limit_is_fine(index):
    pipeline = make_pipeline(index, max_query_chars=20)
    assert pipeline.validate(SearchQuery("x" * 20)) == 10
    with pytest.raises(InvalidRequest):
        pipeline.validate(SearchQuery("x" * 21))


@pytest.mark.parametrize("top_k", [0, -1, 1001, 1_000_000])
def test_top_k_out_of_range(pipeline, top_k):
    with pytest.raises(InvalidRequest) as error:
        pipeline.validate(SearchQuery("drill", top_k=top_k))
    assert "between 1 and 1000" in str(error.value)
    assert str(top_k) in str(error.value)


def test_unknown_mode(pipeline):
    with pytest.raises(InvalidRequest, match="unknown retrieval mode 'unknown \\(7\\)'"):
        pipeline.validate(SearchQuery("drill", mode="unknown (7)"))


@pytest.mark.parametrize("mode", ["hybrid", "lexical", "dense"])
def test_known_modes(pipeline, mode):
    assert pipeline.validate(SearchQuery("drill", mode=mode)) == 10


def test_unknown_filter_field(pipeline):
    with pytest.raises(InvalidRequest, match="unknown filter field 'color'"):
        pipeline.validate(SearchQuery("drill", filters=(Filter("color", any_of=("red",)),)))


def test_invalid_filter_anywhere_in_list(pipeline):
    filters = (Filter("brand", any_of=("Bosch",)), Filter("price", min=5.0, max=1.0))
    with pytest.raises(InvalidRequest, match="above max"):
        pipeline.validate(SearchQuery("drill", filters=filters))


def test_valid_filters_and_candidates(pipeline):
    query = SearchQuery(
        "drill", top_k=2, filters=(Filter("brand", any_of=("bosch",)), Filter("price", max=100.0)),
        candidate_ids=("p1", "p2", "104"),
    )
    assert pipeline.validate(query) == 2


def ranked(pipeline: Pipeline, query: SearchQuery) -> list[str]:
    """The ids a lexical search over the query's candidates answers with."""
    return [item.product_id for item in asyncio.run(pipeline.search(query)).items]


def test_unknown_candidate_ids_listed(pipeline):
    with pytest.raises(InvalidRequest) as error:
        ranked(pipeline, SearchQuery("drill", candidate_ids=("p1", "nope", "p2", "also-missing"), mode="lexical"))
    message = str(error.value)
    assert message.startswith("2 candidate id(s) not in the catalog")
    assert "'nope'" in message and "'also-missing'" in message
    assert "'p1'" not in message


def test_numeric_candidate_id_must_match_string_id(pipeline):
    assert ranked(pipeline, SearchQuery("drill", candidate_ids=("104",), mode="lexical")) == ["104"]
    with pytest.raises(InvalidRequest, match="'0104'"):
        ranked(pipeline, SearchQuery("drill", candidate_ids=("0104",), mode="lexical"))


def test_many_unknown_candidate_ids_truncated(pipeline):
    ids = tuple(f"x{i}" for i in range(8))
    with pytest.raises(InvalidRequest) as error:
        ranked(pipeline, SearchQuery("drill", candidate_ids=ids, mode="lexical"))
    message = str(error.value)
    assert message.startswith("8 candidate id(s)")
    assert "'x4'" in message and "'x5'" not in message
    assert message.endswith(" ...")


def test_too_many_candidates(index):
    pipeline = make_pipeline(index, max_candidates=3)
    with pytest.raises(InvalidRequest, match="4 candidate ids; the limit is 3"):
        pipeline.validate(SearchQuery("drill", candidate_ids=("p1", "p2", "p3", "104")))
    assert pipeline.validate(SearchQuery("drill", candidate_ids=("p1", "p2", "p3"))) == 10


def test_too_many_candidates_default_limit(pipeline):
    with pytest.raises(InvalidRequest, match="1001 candidate ids; the limit is 1000"):
        pipeline.validate(SearchQuery("drill", candidate_ids=("p1",) * 1001))
