"""orchestrator.fusion: ranks, reciprocal rank fusion, the weighted sum, and the final order."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.fusion import fuse, ranks


def by_name(fused):
    return {component.name: component for component in fused.components}


def test_ranks_descending_and_unmatched_zero():
    raw = np.array([0.5, 0.0, 2.0, 1.0])
    assert ranks(raw, raw > 0).tolist() == [3, 0, 1, 2]


def test_ranks_ties_by_position():
    raw = np.array([1.0, 3.0, 1.0, 3.0])
    assert ranks(raw, np.ones(4, dtype=bool)).tolist() == [3, 1, 4, 2]


def test_rrf_contributions_are_one_over_k_plus_rank():
    rows = np.array([10, 11, 12])
    bm25 = np.array([3.0, 1.0, 2.0])  # ranks 1, 3, 2
    dense = np.array([0.1, 0.9, 0.5])  # ranks 3, 1, 2
    fused = fuse(rows, {"bm25": bm25, "dense": dense}, "rrf", rrf_k=60)
    expected = {10: 1 / 61 + 1 / 63, 11: 1 / 63 + 1 / 61, 12: 1 / 62 + 1 / 62}
    for row, score in zip(fused.rows.tolist(), fused.scores.tolist()):
        assert score == pytest.approx(expected[row], rel=1e-12)
    components = by_name(fused)
    for position, row in enumerate(fused.rows.tolist()):
        bm25_rank = {10: 1, 11: 3, 12: 2}[row]
        dense_rank = {10: 3, 11: 1, 12: 2}[row]
        assert components["bm25"].rank[position] == bm25_rank
        assert components["dense"].rank[position] == dense_rank
        assert components["bm25"].contribution[position] == pytest.approx(1 / (60 + bm25_rank))
        assert components["dense"].contribution[position] == pytest.approx(1 / (60 + dense_rank))
        assert components["bm25"].raw[position] == bm25[row - 10]
        assert components["dense"].raw[position] == dense[row - 10]


def test_rrf_uses_given_k():
    rows = np.array([0, 1])
    fused = fuse(rows, {"bm25": np.array([2.0, 1.0]), "dense": np.array([0.9, 0.1])}, "rrf", rrf_k=1)
    assert fused.rows.tolist() == [0, 1]
    assert fused.scores.tolist() == pytest.approx([1 / 2 + 1 / 2, 1 / 3 + 1 / 3])


def test_rrf_bm25_zero_is_rank_zero_and_contributes_nothing():
    rows = np.array([0, 1, 2])
    bm25 = np.array([0.0, 2.0, 1.0])
    dense = np.array([0.9, 0.2, 0.1])
    fused = fuse(rows, {"bm25": bm25, "dense": dense}, "rrf", rrf_k=60)
    components = by_name(fused)
    position = fused.rows.tolist().index(0)
    assert components["bm25"].rank[position] == 0
    assert components["bm25"].contribution[position] == 0.0
    assert components["dense"].rank[position] == 1
    assert fused.scores[position] == pytest.approx(1 / 61)
    # the matched ones are ranked 1 and 2 among matched only
    assert components["bm25"].rank[fused.rows.tolist().index(1)] == 1
    assert components["bm25"].rank[fused.rows.tolist().index(2)] == 2


def test_dense_negative_cosine_still_ranked():
    rows = np.array([0, 1])
    fused = fuse(rows, {"bm25": np.array([1.0, 1.0]), "dense": np.array([-0.5, -0.1])}, "rrf")
    dense = by_name(fused)["dense"]
    assert sorted(dense.rank.tolist()) == [1, 2]
    assert (dense.contribution > 0).all()


@pytest.mark.parametrize("method", ["rrf", "weighted"])
@pytest.mark.parametrize("name", ["bm25", "dense"])
def test_single_retriever_raw_is_final_score(method, name):
    rows = np.array([5, 6, 7, 8])
    raw = np.array([0.3, 0.0, 0.9, 0.5])
    fused = fuse(rows, {name: raw}, method)
    assert fused.rows.tolist() == [7, 8, 5, 6]
    assert fused.scores.tolist() == pytest.approx([0.9, 0.5, 0.3, 0.0])
    (component,) = fused.components
    assert component.name == name
    assert component.contribution.tolist() == pytest.approx([0.9, 0.5, 0.3, 0.0])
    assert component.raw.tolist() == pytest.approx([0.9, 0.5, 0.3, 0.0])


def test_single_bm25_unmatched_rank_zero():
    fused = fuse(np.array([0, 1]), {"bm25": np.array([0.0, 4.0])}, "rrf")
    assert fused.rows.tolist() == [1, 0]
    assert fused.components[0].rank.tolist() == [1, 0]


def test_weighted_normalizes_bm25_by_max():
    rows = np.array([0, 1, 2])
    bm25 = np.array([4.0, 2.0, 0.0])
    dense = np.array([0.1, 0.5, 0.8])
    fused = fuse(rows, {"bm25": bm25, "dense": dense}, "weighted", lexical_weight=0.3)
    expected = {
        0: 0.3 * 1.0 + 0.7 * 0.1,
        1: 0.3 * 0.5 + 0.7 * 0.5,
        2: 0.3 * 0.0 + 0.7 * 0.8,
    }
    assert fused.rows.tolist() == [2, 1, 0]  # 0.56, 0.5, 0.37
    assert fused.scores.tolist() == pytest.approx([expected[r] for r in fused.rows.tolist()])
    components = by_name(fused)
    assert components["bm25"].contribution.tolist() == pytest.approx([0.0, 0.15, 0.3])
    assert components["dense"].contribution.tolist() == pytest.approx([0.56, 0.35, 0.07])


def test_weighted_all_zero_bm25_gives_dense_only():
    rows = np.array([0, 1])
    fused = fuse(rows, {"bm25": np.zeros(2), "dense": np.array([0.2, 0.6])}, "weighted", lexical_weight=0.25)
    assert fused.rows.tolist() == [1, 0]
    assert fused.scores.tolist() == pytest.approx([0.75 * 0.6, 0.75 * 0.2])
    assert np.all(np.isfinite(fused.scores))


@pytest.mark.parametrize("weight, expected_top", [(0.0, 1), (1.0, 0)])
def test_weighted_weight_extremes(weight, expected_top):
    rows = np.array([0, 1])
    fused = fuse(rows, {"bm25": np.array([5.0, 1.0]), "dense": np.array([0.1, 0.9])}, "weighted", lexical_weight=weight)
    assert fused.rows[0] == expected_top


def test_sorted_best_first():
    rng = np.random.default_rng(1)
    rows = np.arange(50)
    fused = fuse(rows, {"bm25": rng.random(50) * 5, "dense": rng.random(50)}, "weighted")
    assert np.all(np.diff(fused.scores) <= 0)
    assert sorted(fused.rows.tolist()) == rows.tolist()


def test_ties_broken_by_row_ascending():
    rows = np.array([42, 7, 19, 3])
    fused = fuse(rows, {"dense": np.array([0.5, 0.5, 0.9, 0.5])}, "rrf")
    assert fused.rows.tolist() == [19, 3, 7, 42]


def test_rrf_ties_broken_by_row_ascending():
    # Mirror-image ranks: every row gets the same RRF total.
    rows = np.array([9, 4])
    fused = fuse(rows, {"bm25": np.array([2.0, 1.0]), "dense": np.array([0.1, 0.9])}, "rrf")
    assert fused.scores[0] == pytest.approx(fused.scores[1])
    assert fused.rows.tolist() == [4, 9]


def test_components_stay_aligned_with_rows():
    rows = np.array([3, 1, 2])
    bm25 = np.array([1.0, 3.0, 2.0])
    dense = np.array([0.3, 0.1, 0.2])
    fused = fuse(rows, {"bm25": bm25, "dense": dense}, "weighted")
    original = {int(r): i for i, r in enumerate(rows)}
    components = by_name(fused)
    for position, row in enumerate(fused.rows.tolist()):
        assert components["bm25"].raw[position] == bm25[original[row]]
        assert components["dense"].raw[position] == dense[original[row]]
        total = components["bm25"].contribution[position] + components["dense"].contribution[position]
        assert fused.scores[position] == pytest.approx(total)


def test_empty_candidates():
    fused = fuse(np.zeros(0, dtype=np.int64), {"bm25": np.zeros(0), "dense": np.zeros(0)}, "rrf")
    assert fused.rows.shape == (0,)
    assert fused.scores.shape == (0,)


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown fusion method"):
        fuse(np.array([0]), {"bm25": np.array([1.0]), "dense": np.array([0.5])}, "max")


def test_reranker_combination_reorders_and_explains():
    from orchestrator.fusion import combine

    rows = np.array([10, 11, 12])
    fused = fuse(rows, {"bm25": np.array([4.0, 2.0, 0.0]), "dense": np.array([0.5, 0.4, 0.9])}, "weighted")
    depth_scores = np.array([0.1, 3.0])  # the reranker saw the first two fused candidates only
    combined = combine(fused, {"reranker": 1.0, "bm25": 0.5, "dense": 1.0}, {"reranker": depth_scores})
    assert len(combined.rows) == 2
    names = [component.name for component in combined.components]
    assert names == ["bm25", "dense", "reranker"]
    total = sum(component.contribution for component in combined.components)
    np.testing.assert_allclose(combined.scores, total)
    assert list(combined.scores) == sorted(combined.scores, reverse=True)
    reranker = combined.components[2]
    assert reranker.rank.tolist() == [1, 2]
    assert reranker.raw[0] == 3.0


def test_combined_scores_are_combines_scores_in_the_fused_order():
    from orchestrator.fusion import combine, combined_scores

    rows = np.array([10, 11, 12])
    fused = fuse(rows, {"bm25": np.array([4.0, 2.0, 0.0]), "dense": np.array([0.5, 0.4, 0.9])}, "weighted")
    weights, extra = {"bm25": 0.5, "dense": 1.0, "overlap": 2.0}, {"overlap": np.array([0.0, 1.0])}
    scores = combined_scores(fused, weights, extra)
    combined = combine(fused, weights, extra)
    assert len(scores) == 2  # the depth of `extra`
    by_row = dict(zip(combined.rows.tolist(), combined.scores.tolist()))
    np.testing.assert_allclose(scores, [by_row[row] for row in fused.rows[:2].tolist()])


def test_reranker_only_weights_rank_by_cross_encoder():
    from orchestrator.fusion import combine

    rows = np.array([0, 1, 2])
    fused = fuse(rows, {"bm25": np.array([3.0, 2.0, 1.0])}, "weighted")
    combined = combine(fused, {"reranker": 1.0}, {"reranker": np.array([-1.0, 0.5, 2.0])})
    assert combined.rows.tolist() == [2, 1, 0]
    assert combined.scores.tolist() == [2.0, 0.5, -1.0]


def test_reranker_combination_adds_weighted_features_as_components():
    from orchestrator.fusion import combine

    rows = np.array([0, 1])
    fused = fuse(rows, {"bm25": np.array([1.0, 1.0])}, "weighted")
    features = {"numbers": np.array([-1.0, 1.0])}
    # Equal reranker scores: the numbers feature decides, and its contribution is weight * value.
    combined = combine(fused, {"reranker": 1.0, "numbers": 0.25}, {"reranker": np.array([0.5, 0.5]), **features})
    assert combined.rows.tolist() == [1, 0]
    numbers = next(component for component in combined.components if component.name == "numbers")
    assert numbers.raw.tolist() == [1.0, -1.0]
    assert numbers.contribution.tolist() == [0.25, -0.25]
    np.testing.assert_allclose(combined.scores, [0.75, 0.25])


def test_impute_gives_unreadable_candidates_the_median_of_the_readable():
    from orchestrator.fusion import impute

    values = np.array([3.0, 1.0, 0.0, 2.0, 0.0])
    readable = np.array([True, True, False, True, False])
    np.testing.assert_array_equal(impute(values, readable), [3.0, 1.0, 2.0, 2.0, 2.0])
    assert impute(values, np.ones(5, dtype=bool)) is values
    np.testing.assert_array_equal(impute(values, np.zeros(5, dtype=bool)), np.zeros(5))


def test_weighted_fusion_averages_two_encoders_cosines():
    rows = np.array([0, 1])
    fused = fuse(rows, {"bm25": np.array([0.0, 0.0]), "dense": np.array([0.2, 0.6]),
                        "multilingual": np.array([0.8, 0.0])}, "weighted", lexical_weight=0.5)
    # (0.2 + 0.8) / 2 * 0.5 = 0.25 against (0.6 + 0.0) / 2 * 0.5 = 0.15
    assert fused.rows.tolist() == [0, 1]
    np.testing.assert_allclose(fused.scores, [0.25, 0.15])


def test_combination_without_a_reranker_uses_the_cheap_components():
    from orchestrator.fusion import combine

    rows = np.array([0, 1, 2])
    fused = fuse(rows, {"bm25": np.array([2.0, 1.0, 0.0]), "multilingual": np.array([0.1, 0.2, 0.9])}, "weighted")
    combined = combine(fused, {"bm25": 0.0, "multilingual": 1.0, "intent": 1.0},
                       {"intent": np.array([0.0, 0.5, 0.1])})
    names = [component.name for component in combined.components]
    assert "reranker" not in names and names[-1] == "intent"
    np.testing.assert_allclose(combined.scores, sorted(combined.scores, reverse=True))
    np.testing.assert_allclose(combined.scores, sum(c.contribution for c in combined.components))


def test_impute_with_a_proxy_maps_the_proxys_quantile_onto_the_readable_values():
    from orchestrator.fusion import impute

    values = np.array([10.0, 0.0, 5.0, 0.0])  # rows 1 and 3 unreadable
    readable = np.array([True, False, True, False])
    proxy = np.array([0.2, 0.9, 0.5, 0.1])  # row 1 is the proxy's best, row 3 its worst
    imputed = impute(values, readable, proxy)
    assert imputed[1] == 10.0 and imputed[3] == 5.0  # the readable values' top and bottom
    np.testing.assert_array_equal(imputed[readable], values[readable])
