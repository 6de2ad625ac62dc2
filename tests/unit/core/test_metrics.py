"""core.metrics: linear-gain nDCG (of ids, and of scores), recall and percentile, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.metrics import dcg, ndcg_at_k, ndcg_by_score, percentile, recall_at_k


def test_dcg_linear_gains_log2_discount():
    # 3/log2(2) + 2/log2(3) + 0/log2(4) + 1/log2(5)
    assert dcg([3, 2, 0, 1], 4) == pytest.approx(3 + 2 / math.log2(3) + 1 / math.log2(5))
    assert dcg([3, 2, 0, 1], 2) == pytest.approx(3 + 2 / math.log2(3))
    assert dcg([3, 2], 10) == pytest.approx(3 + 2 / math.log2(3))
    assert dcg([], 5) == 0
    assert dcg([5], 0) == 0


def test_linear_not_exponential_gain():
    # Exponential gains would give 2**3 - 1 = 7 at position 1.
    assert dcg([3], 1) == 3


def test_ndcg_perfect_order_is_one():
    judged = {"a": 3.0, "b": 2.0, "c": 1.0}
    assert ndcg_at_k(["a", "b", "c"], judged, 3) == pytest.approx(1.0)
    assert ndcg_at_k(["a", "b", "c", "x"], judged, 10) == pytest.approx(1.0)


def test_ndcg_hand_computed():
    judged = {"a": 3.0, "b": 2.0, "c": 1.0}
    # ranked b, x (unjudged -> 0), a
    actual = 2 / 1 + 0 / math.log2(3) + 3 / math.log2(4)  # = 3.5
    ideal = 3 / 1 + 2 / math.log2(3) + 1 / math.log2(4)  # = 4.7618...
    assert ndcg_at_k(["b", "x", "a"], judged, 3) == pytest.approx(actual / ideal)
    assert ndcg_at_k(["b", "x", "a"], judged, 3) == pytest.approx(0.735007, abs=1e-6)


def test_ndcg_at_k_cuts_both_lists():
    judged = {"a": 3.0, "b": 2.0, "c": 1.0}
    # k=1: ranked c first -> 1 / 3
    assert ndcg_at_k(["c", "a", "b"], judged, 1) == pytest.approx(1 / 3)
    # k=2: (1 + 3/log2 3) / (3 + 2/log2 3)
    assert ndcg_at_k(["c", "a", "b"], judged, 2) == pytest.approx((1 + 3 / math.log2(3)) / (3 + 2 / math.log2(3)))


def test_ndcg_ideal_uses_all_judged_not_just_retrieved():
    judged = {"a": 2.0, "b": 2.0}
    assert ndcg_at_k(["a"], judged, 2) == pytest.approx(2 / (2 + 2 / math.log2(3)))


def test_ndcg_nothing_relevant_is_none():
    assert ndcg_at_k(["a"], {"a": 0.0, "b": 0.0}, 10) is None
    assert ndcg_at_k(["a"], {}, 10) is None


def test_ndcg_no_relevant_retrieved_is_zero():
    assert ndcg_at_k(["x", "y"], {"a": 1.0}, 10) == 0.0
    assert ndcg_at_k([], {"a": 1.0}, 10) == 0.0


def test_ndcg_by_score_orders_by_descending_score_and_ties_keep_candidate_order():
    gains = [0.0, 3.0, 2.0]
    assert ndcg_by_score(np.array([0.1, 0.9, 0.5]), gains, 3) == pytest.approx(1.0)
    # All tied: the candidate order, as ndcg_at_k of the ids in that order.
    assert ndcg_by_score(np.zeros(3), gains, 3) == ndcg_at_k(["a", "b", "c"], {"a": 0.0, "b": 3.0, "c": 2.0}, 3)


def test_ndcg_by_score_ideal_from_every_judged_gain():
    # One candidate of two relevant judged products, as test_ndcg_ideal_uses_all_judged_not_just_retrieved.
    assert ndcg_by_score(np.array([1.0]), [2.0], 2, judged=[2.0, 2.0]) == pytest.approx(2 / (2 + 2 / math.log2(3)))
    assert ndcg_by_score(np.array([1.0, 0.0]), [0.0, 0.0], 10) is None


def test_recall_hand_computed():
    judged = {"a": 3.0, "b": 1.0, "c": 0.0, "d": 2.0}
    # relevant (gain >= 1): a, b, d
    assert recall_at_k(["a", "c", "x", "b"], judged, 2) == pytest.approx(1 / 3)
    assert recall_at_k(["a", "c", "x", "b"], judged, 4) == pytest.approx(2 / 3)
    assert recall_at_k(["d", "b", "a"], judged, 3) == 1.0
    assert recall_at_k([], judged, 3) == 0.0


def test_recall_min_gain_threshold():
    judged = {"a": 3.0, "b": 1.0, "d": 2.0}
    assert recall_at_k(["b"], judged, 10, min_gain=2.0) == 0.0
    assert recall_at_k(["a", "b"], judged, 10, min_gain=2.0) == pytest.approx(1 / 2)
    assert recall_at_k(["b"], judged, 10, min_gain=1.0) == pytest.approx(1 / 3)


def test_recall_none_when_nothing_relevant():
    assert recall_at_k(["a"], {"a": 0.5}, 10) is None
    assert recall_at_k(["a"], {}, 10) is None


def test_percentile_linear_interpolation():
    values = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 25) == pytest.approx(1.75)
    assert percentile(values, 90) == pytest.approx(3.7)


def test_percentile_matches_numpy_linear():
    import numpy as np

    values = [12.0, 3.5, 7.0, 1.0, 100.0, 42.0, 8.25]
    for q in (0, 1, 10, 33.3, 50, 95, 99, 100):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_single_and_empty():
    assert percentile([5.0], 0) == 5.0
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))


def test_percentile_does_not_mutate_input():
    values = [3.0, 1.0, 2.0]
    percentile(values, 50)
    assert values == [3.0, 1.0, 2.0]
