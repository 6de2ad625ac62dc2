"""The workbench's forms: what a page's fields become in a SearchRequest, and the messages of bad fields."""

import pytest

from workbench.config import WorkbenchConfig
from workbench.errors import BadInput
from workbench.forms import Side, gain_of, product_ids, search_form, side_form

CONFIG = WorkbenchConfig(servers=("127.0.0.1:50051", "127.0.0.1:50061"))


def test_an_empty_form_is_the_first_server_and_the_configured_number_of_results():
    form = search_form({}, CONFIG)
    assert (form.server, form.query, form.user_id, form.top_k) == ("127.0.0.1:50051", "", "", 10)


def test_the_form_becomes_an_explained_request_with_its_filters():
    form = search_form({"q": " cordless drill ", "user": "alice", "top_k": "20", "category": "Drills, Saws",
                        "brand": "", "min_price": "10", "max_price": "150.5", "exact": "1",
                        "out_of_stock": "on", "server": "127.0.0.1:50061"}, CONFIG)
    request = form.request()
    assert (request.query, request.user_id, request.top_k, request.explain) == ("cordless drill", "alice", 20, True)
    assert request.skip_spelling_correction and request.include_out_of_stock
    category, price = request.filters
    assert (category.field, list(category.any_of)) == ("category", ["Drills", "Saws"])
    assert (price.field, price.min, price.max) == ("price", 10.0, 150.5)
    assert search_form(form.params(), CONFIG) == form


def test_a_price_bound_alone_sets_only_that_bound():
    price, = search_form({"q": "x", "max_price": "400"}, CONFIG).request().filters
    assert price.HasField("max") and not price.HasField("min")


@pytest.mark.parametrize("params, message", [
    ({"server": "10.0.0.1:1"}, "is not one this workbench was started with"),
    ({"top_k": "many"}, "results must be a whole number, not 'many'"),
    ({"top_k": "0"}, "results must be 1..100"),
    ({"top_k": "101"}, "results must be 1..100"),
    ({"min_price": "-1"}, "lowest price must be a number >= 0"),
    ({"max_price": "nan"}, "highest price must be a number >= 0"),
    ({"min_price": "50", "max_price": "10"}, "the lowest price 50 is above the highest 10"),
    ({"q": "x" * 1001}, "the query has 1001 characters; at most 1000"),
    ({"user": "é" * 200}, "a user id has at most 256 bytes"),
])
def test_a_bad_field_is_named(params, message):
    with pytest.raises(BadInput, match=message):
        search_form(params, CONFIG)


@pytest.mark.parametrize("arm, expected", [
    ("default", dict(skip_rerank=False, skip_cross_encoder=False, skip_personalization=False, weights={})),
    ("fused", dict(skip_rerank=True, skip_cross_encoder=False, skip_personalization=False, weights={})),
    ("no-cross-encoder", dict(skip_rerank=False, skip_cross_encoder=True, skip_personalization=False, weights={})),
    ("no-personalization", dict(skip_rerank=False, skip_cross_encoder=False, skip_personalization=True, weights={})),
    ("weights=bm25:1+dense:0.5,no-personalization",
     dict(skip_rerank=False, skip_cross_encoder=False, skip_personalization=True, weights={"bm25": 1.0, "dense": 0.5})),
])
def test_an_arm_becomes_the_request_fields_of_the_public_api(arm, expected):
    base = search_form({"q": "drill", "user": "bob"}, CONFIG).request()
    request = Side(arm=arm).request(base)
    assert request.skip_rerank == expected["skip_rerank"]
    assert request.skip_cross_encoder == expected["skip_cross_encoder"]
    assert request.skip_personalization == expected["skip_personalization"]
    assert dict(request.combination_weights) == expected["weights"]
    assert (request.query, request.user_id, request.explain) == ("drill", "bob", True)
    assert not base.skip_rerank and not base.combination_weights  # the base request is left as it was


def test_a_reranker_version_arm_says_the_public_api_cannot_ask_for_it():
    with pytest.raises(BadInput, match="the public API cannot ask for a reranker version"):
        Side(arm="reranker=2").request(search_form({"q": "drill"}, CONFIG).request())


@pytest.mark.parametrize("arm, message", [("sideways", "unknown part 'sideways'"),
                                          ("weights=colour:1", "unknown component 'colour'"),
                                          ("fused,weights=bm25:1", "'fused' is not reranked")])
def test_a_bad_arm_is_the_grammar_s_own_message(arm, message):
    with pytest.raises(BadInput, match=message):
        Side(arm=arm).request(search_form({"q": "drill"}, CONFIG).request())


def test_a_side_reads_its_arm_and_blend_weights():
    params = {"right": "no-cross-encoder", "right_preference": "0", "right_popularity": "2.5"}
    side = side_form(params, "right", "fused")
    assert side == Side(arm="no-cross-encoder", blend={"preference": 0.0, "popularity": 2.5})
    request = side.request(search_form({"q": "drill"}, CONFIG).request())
    assert request.blend_weights.preference == 0.0 and request.blend_weights.HasField("preference")
    assert request.blend_weights.popularity == 2.5 and not request.blend_weights.HasField("relevance")
    assert side_form({}, "left", "default") == Side(arm="default")
    with pytest.raises(BadInput, match="the left side's relevance weight must be a number"):
        side_form({"left_relevance": "high"}, "left", "default")


@pytest.mark.parametrize("value, gain", [(0, 0), (3, 3), ("2", 2)])
def test_a_rating_is_a_whole_number_from_0_to_3(value, gain):
    assert gain_of(value) == gain


@pytest.mark.parametrize("value", [4, -1, 1.5, "x", None, True, "2.0"])
def test_another_rating_is_refused(value):
    with pytest.raises(BadInput, match="a rating is a whole number 0..3"):
        gain_of(value)


def test_a_ranking_in_a_url_is_a_list_of_ids():
    assert product_ids(" D1, D2,,D3 ", "since") == ["D1", "D2", "D3"]
    with pytest.raises(BadInput, match="since: at most 1000 product ids"):
        product_ids(",".join(["D"] * 1001), "since")
