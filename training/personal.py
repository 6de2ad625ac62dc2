"""`shoprank eval personal` and the blend's training data: replay users' past orders, then search their next one.

For each user of an events file (FORMATS.md: user_id, product_id, event, day; order_id where known):
1. every order but the last is replayed, in order, through one FeedbackStream per user;
2. for each category (aisle) of the last order, the category's name is searched with the user id, filtered to that
   category's products;
3. the products the user bought in that last order are the relevant ones (gain 1).
Every user is replayed before any search, so popularity counts every replayed history. Day d of a user becomes the
time anchor + d days, where the anchor puts the last order's day at today: recency is measured from the search.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc
from core.catalog import Product, cell_text, read_table
from core.errors import DataError
from core.metrics import ndcg_at_k, recall_at_k
from core.personal_blend import COMPONENT_NAMES
from core.stats import paired_bootstrap

DAY = 86400.0
_TYPES = {"view": ranking_pb2.EVENT_TYPE_VIEW, "click": ranking_pb2.EVENT_TYPE_CLICK,
          "cart": ranking_pb2.EVENT_TYPE_CART, "purchase": ranking_pb2.EVENT_TYPE_PURCHASE}


@dataclass(frozen=True)
class LoggedEvent:
    line: int
    product_id: str
    type: str
    day: int
    order: str  # order id, or the day when the file has none
    query: str = ""


@dataclass
class UserHistory:
    """One user's events: the replayed past and the last order, whose aisles are searched."""

    user_id: str
    past: list[LoggedEvent] = field(default_factory=list)
    last_order: list[LoggedEvent] = field(default_factory=list)

    def queries(self, category_of: dict[str, str]) -> list[tuple[str, set[str]]]:
        """(category, products bought in it) for each category of the last order, in order of first appearance."""
        bought: dict[str, set[str]] = {}
        for event in self.last_order:
            if event.type == "purchase" and category_of.get(event.product_id):
                bought.setdefault(category_of[event.product_id], set()).add(event.product_id)
        return list(bought.items())


def load_histories(path: Path) -> dict[str, UserHistory]:
    """Each user's events split into past orders and the last one; DataError names a bad line."""
    rows: dict[str, list[LoggedEvent]] = defaultdict(list)
    for line, row in read_table(Path(path), ("user_id", "product_id", "event", "day"), "events"):
        user, product, kind = cell_text(row["user_id"]), cell_text(row["product_id"]), cell_text(row["event"])
        if not user or not product:
            raise DataError(f"events {path} line {line}: empty user_id or product_id")
        if kind not in _TYPES:
            raise DataError(f"events {path} line {line}: event {kind!r} is not one of {', '.join(_TYPES)}")
        try:
            day = int(float(row["day"]))
        except (TypeError, ValueError):
            raise DataError(f"events {path} line {line}: day {row['day']!r} is not a whole number") from None
        order = cell_text(row.get("order_id")) or f"day {day}"
        rows[user].append(LoggedEvent(line, product, kind, day, order, cell_text(row.get("query"))))
    if not rows:
        raise DataError(f"events {path}: no rows")
    histories = {}
    for user, events in rows.items():
        events.sort(key=lambda event: (event.day, event.line))
        last = events[-1].order
        history = UserHistory(user)
        for event in events:
            (history.last_order if event.order == last else history.past).append(event)
        histories[user] = history
    return histories


def replay_messages(history: UserHistory, now: float) -> list[ranking_pb2.FeedbackEvent]:
    """The user's past as feedback events, the last order's day mapped to today (whole days kept whole)."""
    last_day = history.last_order[0].day if history.last_order else max((e.day for e in history.past), default=0)
    anchor = math.floor(now / DAY) * DAY - last_day * DAY
    messages = []
    for position, event in enumerate(history.past):
        moment = anchor + event.day * DAY + min(position, 80_000) * 0.001  # row order within a day, same day
        message = ranking_pb2.FeedbackEvent(event_id=f"replay:{history.user_id}:{event.line}", user_id=history.user_id,
                                            product_id=event.product_id, type=_TYPES[event.type], query=event.query)
        message.time.FromNanoseconds(int(moment * 1e9))
        messages.append(message)
    return messages


async def replay(stub: ranking_pb2_grpc.RankingStub, histories: dict[str, UserHistory], catalog_ids: set[str],
                 show_progress: bool = True) -> dict[str, int]:
    """Send every user's past through FeedbackStream; counts of events sent, accepted and rejected."""
    now = time.time()
    totals = Counter()
    for history in tqdm(histories.values(), desc="replay", unit="user", disable=not show_progress):
        messages = [m for m in replay_messages(history, now) if m.product_id in catalog_ids]
        totals["skipped_not_in_catalog"] += len(history.past) - len(messages)

        async def stream(messages=messages):
            for message in messages:
                yield message

        result = await stub.FeedbackStream(stream(), timeout=600)
        totals["sent"] += result.received
        totals["accepted"] += result.accepted
        totals["rejected"] += result.rejected
    return dict(totals)


def search_request(category: str, user_id: str, top_k: int = 10, explain: bool = False,
                   filtered: bool = True) -> ranking_pb2.SearchRequest:
    """The category's name, searched over that category's products only (or, unfiltered, over the whole catalog)."""
    filters = [ranking_pb2.Filter(field="category", any_of=[category])] if filtered else []
    return ranking_pb2.SearchRequest(query=category, user_id=user_id, top_k=top_k, explain=explain, filters=filters)


def purchase_count_order(history: UserHistory, products: list[Product], popularity: Counter) -> list[str]:
    """The reference ranking: how often this user bought each product, ties by popularity, then id."""
    bought = Counter(e.product_id for e in history.past if e.type == "purchase")
    ranked = sorted(products, key=lambda p: (-bought[p.product_id], -popularity[p.product_id], p.product_id))
    return [product.product_id for product in ranked]


async def evaluate_personal(stub: ranking_pb2_grpc.RankingStub, histories: dict[str, UserHistory],
                            products: list[Product], show_progress: bool = True) -> dict[str, Any]:
    """Replay, then search each user's last-order categories with and without the user id; nDCG@10 and recall@10."""
    catalog_ids = {product.product_id for product in products}
    category_of = {product.product_id: product.category for product in products}
    by_category: dict[str, list[Product]] = defaultdict(list)
    for product in products:
        by_category[product.category].append(product)
    replayed = await replay(stub, histories, catalog_ids, show_progress)
    popularity = Counter(e.product_id for h in histories.values() for e in h.past if e.type == "purchase")

    figures: dict[str, list[float]] = defaultdict(list)
    latencies: dict[str, list[float]] = defaultdict(list)
    degraded = 0
    users = set()
    searches = [(history, category, bought) for history in histories.values()
                for category, bought in history.queries(category_of)]
    for history, category, bought in tqdm(searches, desc="search", unit="query", disable=not show_progress):
        judged = dict.fromkeys(bought, 1.0)
        started = time.perf_counter()
        personal = await stub.Search(search_request(category, history.user_id), timeout=60)
        middle = time.perf_counter()
        plain = await stub.Search(search_request(category, ""), timeout=60)
        latencies["personal"].append((middle - started) * 1000)
        latencies["nonpersonal"].append((time.perf_counter() - middle) * 1000)
        degraded += personal.degraded
        ranked = [item.product_id for item in personal.items]
        figures["personal"].append(ndcg_at_k(ranked, judged, 10))
        figures["recall"].append(recall_at_k(ranked, judged, 10))
        figures["nonpersonal"].append(ndcg_at_k([item.product_id for item in plain.items], judged, 10))
        reference = purchase_count_order(history, by_category[category], popularity)
        figures["purchase_count"].append(ndcg_at_k(reference, judged, 10))
        figures["popularity"].append(ndcg_at_k(sorted((p.product_id for p in by_category[category]),
                                                      key=lambda pid: (-popularity[pid], pid)), judged, 10))
        users.add(history.user_id)
    mean = {name: round(float(np.mean(values)), 4) if values else None for name, values in figures.items()}
    return {
        "ndcg@10": mean["personal"],
        "ndcg@10_nonpersonal": mean["nonpersonal"],
        "recall@10": mean["recall"],
        "queries": len(figures["personal"]),
        "users": len(users),
        "ndcg@10_purchase_count": mean["purchase_count"],
        "ndcg@10_popularity": mean["popularity"],
        "personal_vs_purchase_count": paired_bootstrap(figures["personal"], figures["purchase_count"]).text(),
        "personal_vs_nonpersonal": paired_bootstrap(figures["personal"], figures["nonpersonal"]).text(),
        "degraded": degraded,
        **{f"search_p{q}_ms{'' if kind == 'personal' else '_nonpersonal'}": round(float(np.percentile(values, q)), 1)
           for kind, values in latencies.items() for q in (50, 99)},
        "replayed": replayed,
    }


async def collect_blend_data(stub: ranking_pb2_grpc.RankingStub, histories: dict[str, UserHistory],
                             products: list[Product], show_progress: bool = True,
                             searches: tuple[str, ...] = ("filtered",), unfiltered_every: int = 6,
                             ) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """Replay, then read each search's blend features (core/personal_blend.py's COMPONENT_NAMES) from its explanation:
    (query id, user, X, labels) per search.

    "filtered" searches are the evaluation's (the aisle's name over the aisle); "unfiltered" ones, for every
    `unfiltered_every`-th of them, search the aisle's name over the whole catalog with the same relevant products,
    so that the blend also learns from searches where relevance tells products apart and the user's own or popular
    products of other aisles are wrong answers. The service must run without a blend model, so the order it
    explains is the relevance order the blend re-ranks.
    """
    catalog_ids = {product.product_id for product in products}
    category_of = {product.product_id: product.category for product in products}
    await replay(stub, histories, catalog_ids, show_progress)
    groups_out = []
    planned = [(history, category, bought) for history in histories.values()
               for category, bought in history.queries(category_of)]
    planned = ([(*search, True) for search in planned] if "filtered" in searches else []) + \
              ([(*search, False) for search in planned[::unfiltered_every]] if "unfiltered" in searches else [])
    for history, category, bought, filtered in tqdm(planned, desc="collect", unit="query", disable=not show_progress):
        request = search_request(category, history.user_id, top_k=1000, explain=True, filtered=filtered)
        response = await stub.Search(request, timeout=120)
        rows, labels = [], []
        for item in response.items:
            raw = {component.name: component.raw for component in item.components}
            if COMPONENT_NAMES[0] not in raw:
                continue  # not in the blended set
            rows.append([raw.get(name, float("nan")) for name in COMPONENT_NAMES])
            labels.append(1.0 if item.product_id in bought else 0.0)
        if rows:
            groups_out.append((f"{history.user_id}:{category}" + ("" if filtered else ":unfiltered"), history.user_id,
                               np.asarray(rows, dtype=np.float32), np.asarray(labels, dtype=np.float32)))
    return groups_out
