"""A user's profile from their feedback events, and the per-candidate features the learned blend reads.

Features by group, in the order of core/personal_blend.py's BLEND_FEATURES:
- relevance: the pipeline's relevance score, and 1 / log2(1 + rank) of the candidate in the relevance order;
- preference: cosine with the user's preference vector (time-decayed, type-weighted mean of the embeddings of the
  products they touched); decayed, weighted shares of their events in the candidate's category, department and
  brand; how often they bought it, in what share of their orders and of their last RECENT_ORDERS orders, their clicks and carts, days since they last
  bought it, their usual days between orders, and the ratio of the two ("due");
- popularity: log1p of the product's purchases, its reorder rate, its share of its category's purchases.

An order is a run of purchases less than ORDER_GAP_SECONDS apart. Missing values are NaN (never bought, fewer
than two orders, unknown reorder rate); the model handles them.
Shares and the preference vector are ratios of decayed weights, so they do not depend on the `now` a profile was
built at: a cached profile stays right as time passes, while day counts are taken at `features(now=...)`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np

from core.personal_blend import BLEND_FEATURES

_COLUMN = {name: index for index, name in enumerate(BLEND_FEATURES)}
EVENT_WEIGHTS = {"view": 0.1, "click": 0.3, "cart": 0.6, "purchase": 1.0}
HALF_LIFE_DAYS = 30.0
# Purchases closer than this belong to one order: a checkout's events share (nearly) one time, orders are apart.
ORDER_GAP_SECONDS = 3600.0
RECENT_ORDERS = 3
DAY = 86400.0


class EventLike(Protocol):
    """The fields of a feedback event that profiles read."""

    product_id: str
    type: str
    time: float


class ProductLike(Protocol):
    """The fields of a catalog product that features read."""

    product_id: str
    category: str
    department: str
    brand: str


class StatsLike(Protocol):
    """What all users bought of a product, as the profile store's product_figures gives it."""

    purchases: float
    reorders: int


@dataclass
class UserProfile:
    """What the features need of one user's history."""

    preference: np.ndarray | None = None  # unit vector, None without embedded events
    category_affinity: dict[str, float] = field(default_factory=dict)
    department_affinity: dict[str, float] = field(default_factory=dict)
    brand_affinity: dict[str, float] = field(default_factory=dict)
    purchases: dict[str, int] = field(default_factory=dict)
    orders_with: dict[str, int] = field(default_factory=dict)
    recent_orders_with: dict[str, int] = field(default_factory=dict)  # of the last RECENT_ORDERS orders
    last_purchase: dict[str, float] = field(default_factory=dict)  # unix seconds
    clicks_carts: dict[str, int] = field(default_factory=dict)
    orders: int = 0
    interval_days: float = float("nan")
    events: int = 0  # events of products still in the catalog

    @property
    def is_cold(self) -> bool:
        """True when the user has nothing the features can use."""
        return self.events == 0

    @classmethod
    def from_events(
        cls,
        events: Iterable[EventLike],
        now: float,
        embedding_of: Callable[[str], np.ndarray | None],
        product_of: Callable[[str], ProductLike | None],
    ) -> UserProfile:
        """Builds a profile; events of products no longer in the catalog count only as orders."""
        products: dict[str, ProductLike | None] = {}
        profile = cls()
        purchase_times, purchase_ids = [], []
        kept_weights, kept_times, kept_ids = [], [], []
        for event in events:
            if event.type == "purchase":
                purchase_times.append(event.time)
                purchase_ids.append(event.product_id)
            if event.product_id not in products:
                products[event.product_id] = product_of(event.product_id)
            if products[event.product_id] is None:
                continue
            kept_ids.append(event.product_id)
            kept_weights.append(EVENT_WEIGHTS.get(event.type, 0.0))
            kept_times.append(event.time)
            if event.type == "purchase":
                profile.purchases[event.product_id] = profile.purchases.get(event.product_id, 0) + 1
                last = profile.last_purchase.get(event.product_id, -np.inf)
                profile.last_purchase[event.product_id] = max(last, event.time)
            elif event.type in ("click", "cart"):
                profile.clicks_carts[event.product_id] = profile.clicks_carts.get(event.product_id, 0) + 1
        profile.events = len(kept_ids)
        profile._count_orders(purchase_times, purchase_ids)
        if not kept_ids:
            return profile

        # Future-dated events count as fresh, not as more than fresh.
        age_days = np.maximum(now - np.asarray(kept_times, dtype=np.float64), 0.0) / DAY
        decayed = np.asarray(kept_weights) * 0.5 ** (age_days / HALF_LIFE_DAYS)
        weights: dict[str, float] = defaultdict(float)
        for product_id, weight in zip(kept_ids, decayed.tolist()):
            weights[product_id] += weight
        total = sum(weights.values())
        if total <= 0:
            return profile
        shares = {"category": Counter(), "department": Counter(), "brand": Counter()}
        for product_id, weight in weights.items():
            for attribute, counter in shares.items():
                value = getattr(products[product_id], attribute)
                if value:
                    counter[value] += weight / total
        profile.category_affinity = dict(shares["category"])
        profile.department_affinity = dict(shares["department"])
        profile.brand_affinity = dict(shares["brand"])

        embedded = [(embedding_of(product_id), weight) for product_id, weight in weights.items() if weight > 0]
        embedded = [(vector, weight) for vector, weight in embedded if vector is not None]
        if embedded:
            vectors = np.stack([np.asarray(vector, dtype=np.float32) for vector, _ in embedded])
            mean = np.asarray([weight for _, weight in embedded], dtype=np.float32) @ vectors
            norm = float(np.linalg.norm(mean))
            if norm > 0:
                profile.preference = mean / norm
        return profile

    def _count_orders(self, times: list[float], product_ids: list[str]) -> None:
        """Orders, the orders holding each product, and the median days between orders."""
        if not times:
            return
        order = np.argsort(np.asarray(times, dtype=np.float64), kind="stable")
        ordered = np.asarray(times, dtype=np.float64)[order]
        starts = np.concatenate([[True], np.diff(ordered) > ORDER_GAP_SECONDS])
        holding: dict[str, set[int]] = defaultdict(set)
        for index, position in zip((np.cumsum(starts) - 1).tolist(), order.tolist()):
            holding[product_ids[position]].add(index)
        self.orders = int(starts.sum())
        self.orders_with = {product_id: len(holding[product_id]) for product_id in self.purchases}
        recent = self.orders - RECENT_ORDERS
        self.recent_orders_with = {product_id: sum(index >= recent for index in holding[product_id])
                                   for product_id in self.purchases}
        if self.orders >= 2:
            self.interval_days = float(np.median(np.diff(ordered[starts]))) / DAY


def features(
    profile: UserProfile | None,
    now: float,
    products: Sequence[ProductLike],
    embeddings: np.ndarray,
    stats: Mapping[str, StatsLike],
    category_purchases: Mapping[str, float],
    relevance: np.ndarray,
    relevance_rank: np.ndarray,
) -> np.ndarray:
    """The (n, len(BLEND_FEATURES)) float32 feature matrix of n candidates; NaN where a value is missing.

    `embeddings` are the candidates' unit vectors, `relevance_rank` their 1-based ranks in the relevance order
    (turned here into 1 / log2(1 + rank)). A None or cold profile gives 0 or NaN preference features.
    """
    n = len(products)
    ranks = np.asarray(relevance_rank, dtype=np.float64)
    if len(relevance) != n or len(ranks) != n or len(embeddings) != n:
        raise ValueError(f"{n} products but {len(relevance)} relevances, {len(ranks)} ranks, "
                         f"{len(embeddings)} embeddings")
    if n and ranks.min() < 1:
        raise ValueError("relevance_rank holds 1-based ranks, not transformed values")
    X = np.zeros((n, len(BLEND_FEATURES)), dtype=np.float32)
    X[:, _COLUMN["relevance"]] = relevance
    X[:, _COLUMN["relevance_rank"]] = 1.0 / np.log2(1.0 + ranks)

    ids = [product.product_id for product in products]
    figures = [stats.get(product_id) for product_id in ids]
    purchases = np.array([s.purchases if s is not None else 0.0 for s in figures], dtype=np.float64)
    reorders = np.array([s.reorders if s is not None else 0.0 for s in figures], dtype=np.float64)
    in_category = np.array([category_purchases.get(product.category, 0.0) if product.category else 0.0
                            for product in products], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        X[:, _COLUMN["popularity"]] = np.log1p(np.maximum(purchases, 0.0))
        X[:, _COLUMN["reorder_rate"]] = np.where(purchases > 0, reorders / purchases, np.nan)
        X[:, _COLUMN["category_share"]] = np.where(in_category > 0, purchases / in_category, 0.0)
    for name in ("days_since_purchase", "purchase_interval", "due_ratio"):
        X[:, _COLUMN[name]] = np.nan
    if profile is None or profile.is_cold:
        return X

    if profile.preference is not None:
        X[:, _COLUMN["pref_cosine"]] = embeddings @ profile.preference
    for name, affinity, attribute in (("category_affinity", profile.category_affinity, "category"),
                                      ("department_affinity", profile.department_affinity, "department"),
                                      ("brand_affinity", profile.brand_affinity, "brand")):
        X[:, _COLUMN[name]] = [affinity.get(getattr(product, attribute), 0.0) for product in products]
    X[:, _COLUMN["user_purchases"]] = [profile.purchases.get(product_id, 0) for product_id in ids]
    if profile.orders:
        X[:, _COLUMN["user_order_share"]] = [profile.orders_with.get(product_id, 0) / profile.orders
                                             for product_id in ids]
        recent = min(profile.orders, RECENT_ORDERS)
        X[:, _COLUMN["recent_order_share"]] = [profile.recent_orders_with.get(product_id, 0) / recent
                                               for product_id in ids]
    X[:, _COLUMN["user_clicks_carts"]] = [profile.clicks_carts.get(product_id, 0) for product_id in ids]
    last = np.array([profile.last_purchase.get(product_id, np.nan) for product_id in ids], dtype=np.float64)
    days = np.maximum(now - last, 0.0) / DAY
    X[:, _COLUMN["days_since_purchase"]] = days
    X[:, _COLUMN["purchase_interval"]] = profile.interval_days
    X[:, _COLUMN["due_ratio"]] = days / profile.interval_days
    return X
