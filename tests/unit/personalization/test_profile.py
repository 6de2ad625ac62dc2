"""orchestrator.personalization.profile: a user's profile and the blend features, against hand-computed values."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from core.personal_blend import BLEND_FEATURES
from orchestrator.personalization.profile import DAY, EVENT_WEIGHTS, HALF_LIFE_DAYS, UserProfile, features

T0 = 1_700_000_000.0
NOW = T0 + 40 * DAY
COLUMN = {name: index for index, name in enumerate(BLEND_FEATURES)}


@dataclass(frozen=True)
class Event:
    event_id: str
    user_id: str
    product_id: str
    type: str
    time: float
    query: str = ""
    quantity: int = 1
    category: str = ""


@dataclass(frozen=True)
class Product:
    product_id: str
    category: str = ""
    department: str = ""
    brand: str = ""


@dataclass(frozen=True)
class Stats:
    purchases: float = 0
    buyers: int = 0
    reorders: int = 0
    clicks: int = 0
    carts: int = 0
    views: int = 0


CATALOG = {
    "A": Product("A", "fruit", "produce", "Acme"),
    "B": Product("B", "fruit", "produce"),
    "C": Product("C", "milk", "dairy", "Moo"),
    "D": Product("D", "fruit", "produce"),  # never touched
    "E": Product("E"),  # no category, department or brand
}
EMBEDDINGS = {"A": [1, 0, 0], "B": [0, 1, 0], "C": [0, 0, 1], "D": [0.6, 0.8, 0], "E": [0, 0.6, 0.8]}


def embedding_of(product_id: str) -> np.ndarray | None:
    vector = EMBEDDINGS.get(product_id)
    return None if vector is None else np.asarray(vector, dtype=np.float32)


def event(number: int, product_id: str, kind: str, day: float) -> Event:
    return Event(str(number), "u1", product_id, kind, T0 + day * DAY)


# Orders on days 0, 10, 30 and 35 (the last one only of a product gone from the catalog); a minute apart within one.
EVENTS = [
    event(1, "A", "purchase", 0), event(2, "B", "purchase", 0 + 60 / DAY),
    event(3, "A", "purchase", 10),
    event(4, "A", "purchase", 30), event(5, "C", "purchase", 30),
    event(6, "B", "click", 31), event(7, "C", "cart", 31), event(8, "X", "view", 31),
    event(9, "X", "purchase", 35),
]


def decayed(kind: str, day: float) -> float:
    return EVENT_WEIGHTS[kind] * 0.5 ** ((40 - day) / HALF_LIFE_DAYS)


def build(events=EVENTS, now: float = NOW) -> UserProfile:
    return UserProfile.from_events(events, now, embedding_of, CATALOG.get)


def matrix(profile: UserProfile | None, ids=("A", "B", "C", "D", "E"), stats=None, category_purchases=None):
    products = [CATALOG[product_id] for product_id in ids]
    embeddings = np.asarray([EMBEDDINGS[product_id] for product_id in ids], dtype=np.float32)
    stats = stats if stats is not None else {"A": Stats(purchases=9, reorders=3), "C": Stats(purchases=0)}
    category_purchases = category_purchases if category_purchases is not None else {"fruit": 12.0}
    relevance = np.linspace(1.0, 0.2, len(ids)).astype(np.float32)
    return features(profile, NOW, products, embeddings, stats, category_purchases, relevance,
                    np.arange(1, len(ids) + 1))


def test_counts_orders_interval_and_days_since():
    profile = build()
    assert profile.purchases == {"A": 3, "B": 1, "C": 1}
    assert profile.orders == 4  # the purchase of X, gone from the catalog, was still an order
    assert profile.orders_with == {"A": 3, "B": 1, "C": 1}
    assert profile.recent_orders_with == {"A": 2, "B": 0, "C": 1}  # of the orders of days 10, 30 and 35
    assert profile.interval_days == pytest.approx(10.0)  # gaps 10, 20, 5 days
    assert profile.clicks_carts == {"B": 1, "C": 1}
    X = matrix(profile)
    assert X.dtype == np.float32 and X.shape == (5, len(BLEND_FEATURES))
    assert X[:, COLUMN["user_purchases"]].tolist() == [3, 1, 1, 0, 0]
    assert X[:, COLUMN["user_order_share"]] == pytest.approx([0.75, 0.25, 0.25, 0, 0])
    assert X[:, COLUMN["recent_order_share"]] == pytest.approx([2 / 3, 0, 1 / 3, 0, 0])
    assert X[:, COLUMN["user_clicks_carts"]].tolist() == [0, 1, 1, 0, 0]
    days = X[:, COLUMN["days_since_purchase"]]
    assert days[:3] == pytest.approx([10.0, 40.0 - 60 / DAY, 10.0], abs=1e-4)
    assert np.isnan(days[3:]).all()
    assert X[:, COLUMN["purchase_interval"]] == pytest.approx([10.0] * 5)
    due = X[:, COLUMN["due_ratio"]]
    assert due[:3] == pytest.approx([1.0, 4.0, 1.0], abs=1e-4)
    assert np.isnan(due[3:]).all()


def test_one_order_has_no_interval():
    profile = build([event(1, "A", "purchase", 5), event(2, "B", "purchase", 5 + 30 / DAY)])
    assert profile.orders == 1
    X = matrix(profile)
    assert np.isnan(X[:, COLUMN["purchase_interval"]]).all() and np.isnan(X[:, COLUMN["due_ratio"]]).all()
    assert X[0, COLUMN["days_since_purchase"]] == pytest.approx(35.0, abs=1e-3)
    assert X[0, COLUMN["user_order_share"]] == 1.0


def test_affinities_are_decayed_weighted_shares():
    weights = {
        "A": decayed("purchase", 0) + decayed("purchase", 10) + decayed("purchase", 30),
        "B": decayed("purchase", 0 + 60 / DAY) + decayed("click", 31),
        "C": decayed("purchase", 30) + decayed("cart", 31),
    }
    total = sum(weights.values())
    X = matrix(build())
    fruit = (weights["A"] + weights["B"]) / total
    assert X[:, COLUMN["category_affinity"]] == pytest.approx([fruit, fruit, weights["C"] / total, fruit, 0], rel=1e-5)
    assert X[:, COLUMN["department_affinity"]] == pytest.approx(X[:, COLUMN["category_affinity"]])
    # B, D and E have no brand: 0, not the share of brandless events.
    assert X[:, COLUMN["brand_affinity"]] == pytest.approx([weights["A"] / total, 0, weights["C"] / total, 0, 0],
                                                           rel=1e-5)
    preference = np.array([weights["A"], weights["B"], weights["C"]]) / math.dist((0, 0, 0), weights.values())
    candidates = np.asarray([EMBEDDINGS[product_id] for product_id in "ABCDE"])
    assert X[:, COLUMN["pref_cosine"]] == pytest.approx(candidates @ preference, rel=1e-5)


def test_a_purchase_one_half_life_old_weighs_half():
    profile = build([event(1, "A", "purchase", 40 - HALF_LIFE_DAYS), event(2, "C", "purchase", 40)])
    assert profile.category_affinity == pytest.approx({"fruit": 1 / 3, "milk": 2 / 3})
    assert profile.preference == pytest.approx(np.array([1, 0, 2]) / math.sqrt(5), rel=1e-6)


def test_event_types_weigh_differently():
    profile = build([event(1, "A", "view", 40), event(2, "C", "purchase", 40)])
    share = EVENT_WEIGHTS["view"] / (EVENT_WEIGHTS["view"] + EVENT_WEIGHTS["purchase"])
    assert profile.category_affinity["fruit"] == pytest.approx(share)
    assert EVENT_WEIGHTS["view"] < EVENT_WEIGHTS["click"] < EVENT_WEIGHTS["cart"] < EVENT_WEIGHTS["purchase"]


def test_shares_do_not_depend_on_when_the_profile_was_built():
    early, late = build(now=NOW), build(now=NOW + 100 * DAY)
    assert late.category_affinity == pytest.approx(early.category_affinity)
    assert late.preference == pytest.approx(early.preference, rel=1e-5)


def test_popularity_features():
    X = matrix(build())
    assert X[:, COLUMN["popularity"]] == pytest.approx([math.log1p(9), 0, 0, 0, 0])
    reorder = X[:, COLUMN["reorder_rate"]]
    assert reorder[0] == pytest.approx(1 / 3) and np.isnan(reorder[1:]).all()  # no purchases: unknown
    assert X[:, COLUMN["category_share"]] == pytest.approx([0.75, 0, 0, 0, 0])


def test_relevance_features_are_placed():
    X = matrix(None)
    assert X[:, COLUMN["relevance"]] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert X[:, COLUMN["relevance_rank"]] == pytest.approx([1 / math.log2(1 + rank) for rank in range(1, 6)])
    with pytest.raises(ValueError, match="1-based"):
        features(None, NOW, [CATALOG["A"], CATALOG["B"]], np.zeros((2, 3), np.float32), {}, {},
                 np.ones(2), np.array([1.0, 1 / math.log2(3)]))


@pytest.mark.parametrize("events", [[], [event(1, "X", "purchase", 3), event(2, "Y", "click", 4)]])
def test_cold_start(events):
    profile = build(events)
    assert profile.is_cold
    for cold in (profile, None):
        X = matrix(cold)
        for name in ("pref_cosine", "category_affinity", "department_affinity", "brand_affinity",
                     "user_purchases", "user_order_share", "recent_order_share", "user_clicks_carts"):
            assert (X[:, COLUMN[name]] == 0).all(), name
        for name in ("days_since_purchase", "purchase_interval", "due_ratio"):
            assert np.isnan(X[:, COLUMN[name]]).all(), name
        assert X[0, COLUMN["popularity"]] == pytest.approx(math.log1p(9))  # popularity still counts


def test_product_without_embedding_still_counts():
    no_embedding = {"A": None}
    profile = UserProfile.from_events([event(1, "A", "purchase", 39), event(2, "C", "purchase", 39)], NOW,
                                      lambda product_id: no_embedding.get(product_id, embedding_of(product_id)),
                                      CATALOG.get)
    assert profile.purchases == {"A": 1, "C": 1}
    assert profile.preference == pytest.approx(np.array([0, 0, 1]))
