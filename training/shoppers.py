"""Shoppers who differ, fitted to a purchase log: how much more one shopper acts than another, and how many
searches a shopper makes while an experiment runs.

The click model (training/click_model.py) draws every simulated shopper alike. Real shoppers are not: some click
and buy much, some little, and they come back. That difference is what makes an A/B test noisy (it compares
different shoppers) and what interleaving cancels (it shows both rankings to the same shopper on the same query).
The interleaving simulation (benchmarks/interleaving_sim.py --shoppers FILE) takes both from here:

    activity    each shopper's click chances are the model's times a factor of mean 1 drawn from a gamma
                distribution, of variance `activity_variance`: the variance between shoppers of their mean number
                of items per order, over its mean squared, less what each shopper's own few orders add by chance
                (a method of moments: Var(mean_u) - E[s_u^2 / n_u], over the mean squared)
    searches    per shopper, the number of orders placed in an experiment's `days`-day window, over every window
                start of every shopper's history in which they ordered at least once, times `searches_per_order`
                (1 by default: one search per order, the fewest an order can take)

The log is one of the formats of ../shared/data/FORMATS.md (user_id, order_id, day, product_id, event), such as
Instacart's purchases. Groceries are not every shop, and an order is not a search: the figures say how a
difference between shoppers of this size changes the experiments, not what a given shop's shoppers do.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import InvalidRequest

DAYS = 14  # an experiment's length: two weeks, a common run of an online experiment


@dataclass(frozen=True)
class Shoppers:
    """A population of shoppers: the variance of their activity factor and their searches per experiment."""

    activity_variance: float
    searches: tuple[int, ...]  # an empirical distribution: one value per (shopper, window) that ordered
    source: str
    days: int = DAYS
    searches_per_order: int = 1

    def factors(self, bins: int, seed: int = 0) -> np.ndarray:
        """The activity factor of each of `bins` equally likely bins: the mean of the gamma distribution over each
        bin's stretch of quantiles (from 200,000 draws; the factors' mean stays 1). All 1 for shoppers who do not
        differ."""
        if self.activity_variance <= 0:
            return np.ones(bins)
        draws = np.sort(np.random.default_rng(seed).gamma(1.0 / self.activity_variance, self.activity_variance,
                                                           200_000))
        factors = np.array([chunk.mean() for chunk in np.array_split(draws, bins)])
        return factors / factors.mean()

    def summary(self) -> dict:
        values = np.asarray(self.searches)
        return {"source": self.source, "activity_variance": round(self.activity_variance, 4), "days": self.days,
                "searches_per_order": self.searches_per_order,
                "searches_per_shopper": {"mean": round(float(values.mean()), 3),
                                         "p50": float(np.percentile(values, 50)),
                                         "p90": float(np.percentile(values, 90)), "max": int(values.max())}}


def fit(events: Path, days: int = DAYS, searches_per_order: int = 1) -> Shoppers:
    """The population of the purchase log `events` (a CSV with user_id, order_id, day and event columns)."""
    if days < 1 or searches_per_order < 1:
        raise InvalidRequest("the window must be at least 1 day and an order at least 1 search")
    try:
        with open(events, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"user_id", "order_id", "day"} - set(reader.fieldnames or ())
            if missing:
                raise InvalidRequest(f"{events}: no column {', '.join(sorted(missing))}; a purchase log with orders "
                                     "is needed (../shared/data/FORMATS.md)")
            items: dict[tuple[str, str], int] = defaultdict(int)
            order_day: dict[tuple[str, str], float] = {}
            for row in reader:
                if row.get("event", "purchase") != "purchase":
                    continue
                key = (row["user_id"], row["order_id"])
                items[key] += 1
                order_day[key] = float(row["day"])
    except OSError as error:
        raise InvalidRequest(f"cannot read the purchase log {events}: {error.strerror or error}") from None
    except ValueError as error:
        raise InvalidRequest(f"{events}: a day that is not a number ({error})") from None
    per_user: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for (user, order), count in items.items():
        per_user[user].append((order_day[(user, order)], count))
    if len(per_user) < 2:
        raise InvalidRequest(f"{events}: orders of at least 2 shoppers are needed, found {len(per_user)}")
    return Shoppers(activity_variance(per_user), searches_per_window(per_user, days, searches_per_order),
                    str(events), days, searches_per_order)


def activity_variance(per_user: dict[str, list[tuple[float, int]]]) -> float:
    """The variance between shoppers of their mean items per order, net of each one's sampling noise, over the
    mean squared (0 when the shoppers do not differ more than chance)."""
    means, noise = [], []
    for orders in per_user.values():
        counts = np.array([count for _, count in orders], dtype=float)
        means.append(counts.mean())
        noise.append(counts.var(ddof=1) / len(counts) if len(counts) > 1 else 0.0)
    means_array = np.asarray(means)
    between = means_array.var(ddof=1) - float(np.mean(noise))
    return max(between, 0.0) / float(means_array.mean()) ** 2


def searches_per_window(per_user: dict[str, list[tuple[float, int]]], days: int,
                        searches_per_order: int) -> tuple[int, ...]:
    """Orders in each `days`-day window of each shopper's history (one window per whole day it can start on),
    those with an order, times `searches_per_order`."""
    counts: list[int] = []
    for orders in per_user.values():
        order_days = np.sort(np.array([day for day, _ in orders]))
        starts = np.arange(0.0, max(order_days[-1] - days, 0.0) + 1.0)
        in_window = np.searchsorted(order_days, starts + days, side="left") - np.searchsorted(order_days, starts,
                                                                                              side="left")
        counts.extend(int(count) * searches_per_order for count in in_window if count > 0)
    return tuple(counts)
