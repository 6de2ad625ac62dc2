"""The figures of an experiment and the test that decides it, fixed before it starts.

An experiment is looked at after every query (`experiment status`, the rollout guard), so a test that assumes one
look at a planned size would decide far too often. Both methods use a mixture sequential probability ratio test
(mSPRT; Robbins 1970, Johari, Pekelis and Walsh 2017): the likelihood ratio of "the arms differ" (averaged over a
prior on the difference) against "they do not". Under no difference it is a martingale, so by Ville's inequality it
ever reaches 1/alpha with probability at most alpha, however often it is looked at: an A/A experiment decides
something in at most 5% of runs at alpha = 0.05, checked by simulation in benchmarks/interleaving_sim.py.

    interleaving   each query with decisive clicks is a win or a loss for the treatment; under no difference a win
                   has probability 1/2. The mixture is Beta(a, a) on that probability, so the ratio is exact:
                       Lambda = B(a + wins, a + losses) / B(a, a) * 2^(wins + losses)
    A/B            clicks in the top 10 per search, each arm's mean; the mixture is normal on the difference of
                   means with spread tau^2 = rho * V (V: the variance of one pair of searches, one per arm), which
                   makes the ratio depend only on the z statistic and the number of pairs n:
                       log Lambda = -1/2 log(1 + n rho) + n rho / (1 + n rho) * z^2 / 2
                   with the variances estimated as the experiment runs (so not exact for few searches: it waits for
                   MIN_AB_SEARCHES per arm).

An A/B test assigns shoppers to arms, not searches: a shopper who clicks much does so in each of their searches, so
one shopper's searches are not independent draws, and a test that counted them as such would see differences
between arms that are only differences between their shoppers (an A/A test then decides too often). The arms'
figures are therefore kept per unit of assignment (`ShopperMoments`: sums over units of searches and counts, their
squares and product), and the variance of the ratio "clicks per search" is the delta method's over those units
(Deng, Knoblich and Lu 2018, "Applying the Delta Method in Metric Analytics"). A unit is a bucket of shoppers (a
hash of the shopper, SHOPPER_BUCKETS per arm): a bucket's shoppers are a random sample, so buckets are independent like
shoppers are, and the state stays the same size however many shoppers come. When every unit is one search the
variance is the per-search one above.

The 95% intervals in the figures are for reading one look; the decision is the sequential test's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Protocol

ALPHA = 0.05
Z95 = 1.959963984540054
# Beta(a, a) has spread 1 / (2 sqrt(2a + 1)): a = 12 puts the treatment's share of wins mostly within 0.5 +- 0.2.
INTERLEAVING_PRIOR_A = 12.0
# The A/B mixture's spread: differences of about 5% of a pair's standard deviation (tau^2 = rho * V).
AB_PRIOR_RHO = 0.05 ** 2
MIN_AB_SEARCHES = 100  # searches, and units of assignment, per arm before the A/B test looks
SHOPPER_BUCKETS = 1000  # units of shoppers per A/B arm

BETTER = "treatment better"
WORSE = "treatment worse"
UNDECIDED = "undecided"


@dataclass(frozen=True)
class Decision:
    outcome: str  # BETTER, WORSE or UNDECIDED
    log_ratio: float  # the test's log likelihood ratio now; it decides at log(1 / alpha)
    threshold: float

    @property
    def decided(self) -> bool:
        return self.outcome != UNDECIDED


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion; (0, 1) without trials."""
    if trials <= 0:
        return 0.0, 1.0
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z / (1 + z * z / trials) * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def interleaving_log_ratio(wins: int, losses: int, a: float = INTERLEAVING_PRIOR_A) -> float:
    """log Lambda of the Beta(a, a) mixture against a fair coin, after `wins` and `losses`."""
    return (math.lgamma(a + wins) + math.lgamma(a + losses) - math.lgamma(2 * a + wins + losses)
            - (2 * math.lgamma(a) - math.lgamma(2 * a)) + (wins + losses) * math.log(2.0))


def normal_log_ratio(z: float, pairs: float, rho: float = AB_PRIOR_RHO) -> float:
    """log Lambda of the normal mixture for a difference of means with z statistic `z` over `pairs` pairs."""
    spread = pairs * rho
    return -0.5 * math.log1p(spread) + spread / (1.0 + spread) * z * z / 2.0


def _decide(log_ratio: float, direction: float, alpha: float) -> Decision:
    threshold = math.log(1.0 / alpha)
    outcome = UNDECIDED if log_ratio < threshold or direction == 0 else BETTER if direction > 0 else WORSE
    return Decision(outcome, log_ratio, threshold)


@dataclass
class InterleavingTally:
    """An interleaving experiment's queries: shown, and those whose clicks favoured an arm or tied."""

    shown: int = 0
    wins: int = 0  # the treatment's products got more of the query's clicks
    losses: int = 0  # the control's did
    ties: int = 0  # clicked, evenly

    def add(self, outcome: int, was: int | None = None) -> None:
        """One clicked query's outcome (+1 win, -1 loss, 0 tie); `was`: its outcome before this click, when it
        had been counted already (a later click can change a query's outcome)."""
        if was is not None:
            self._count(was, -1)
        self._count(outcome, +1)

    def _count(self, outcome: int, step: int) -> None:
        if outcome > 0:
            self.wins += step
        elif outcome < 0:
            self.losses += step
        else:
            self.ties += step

    def decision(self, alpha: float = ALPHA) -> Decision:
        return _decide(interleaving_log_ratio(self.wins, self.losses), self.wins - self.losses, alpha)

    def figures(self, alpha: float = ALPHA) -> dict:
        """What `experiment status` shows: counts, the treatment's share of decisive queries and the preference
        delta (wins - losses over clicked queries), each with a 95% interval, and the decision."""
        decisive, clicked = self.wins + self.losses, self.wins + self.losses + self.ties
        share_low, share_high = wilson(self.wins, decisive)
        delta = (self.wins - self.losses) / clicked if clicked else 0.0
        # Each clicked query scores +1, -1 or 0: the delta is their mean, its variance from those values.
        spread = math.sqrt(max(decisive / clicked - delta * delta, 0.0) / clicked) if clicked else math.inf
        decision = self.decision(alpha)
        return {**asdict(self), "clicked": clicked,
                "treatment_share": self.wins / decisive if decisive else math.nan,
                "treatment_share_95": [share_low, share_high],
                "delta": delta, "delta_95": [delta - Z95 * spread, delta + Z95 * spread],
                "decision": decision.outcome, "log_ratio": decision.log_ratio, "threshold": decision.threshold}


@dataclass
class Moments:
    """Count, sum and sum of squares of one figure per search, each search an independent unit (the simulation's
    shoppers who all click alike; `ShopperMoments` is the service's)."""

    n: int = 0
    total: float = 0.0
    squares: float = 0.0

    def add(self, value: float) -> None:
        self.n += 1
        self.total += value
        self.squares += value * value

    def change(self, before: float, after: float) -> None:
        """One counted search's value changed (another click arrived)."""
        self.total += after - before
        self.squares += after * after - before * before

    @property
    def units(self) -> int:
        """Each search is its own unit."""
        return self.n

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        if self.n < 2:
            return math.nan
        return max(self.squares - self.total * self.total / self.n, 0.0) / (self.n - 1)

    def interval(self, z: float = Z95) -> list[float]:
        if self.n < 2:
            return [math.nan, math.nan]
        half = z * math.sqrt(self.variance / self.n)
        return [self.mean - half, self.mean + half]


@dataclass
class ShopperMoments:
    """One figure per search (clicks in the top 10, purchases) of an arm whose units are buckets of shoppers: over
    the units, the sums of searches s and of the figure's count c, of their squares and of their product. `mean` is
    the ratio sum(c) / sum(s); `variance` is per search, with the delta method's variance of that ratio
    (`variance / n` is its squared standard error), so that `ab_decision` treats it like `Moments`."""

    units: int = 0  # units with a search
    searches: float = 0.0
    total: float = 0.0
    searches_squares: float = 0.0
    squares: float = 0.0
    cross: float = 0.0  # sum of s * c

    def change(self, before: tuple[float, float], after: tuple[float, float]) -> None:
        """One unit's (searches, count) changed from `before` to `after` ((0, 0): a new unit)."""
        (s0, c0), (s1, c1) = before, after
        if s0 == 0 and s1 > 0:
            self.units += 1
        self.searches += s1 - s0
        self.total += c1 - c0
        self.searches_squares += s1 * s1 - s0 * s0
        self.squares += c1 * c1 - c0 * c0
        self.cross += s1 * c1 - s0 * c0

    @property
    def n(self) -> int:
        return int(self.searches)

    @property
    def mean(self) -> float:
        return self.total / self.searches if self.searches else math.nan

    @property
    def variance(self) -> float:
        if self.units < 2:
            return math.nan
        k = self.units
        ratio = self.mean
        var_s = (self.searches_squares - self.searches * self.searches / k) / (k - 1)
        var_c = (self.squares - self.total * self.total / k) / (k - 1)
        cov = (self.cross - self.total * self.searches / k) / (k - 1)
        mean_s = self.searches / k
        ratio_variance = max(var_c - 2.0 * ratio * cov + ratio * ratio * var_s, 0.0) / (k * mean_s * mean_s)
        return ratio_variance * self.searches

    def interval(self, z: float = Z95) -> list[float]:
        if self.units < 2:
            return [math.nan, math.nan]
        half = z * math.sqrt(self.variance / self.searches)
        return [self.mean - half, self.mean + half]

    @classmethod
    def from_json(cls, data: dict) -> "ShopperMoments":
        """Saved figures; those of a state from before shopper units (`Moments`: each search was its own unit) keep
        their values as that many one-search units."""
        if "units" in data:
            return cls(**data)
        n, total = data.get("n", 0), data.get("total", 0.0)
        return cls(units=n, searches=n, total=total, searches_squares=n, squares=data.get("squares", 0.0), cross=total)


@dataclass
class ArmTally:
    """One A/B arm's searches, clicks in the top 10 and purchases: per bucket of shoppers ([searches, clicks,
    purchases] each; none kept once the experiment stops), and their moments over the buckets."""

    clicks: ShopperMoments = field(default_factory=ShopperMoments)
    purchases: ShopperMoments = field(default_factory=ShopperMoments)
    buckets: list[list[int]] = field(default_factory=lambda: [[0, 0, 0] for _ in range(SHOPPER_BUCKETS)])

    @classmethod
    def empty(cls) -> "ArmTally":
        return cls()

    @classmethod
    def from_json(cls, data: dict) -> "ArmTally":
        buckets = data.get("buckets")
        if buckets is None:  # a state from before shopper units
            buckets = [[0, 0, 0] for _ in range(SHOPPER_BUCKETS)]
        if buckets and (len(buckets) != SHOPPER_BUCKETS or any(len(bucket) != 3 for bucket in buckets)):
            raise ValueError(f"an A/B arm has {len(buckets)} buckets of shoppers, not {SHOPPER_BUCKETS} of 3 counts")
        return cls(ShopperMoments.from_json(data["clicks"]), ShopperMoments.from_json(data["purchases"]),
                   [[int(value) for value in bucket] for bucket in buckets])

    def to_json(self) -> dict:
        return {"clicks": asdict(self.clicks), "purchases": asdict(self.purchases), "buckets": self.buckets}

    def add_search(self, bucket: int) -> None:
        self._add(bucket, searches=1)

    def add_click(self, bucket: int) -> None:
        self._add(bucket, clicks=1)

    def add_purchase(self, bucket: int) -> None:
        self._add(bucket, purchases=1)

    def _add(self, bucket: int, searches: int = 0, clicks: int = 0, purchases: int = 0) -> None:
        counts = self.buckets[bucket]
        before = list(counts)
        counts[0] += searches
        counts[1] += clicks
        counts[2] += purchases
        self.clicks.change((before[0], before[1]), (counts[0], counts[1]))
        self.purchases.change((before[0], before[2]), (counts[0], counts[2]))

    def figures(self) -> dict:
        return {"searches": self.clicks.n, "shopper_buckets": self.clicks.units,
                "clicks_per_search": self.clicks.mean, "clicks_per_search_95": self.clicks.interval(),
                "purchases_per_search": self.purchases.mean, "purchases_per_search_95": self.purchases.interval()}


class PerSearch(Protocol):
    """What `ab_decision` reads of an arm: searches, units of assignment, the mean figure per search and its
    variance per search."""

    @property
    def n(self) -> int: ...

    @property
    def units(self) -> int: ...

    @property
    def mean(self) -> float: ...

    @property
    def variance(self) -> float: ...


def ab_decision(control: PerSearch, treatment: PerSearch, alpha: float = ALPHA) -> Decision:
    """The normal mSPRT on the difference of the arms' means (treatment - control)."""
    threshold = math.log(1.0 / alpha)
    if min(control.n, treatment.n, control.units, treatment.units) < MIN_AB_SEARCHES:
        return Decision(UNDECIDED, 0.0, threshold)
    variance = control.variance / control.n + treatment.variance / treatment.n
    pair_variance = control.variance + treatment.variance
    if not (variance > 0.0 and pair_variance > 0.0):  # also NaN: no variance to test with
        return Decision(UNDECIDED, 0.0, threshold)
    difference = treatment.mean - control.mean
    z = difference / math.sqrt(variance)
    return _decide(normal_log_ratio(z, pair_variance / variance), difference, alpha)
