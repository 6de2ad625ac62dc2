"""orchestrator.experiments.arms: the short texts that name an experiment's arm, and the query each arm ranks."""

from __future__ import annotations

import pytest

from core.errors import InvalidRequest
from orchestrator.experiments.arms import Arm, parse_arm
from orchestrator.search import SearchQuery

QUERY = SearchQuery("cordless drill", user_id="u1", top_k=5)


@pytest.mark.parametrize("text, changes", [
    ("default", {}),
    ("fused", {"skip_rerank": True}),
    ("no-cross-encoder", {"skip_cross_encoder": True}),
    ("no-personalization", {"personalize": False}),
    ("reranker=3", {"reranker_version": "3"}),
    ("weights=bm25:1+dense:0.5", {"combination_weights": {"bm25": 1.0, "dense": 0.5}}),
])
def test_every_documented_arm_parses_and_changes_only_its_own_fields(text, changes):
    arm = parse_arm(text)
    assert arm.text == text
    ranked = arm.apply(QUERY)
    expected = {"skip_rerank": False, "skip_cross_encoder": False, "personalize": True, "reranker_version": "",
                "combination_weights": None, **changes}
    assert {name: getattr(ranked, name) for name in expected} == expected
    # What the arm does not rank by is the caller's, untouched.
    assert (ranked.query, ranked.user_id, ranked.top_k) == (QUERY.query, QUERY.user_id, QUERY.top_k)


def test_default_is_the_query_unchanged_and_keeps_the_callers_own_overrides():
    assert parse_arm("default") == Arm()
    assert parse_arm("default").apply(QUERY) == QUERY
    asked = SearchQuery("drill", skip_cross_encoder=True, combination_weights={"bm25": 2.0})
    assert parse_arm("no-personalization").apply(asked).combination_weights == {"bm25": 2.0}
    assert parse_arm("no-personalization").apply(asked).skip_cross_encoder is True
    # An arm that sets a field wins over the caller's.
    assert parse_arm("weights=dense:1").apply(asked).combination_weights == {"dense": 1.0}


def test_parts_combine_with_commas_and_the_text_is_normalized():
    arm = parse_arm(" Reranker=3 , No-Personalization,no-cross-encoder ")
    assert arm.text == "reranker=3,no-personalization,no-cross-encoder"
    ranked = arm.apply(QUERY)
    assert ranked.reranker_version == "3" and ranked.personalize is False and ranked.skip_cross_encoder is True
    assert ranked.skip_rerank is False and ranked.combination_weights is None
    both = parse_arm("weights=dense:2+bm25:0.25,no-personalization")
    assert both.combination_weights == (("bm25", 0.25), ("dense", 2.0))  # sorted, whatever the order written
    assert both.apply(QUERY).combination_weights == {"bm25": 0.25, "dense": 2.0}
    assert both.apply(QUERY).personalize is False
    assert parse_arm("fused,no-personalization").apply(QUERY).skip_rerank is True


def test_arms_written_differently_but_ranking_alike_rank_the_same_query():
    assert parse_arm("weights=bm25:1+dense:0.5").apply(QUERY) == parse_arm("weights=dense:0.5+bm25:1.0").apply(QUERY)
    assert parse_arm("weights=bm25:1").apply(QUERY) == parse_arm("WEIGHTS=bm25:1.0").apply(QUERY)
    assert parse_arm("reranker=3").apply(QUERY) != parse_arm("reranker=2").apply(QUERY)


@pytest.mark.parametrize("text, named", [
    ("", "an arm must be named"),
    (" , ", "an arm must be named"),
    ("reranked", "unknown part 'reranked'"),
    ("default,bogus", "unknown part 'bogus'"),
    ("reranker=v3", "a reranker version is a number, not 'v3'"),
    ("reranker=", "a reranker version is a number, not ''"),
    ("weights=colbert:1", "unknown component 'colbert'"),
    ("weights=bm25:high", "the weight of bm25 must be a number, not 'high'"),
    ("weights=bm25:nan", "the weight of bm25 must be finite"),
    ("weights=dense:inf", "the weight of dense must be finite"),
    ("weights=", "weights= names no component"),
    ("fused,weights=bm25:1", "'fused' is not reranked"),
    ("fused,reranker=2", "'fused' is not reranked"),
    ("fused,no-cross-encoder", "'fused' is not reranked"),
])
def test_a_malformed_arm_is_an_invalid_request_naming_the_problem(text, named):
    with pytest.raises(InvalidRequest) as raised:
        parse_arm(text)
    assert named in str(raised.value)
