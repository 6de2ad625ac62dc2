"""The personal blend's schema: its features, their groups, the names that explain them, the linear model's transform.

Serving (orchestrator/personalization: the profile computes the features, BlendModel scores them) and training
(training/blend_fit.py fits the model, training/personal.py reads the features back from searches' explanations)
both import it, so the two cannot drift apart. A blend model's manifest.json records BLEND_FEATURES and
FEATURE_GROUPS as they were at training; serving refuses a model whose schema differs.

Features by group, in the order of BLEND_FEATURES (orchestrator/personalization/profile.py says what each is):
- relevance: the pipeline's relevance score and its rank;
- preference: what the user did: their preference vector, category, department and brand shares, their purchases,
  orders, clicks and carts of the candidate, and the days since and between their orders;
- popularity: what all users bought: the product's purchases, its reorder rate, its share of its category.
A request's blend weights are keyed by GROUP_NAMES and scale every feature of their group.
"""

from __future__ import annotations

import numpy as np

FEATURES_BY_GROUP = {
    "relevance": ("relevance", "relevance_rank"),
    "preference": ("pref_cosine", "category_affinity", "department_affinity", "brand_affinity",
                   "user_purchases", "user_order_share", "recent_order_share", "user_clicks_carts",
                   "days_since_purchase", "purchase_interval", "due_ratio"),
    "popularity": ("popularity", "reorder_rate", "category_share"),
}
BLEND_FEATURES = tuple(name for names in FEATURES_BY_GROUP.values() for name in names)
FEATURE_GROUPS = {name: group for group, names in FEATURES_BY_GROUP.items() for name in names}
GROUP_NAMES = tuple(FEATURES_BY_GROUP)

# An explained search's components: each feature as "group:feature" (its raw value, its contribution), then the bias.
COMPONENT_NAMES = tuple(f"{FEATURE_GROUPS[name]}:{name}" for name in BLEND_FEATURES)
BIAS_COMPONENT = "blend:bias"


def linear_input(X: np.ndarray, fill: np.ndarray, log1p: np.ndarray, mean: np.ndarray | float,
                 std: np.ndarray | float) -> np.ndarray:
    """The linear model's input: NaN filled, log1p (of the value, floored at 0) where flagged, standardized."""
    values = np.where(np.isnan(X), fill, X.astype(np.float64))
    values = np.where(log1p, np.log1p(np.maximum(values, 0.0)), values)
    return (values - mean) / std
