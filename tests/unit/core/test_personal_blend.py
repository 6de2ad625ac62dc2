"""core.personal_blend: the blend's schema, named once for serving and training."""

from __future__ import annotations

import numpy as np

from core.personal_blend import (
    BIAS_COMPONENT, BLEND_FEATURES, COMPONENT_NAMES, FEATURE_GROUPS, FEATURES_BY_GROUP, GROUP_NAMES, linear_input,
)


def test_features_and_groups_are_named_once_in_order():
    assert len(set(BLEND_FEATURES)) == len(BLEND_FEATURES) == 16
    assert set(FEATURE_GROUPS) == set(BLEND_FEATURES)
    assert GROUP_NAMES == ("relevance", "preference", "popularity")
    assert {FEATURE_GROUPS["relevance"], FEATURE_GROUPS["relevance_rank"]} == {"relevance"}
    assert {FEATURE_GROUPS[name] for name in ("popularity", "reorder_rate", "category_share")} == {"popularity"}
    assert sum(group == "preference" for group in FEATURE_GROUPS.values()) == 11
    assert BLEND_FEATURES == tuple(name for group in GROUP_NAMES for name in FEATURES_BY_GROUP[group])
    # The fitting's baselines read these.
    assert {"relevance", "popularity", "user_purchases"} <= set(BLEND_FEATURES)


def test_components_are_group_and_feature_then_the_bias():
    assert COMPONENT_NAMES[:3] == ("relevance:relevance", "relevance:relevance_rank", "preference:pref_cosine")
    assert COMPONENT_NAMES[-1] == "popularity:category_share"
    assert len(COMPONENT_NAMES) == len(BLEND_FEATURES) and BIAS_COMPONENT not in COMPONENT_NAMES


def test_linear_input_fills_then_logs_then_standardizes():
    X = np.array([[np.nan, 3.0], [np.e - 1, -2.0]], dtype=np.float32)
    fill, log1p = np.array([np.e - 1, 5.0]), np.array([True, False])
    mean, std = np.array([0.5, 1.0]), np.array([2.0, 4.0])
    np.testing.assert_allclose(linear_input(X, fill, log1p, mean, std), [[0.25, 0.5], [0.25, -0.75]], rtol=1e-6)
    # A negative value is logged as 0.
    assert linear_input(np.array([[-3.0]]), np.zeros(1), np.array([True]), 0.0, 1.0)[0, 0] == 0.0
