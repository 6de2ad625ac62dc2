"""Personalization in the serving path: feedback events in, a learned preference blend out.

    personalizer = Personalizer(store, catalog, blend, settings)
    added = await personalizer.record(events)                # validated, then durable in the store
    checked = await personalizer.check_all(events)           # each event checked (or its InvalidEvent), one read
    profile = await personalizer.profile(user_id)            # None for a cold-start user
    ranked = await personalizer.blend(candidates, relevance, pool, profile, weights, explain)

The blend re-orders the head of the relevance order (the reranked candidates, or the first `blend_depth` of the
fused order) together with the candidates further down that the user has touched or that are the most bought,
whose relevance rank is their place in the fused order. Its score is the learned blend model's (orchestrator/personalization/blend.py): the sum of
each feature's contribution, scaled per group (relevance, preference, popularity) by the request's weights.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from core.errors import InvalidEvent, StoreError
from core.personal_blend import BIAS_COMPONENT, BLEND_FEATURES, COMPONENT_NAMES
from core.settings import Settings

from ..catalog.store import CatalogStore, Entries
from ..fusion import Component, Fused
from .blend import BlendModel
from .events import Event, validate
from .profile import UserProfile, features
from .store_interface import ProductFigures, ProfileStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Popularity:
    """What all users bought, per product and per category, as read from the store at one moment."""

    figures: dict[str, ProductFigures]  # product id -> (purchases, reorders), products in the catalog only
    category_purchases: dict[str, float]

    @classmethod
    def empty(cls) -> "Popularity":
        return cls({}, {})

    @classmethod
    def of(cls, figures: dict[str, ProductFigures], products: Entries) -> "Popularity":
        """From the store's product figures and those of the products the catalog still holds."""
        kept: dict[str, ProductFigures] = {}
        category_purchases: dict[str, float] = {}
        for product in products.products:
            kept[product.product_id] = figures[product.product_id]
            if product.category:
                category_purchases[product.category] = (category_purchases.get(product.category, 0.0)
                                                        + figures[product.product_id][0])
        return cls(kept, category_purchases)

    def purchases_of(self, ids: Sequence[str]) -> np.ndarray:
        """Purchase events of each product."""
        return np.array([self.figures[pid][0] if pid in self.figures else 0.0 for pid in ids], dtype=np.float64)


class NeverBack:
    """The highest wall-clock time read so far, moved on by the monotonic clock since: a time that does not go back
    when the wall clock steps back (NTP, a virtual machine restored, an operator), so that an event stamped with the
    time this service read a moment before is not refused as being in the future."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._high: tuple[float, float] | None = None  # the highest wall-clock time read, and the monotonic time then

    def __call__(self, wall: float) -> float:
        """The later of `wall` (the wall clock now) and the highest wall-clock time read, moved on since."""
        steady = self._monotonic()
        if self._high is not None:
            moved_on = self._high[0] + (steady - self._high[1])
            if moved_on > wall:
                return moved_on
        self._high = (wall, steady)
        return wall


def user_key(user_id: str, key: bytes) -> str:
    """A keyed hash of a user id: what logs carry instead of the id."""
    return "u:" + hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()[:16]


class Personalizer:
    """Records feedback events and blends a user's preferences into a relevance order."""

    def __init__(self, store: ProfileStore, catalog: CatalogStore, blend: BlendModel | None, settings: Settings,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.catalog = catalog
        self.model = blend
        self.settings = settings
        self.clock = clock
        self._never_back = NeverBack()
        # Popularity, read from the store as a whole and kept here so that a search reads none of it: purchase
        # events and reorders per product, purchases per category. Read before the first search, then in the
        # background (a search never waits) after this replica records events or popularity_refresh_s after the
        # last read, for other replicas' events.
        self._popularity = Popularity.empty()
        self._popularity_read_at: float | None = None
        self._popularity_changed = False
        self._refreshing: asyncio.Task | None = None

    async def check(self, event: Event) -> Event:
        """The event with its product's category filled in; InvalidEvent if it cannot be recorded."""
        [checked] = await self.check_all([event])
        if isinstance(checked, InvalidEvent):
            raise checked
        return checked

    async def check_all(self, events: Sequence[Event]) -> list[Event | InvalidEvent]:
        """Each event with its product's category filled in, or the InvalidEvent saying why it cannot be recorded,
        in the order given; the catalog is read once for all of them."""
        now = self.clock()
        latest, future_s = self._never_back(now), self.settings.max_event_future_s
        checked: list[Event | InvalidEvent] = []
        for event in events:  # a malformed id never reaches the catalog
            try:
                validate(event, lambda _: True, now, future_s, latest)
                checked.append(event)
            except InvalidEvent as error:
                checked.append(error)
        ids = list(dict.fromkeys(item.product_id for item in checked if isinstance(item, Event)))
        found = await self.catalog.fetch(ids) if ids else None
        categories = {product.product_id: product.category for product in found.products} if found else {}
        for position, item in enumerate(checked):
            if isinstance(item, Event):
                try:
                    validate(item, categories.__contains__, now, future_s, latest)
                    checked[position] = replace(item, category=categories[item.product_id])
                except InvalidEvent as error:
                    checked[position] = error
        return checked

    async def record(self, events: Sequence[Event], checked: bool = False) -> list[bool]:
        """Validate (unless `checked` says they passed `check`) then durably record the events; True for each new one.
        InvalidEvent names the first bad one, and then nothing is recorded."""
        if not checked:
            results = await self.check_all(events)
            for item in results:
                if isinstance(item, InvalidEvent):
                    raise item
            events = [item for item in results if isinstance(item, Event)]
        added = await self.store.append(list(events))
        if any(added):
            self._popularity_changed = True
        return added

    async def popularity(self) -> Popularity:
        """The store's popularity figures as last read; the first call reads them, later ones start a background
        read when this replica recorded events since, or popularity_refresh_s passed."""
        if self._popularity_read_at is None:
            await self._read_popularity()
        elif ((self._popularity_changed
               or time.monotonic() - self._popularity_read_at > self.settings.popularity_refresh_s)
              and (self._refreshing is None or self._refreshing.done())):
            self._refreshing = asyncio.create_task(self._read_popularity(background=True))
        return self._popularity

    async def _read_popularity(self, background: bool = False) -> None:
        read_at, self._popularity_changed = time.monotonic(), False
        try:
            figures = await self.store.product_figures()
        except StoreError as error:
            if not background:
                raise
            self._popularity_changed = True  # try again at the next search
            log.warning("popularity not refreshed, kept from %.0f s ago: %s", read_at - self._popularity_read_at, error)
            return
        products = await self.catalog.fetch(list(figures))
        self._popularity, self._popularity_read_at = Popularity.of(figures, products), read_at

    async def forget(self, user_id: str) -> int:
        """Delete everything the store holds of the user; the number of events deleted."""
        if not user_id:
            raise InvalidEvent("user_id is missing")
        return await self.store.forget(user_id)

    async def profile(self, user_id: str) -> UserProfile | None:
        """The user's profile from the store, or None when the user has no usable events (cold start)."""
        events = await self.store.user_events(user_id, self.settings.max_profile_events)
        if not events:
            return None
        found = await self.catalog.fetch(list(dict.fromkeys(event.product_id for event in events)), ("dense",))
        products = {product.product_id: product for product in found.products}
        vectors = dict(zip(found.ids, found.vectors["dense"]))
        profile = UserProfile.from_events(events, self.clock(), vectors.get, products.get)
        return None if profile.is_cold else profile

    @staticmethod
    def touched_ids(profile: UserProfile) -> list[str]:
        """The products the user bought, carted or clicked."""
        return sorted(set(profile.purchases) | set(profile.clicks_carts))

    def _candidates(self, candidates: Entries, relevance: Fused, pool: Fused, profile: UserProfile | None,
                    depth: int, matching: np.ndarray | None, purchases: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """The head's rows, and the pool positions of the user's own and the most bought candidates below it
        (those that match the query, when `matching` is given)."""
        settings = self.settings
        head = relevance.rows if relevance is not pool else pool.rows[: max(settings.blend_depth, depth)]
        in_head = set(head.tolist())
        own_ids = set(self.touched_ids(profile)) if profile is not None else set()
        touched = {row for row, product in enumerate(candidates.products) if product.product_id in own_ids}
        own = [position for position, row in enumerate(pool.rows.tolist())
               if row in touched and row not in in_head and (matching is None or matching[row])]
        popular = []
        if settings.popular_depth:
            scanned = pool.rows[: settings.popularity_scan]
            counts = purchases[scanned]
            if matching is not None:
                counts = np.where(matching[scanned], counts, 0.0)
            eligible = np.flatnonzero((counts > 0) & ~np.isin(scanned, head) & ~np.isin(scanned, list(touched)))
            popular = eligible[np.lexsort((eligible, -counts[eligible]))][: settings.popular_depth].tolist()
        return head, sorted(set(own) | set(popular))

    async def blend(self, candidates: Entries, relevance: Fused, pool: Fused, profile: UserProfile | None,
                    weights: dict[str, float] | None = None, explain: bool = False, depth: int = 0,
                    matching: np.ndarray | None = None) -> Fused:
        """Re-order the relevance head, the user's own candidates and the most bought ones by the blend model.

        Rows are positions in `candidates` (fetched with their "dense" vectors). `relevance` is the order the pipeline would serve without personalization; `pool` is the fused order of
        every candidate (the same list when nothing was reranked, then its first max(blend_depth, depth) form the
        head). Further down the pool, the user's own products and the `popular_depth` most bought of the first
        `popularity_scan` candidates join the head, ranked by their place in the pool. Without a blend model the
        relevance order is kept and, with `explain`, the features are shown with no contribution (how the blend's
        training data is read).

        `matching` (a mask over the candidates; None: every candidate) says which candidates may carry the user's and
        the shop's signals: the others are blended as for an anonymous user with no popularity figures, so a user's
        own or a popular product that does not match the query cannot overtake those that do. (The blend is learned
        from aisle searches, where every candidate matches and relevance tells little apart.)
        """
        popularity = await self.popularity()
        head, extra = self._candidates(candidates, relevance, pool, profile, depth, matching,
                                       popularity.purchases_of(candidates.ids))
        rows = np.concatenate([head, pool.rows[extra]]).astype(np.int64)
        relevance_scores = np.concatenate([relevance.scores[: len(head)], pool.scores[extra]])
        ranks = np.concatenate([np.arange(1, len(head) + 1), np.asarray(extra, dtype=np.int64) + 1]).astype(np.float64)

        products = [candidates.products[row] for row in rows.tolist()]
        stats = {product.product_id: popularity.figures[product.product_id]
                 for product in products if product.product_id in popularity.figures}
        embeddings = candidates.vectors["dense"][rows]
        X = features(profile, self.clock(), products, embeddings, stats, popularity.category_purchases,
                     relevance_scores, ranks)
        if matching is not None and not matching[rows].all():
            neutral = ~matching[rows]
            X[neutral] = features(None, self.clock(), products, embeddings, {}, {}, relevance_scores, ranks)[neutral]
        if self.model is None:  # the relevance order, as it was
            scores = relevance_scores.astype(np.float64)
            contributions = np.zeros((len(rows), len(BLEND_FEATURES) + 1))
            order = np.argsort(ranks, kind="stable")
        else:
            scores, contributions = self.model.score(X, weights)
            order = np.lexsort((rows, -scores))
        components = _components(relevance, pool, len(head), extra, order) if explain else ()
        if explain:
            components += tuple(
                Component(name, X[order, column].astype(np.float64), np.zeros(len(rows), np.int64),
                          contributions[order, column])
                for column, name in enumerate(COMPONENT_NAMES)
            ) + (Component(BIAS_COMPONENT, np.zeros(len(rows)), np.zeros(len(rows), np.int64),
                           contributions[order, -1]),)
        return Fused(rows[order], scores[order], components)


def _components(relevance: Fused, pool: Fused, head: int, extra: list[int], order: np.ndarray) -> tuple[Component, ...]:
    """The relevance components of the blended rows, kept for their raw values and ranks; they add to the score
    only through the blend's relevance features, so their contribution here is 0."""
    pooled = {component.name: component for component in pool.components}
    result = []
    for component in relevance.components:
        raw = component.raw[:head]
        rank = component.rank[:head]
        if component.name in pooled:
            raw = np.concatenate([raw, pooled[component.name].raw[extra]])
            rank = np.concatenate([rank, pooled[component.name].rank[extra]])
        else:  # the reranker and match features score only the head
            raw = np.concatenate([raw, np.full(len(extra), np.nan)])
            rank = np.concatenate([rank, np.zeros(len(extra), np.int64)])
        result.append(Component(component.name, raw[order], rank[order], np.zeros(len(order))))
    return tuple(result)
