"""cli.evaluation: which baselines an evaluation runs."""

from __future__ import annotations

from cli.evaluation import baseline_specs


def test_the_cross_encoder_alone_is_shown_beside_zero_shot_minilm_and_the_fused_order():
    assert baseline_specs([], reranker_only=True) == ["dense=1", "fused"]
    assert baseline_specs(["fused", "lexical"], reranker_only=True) == ["fused", "lexical", "dense=1"]


def test_other_evaluations_run_only_the_baselines_asked_for():
    assert baseline_specs([], reranker_only=False) == []
    assert baseline_specs(["reranker=1"], reranker_only=False) == ["reranker=1"]
