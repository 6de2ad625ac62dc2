"""How many queries an online experiment needs to decide, interleaved or A/B, and how often an A/A one decides
anything: judged queries replayed through the service, clicks drawn from a position-based click model, and the
service's own sequential tests (orchestrator/experiments/stats.py) deciding.

Usage:
    .venv/bin/python benchmarks/interleaving_sim.py [--control fused] [--treatment default] [--json] \
        [--experiments 200] [--max-queries-per-experiment 200000] [--seed 0] [--eta 1] [--epsilon 0.1] \
        [--max-gain G] [--target HOST:PORT | --model-repository model_repository/cpu [--reranker-version V]] \
        [--split dev] [--max-queries N] \
        [--catalog ../shared/data/home-depot-product-search-relevance/catalog.csv \
         --judgments ../shared/data/home-depot-product-search-relevance/judgments.csv]

1. Replay. Each judged query of the split asks the service (one started on the catalog, or the one at --target) for
   the control arm's top 10 and the treatment arm's, as an anonymous shopper with spelling correction as served.
   The shown products keep their judged gains (unjudged: 0). Queries whose judgments give no product a positive
   gain measure nothing and are left out, as in `shoprank eval`. Both arms' nDCG@10 with a paired bootstrap interval
   say how far apart the arms are.
2. Click model (position-based, training/click_model.py): a shopper examines rank r with probability (1/r)^eta
   (eta = 1, as Joachims, Swaminathan and Schnabel 2017 simulate) and clicks an examined product of gain g with
   probability epsilon + (1 - epsilon) (2^g - 1) / (2^G - 1), G the judgments' highest gain (epsilon = 0.1: noise
   clicks on irrelevant products).
3. Per query, exactly: interleaving's chances of a win, a loss and a tie or no click, over all 2^5 coin sequences of
   `team_draft` (each 1/32) and the clicks on the interleaved top 10 as `credit` counts them; for A/B, each arm's
   distribution of clicks in the top 10 (a sum of independent clicks, one per rank).
4. Experiments. A simulated experiment is a stream of queries drawn uniformly with replacement from the replayed
   ones; in A/B each search is also drawn to an arm (50/50). Drawing a query and then its outcome is the same as
   drawing the outcome from the average over queries, so the streams are drawn from those averages. After every
   query the service's test looks: interleaving's Beta-mixture mSPRT on wins and losses, A/B's normal mSPRT on
   clicks per search (`interleaving_log_ratio`, `ab_decision`); an experiment decides when the log ratio first
   reaches log(1 / ALPHA). queries_to_decide_X is the number of queries by which 80% of --experiments experiments
   have decided in the right direction (the sign of the method's true effect, known here); when fewer do by
   --max-queries-per-experiment it is that cap, and "..._at_least" says the figure is a lower bound.
5. A/A: as many experiments of the control against itself, for each method, to the same cap; aa_false_rate is the
   larger of the two shares that decided anything.

For comparison with the literature it also gives the fixed-horizon sample sizes at alpha 0.05 two-sided and 80%
power: a sign test on the decisive interleaved queries (divided by their share), and a two-sample z-test on clicks
per search (both arms together). Everything after the replay is deterministic for a given --seed.

Arms are those of `shoprank experiment` (orchestrator/experiments/arms.py) but `reranker=V`, which the public
Search call cannot ask for: a service started with --reranker-version V serves V as its default.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from statistics import NormalDist

import grpc
import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import judged_set  # noqa: E402

from core._proto.shoprank.v1 import ranking_pb2, ranking_pb2_grpc  # noqa: E402
from core.errors import ExperimentError, InvalidRequest  # noqa: E402
from core.metrics import ndcg_at_k  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.stats import paired_bootstrap  # noqa: E402
from orchestrator.experiments.arms import Arm, parse_arm  # noqa: E402
from orchestrator.experiments.interleave import CONTROL, TREATMENT, team_draft  # noqa: E402
from orchestrator.experiments.stats import (  # noqa: E402
    AB_PRIOR_RHO, ALPHA, MIN_AB_SEARCHES, Moments, PerSearch, ShopperMoments, ab_decision, interleaving_log_ratio,
    wilson,
)
from orchestrator.harness import cached_index, run_on_catalog  # noqa: E402
from training.click_model import EPSILON, ETA, ClickModel  # noqa: E402
from training.shoppers import DAYS, Shoppers, fit  # noqa: E402

DEPTH = 10  # the shown list: interleaving credits clicks in it, A/B counts clicks per search in it
POWER = 0.8
EXPERIMENTS = 200  # the "at least 200" experiments of each kind
MAX_QUERIES_PER_EXPERIMENT = 200_000
BLOCK = 2048  # queries of every experiment drawn at once; fixed, so a cap cuts streams without changing them
THRESHOLD = math.log(1.0 / ALPHA)  # where the service's tests decide (stats._decide)
NEVER = int(np.iinfo(np.int64).max)  # the margin of a number of decisive queries that cannot decide


@dataclass(frozen=True)
class Replayed:
    """One judged query as both arms answered it: their top products and the query's judged gains."""

    query: str
    control: tuple[str, ...]
    treatment: tuple[str, ...]
    judged: dict[str, float]

    def gains(self, ranking: Sequence[str]) -> list[float]:
        return [self.judged.get(product_id, 0.0) for product_id in ranking]


# ---- replaying the judged queries through the public Search call -------------------------------------------------

def search_request(arm: Arm, query: str, top_k: int = DEPTH) -> ranking_pb2.SearchRequest:
    """The Search request that ranks `query` as `arm` does, for an anonymous shopper; InvalidRequest for an arm
    the public API cannot ask for (a reranker version)."""
    if arm.reranker_version:
        raise InvalidRequest(reranker_refusal(arm))
    return ranking_pb2.SearchRequest(
        query=query, top_k=top_k, skip_rerank=arm.skip_rerank, skip_cross_encoder=arm.skip_cross_encoder,
        skip_personalization=not arm.personalize, combination_weights=dict(arm.combination_weights or ()))


def reranker_refusal(arm: Arm) -> str:
    version = arm.reranker_version
    return (f"arm {arm.text!r}: the public Search call cannot ask for a reranker version. A service started with "
            f"--reranker-version {version} (this benchmark's option, or `shoprank serve --reranker-version {version}` "
            f"with --target) serves version {version} as its default: compare 'default' there")


async def replay(stub: ranking_pb2_grpc.RankingStub, judgments: dict[str, dict[str, float]], catalog_ids: set[str],
                 control: Arm, treatment: Arm, show_progress: bool = True) -> tuple[list[Replayed], dict]:
    """Both arms' top 10 for every judged query that can measure something, and counts of what was left out."""
    replayed: list[Replayed] = []
    counts = {"skipped_queries": 0, "degraded_control": 0, "degraded_treatment": 0, "spelling_corrected": 0}
    for query, judged_all in tqdm(judgments.items(), desc="replay", unit="query", disable=not show_progress):
        judged = {pid: gain for pid, gain in judged_all.items() if pid in catalog_ids}
        if not any(gain > 0 for gain in judged.values()):
            counts["skipped_queries"] += 1  # no product worth a click: nDCG is undefined (as in `shoprank eval`)
            continue
        rankings, corrected = [], False
        try:
            for name, arm in ((CONTROL, control), (TREATMENT, treatment)):
                response = await stub.Search(search_request(arm, query))
                if response.experiment:
                    raise ExperimentError(f"the service answered {query!r} in its experiment {response.experiment!r}, "
                                         "not as the arm asks: stop the experiment or use another service")
                counts[f"degraded_{name}"] += response.degraded
                corrected = corrected or bool(response.corrected_query)
                rankings.append(tuple(item.product_id for item in response.items[:DEPTH]))
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                counts["skipped_queries"] += 1  # e.g. a query of punctuation only; counted, not hidden
                continue
            raise
        counts["spelling_corrected"] += corrected
        replayed.append(Replayed(query, rankings[0], rankings[1], judged))
    return replayed, counts


def ndcg_figures(replayed: Sequence[Replayed]) -> dict:
    """Both arms' mean nDCG@10 and the treatment's paired bootstrap difference."""
    control = [ndcg_at_k(list(r.control), r.judged, DEPTH) for r in replayed]
    treatment = [ndcg_at_k(list(r.treatment), r.judged, DEPTH) for r in replayed]
    interval = paired_bootstrap(treatment, control)
    return {"control": round(float(np.mean(control)), 4), "treatment": round(float(np.mean(treatment)), 4),
            "difference": round(interval.mean_difference, 4),
            "difference_95": [round(interval.low, 4), round(interval.high, 4)]}


# ---- each query's outcomes, exactly ------------------------------------------------------------------------------

class _Coins:
    """Stands in for random.Random in `team_draft`: its coin flips, given (True: the control picks first)."""

    def __init__(self, flips: Sequence[bool]) -> None:
        self._flips = iter(flips)

    def random(self) -> float:
        return 0.0 if next(self._flips) else 0.75


def drafts(control: Sequence[str], treatment: Sequence[str], length: int = DEPTH) -> list[list[tuple[str, str]]]:
    """Every team draft of the two rankings, one per sequence of coin flips (equally likely). The coin is flipped
    only when both teams have picked as often, so at most ceil(length / 2) times."""
    flips = (length + 1) // 2
    return [team_draft(control, treatment, length, _Coins(sequence))
            for sequence in itertools.product((True, False), repeat=flips)]


def click_count_distribution(probabilities: Sequence[float], size: int = DEPTH) -> np.ndarray:
    """P(k clicks), k = 0..size, for independent clicks with these probabilities (a Poisson binomial)."""
    distribution = np.zeros(size + 1)
    distribution[0] = 1.0
    for p in probabilities:
        distribution[1:] = distribution[1:] * (1.0 - p) + distribution[:-1] * p
        distribution[0] *= 1.0 - p
    return distribution


def credit_chances(probabilities: Sequence[float], teams: Sequence[str]) -> tuple[float, float]:
    """(P(win), P(loss)) of one shown list as `credit` scores it: the treatment's products get more of the
    independent clicks, or the control's do."""
    size = len(probabilities)
    lead = np.zeros(2 * size + 1)  # P(treatment's clicks - control's clicks = j - size)
    lead[size] = 1.0
    for p, team in zip(probabilities, teams):
        moved = np.roll(lead, 1 if team == TREATMENT else -1)
        lead = lead * (1.0 - p) + moved * p
    return float(lead[size + 1:].sum()), float(lead[:size].sum())


def interleaving_chances(replayed: Replayed, model: ClickModel, treatment: Sequence[str] | None = None
                         ) -> tuple[float, float]:
    """(P(win), P(loss)) of one query interleaved, over team drafts and clicks; `treatment` replaces the
    treatment's ranking (the control's own, for A/A)."""
    ranking = replayed.treatment if treatment is None else treatment
    win = loss = 0.0
    shown_lists = drafts(replayed.control, ranking)
    for shown in shown_lists:
        probabilities = model.click_probabilities(replayed.gains([product for product, _ in shown]))
        w, lo = credit_chances(probabilities, [team for _, team in shown])
        win, loss = win + w, loss + lo
    return win / len(shown_lists), loss / len(shown_lists)


@dataclass(frozen=True)
class Outcomes:
    """A judged set's outcomes averaged over its queries: what one query of an experiment draws from."""

    win: float  # interleaved: the treatment's products got more of the clicks
    loss: float
    aa_win: float  # the control interleaved with itself
    aa_loss: float
    clicks_control: np.ndarray  # P(k clicks in the top 10), k = 0..10
    clicks_treatment: np.ndarray


def outcomes(replayed: Sequence[Replayed], model: ClickModel) -> Outcomes:
    """Each query's exact outcomes under the click model, averaged over the queries."""
    if not replayed:
        raise ValueError("no replayed query to simulate")
    win, loss, aa_win, aa_loss = np.mean(
        [interleaving_chances(r, model) + interleaving_chances(r, model, treatment=r.control) for r in replayed],
        axis=0)

    def clicks(ranking_of) -> np.ndarray:
        return np.mean([click_count_distribution(model.click_probabilities(r.gains(ranking_of(r))))
                        for r in replayed], axis=0)

    return Outcomes(float(win), float(loss), float(aa_win), float(aa_loss),
                    clicks(lambda r: r.control), clicks(lambda r: r.treatment))


# ---- simulated experiments, decided by the service's tests -------------------------------------------------------

@dataclass
class Decisions:
    """Each simulated experiment's first decision: the query it came at (inf: none by the cap) and its sign."""

    at: np.ndarray
    sign: np.ndarray

    @classmethod
    def none(cls, experiments: int) -> "Decisions":
        return cls(np.full(experiments, np.inf), np.zeros(experiments, dtype=np.int8))

    def record(self, rows: np.ndarray, decided: np.ndarray, signs: np.ndarray, offset: int,
               positions: np.ndarray | None = None) -> None:
        """Of a block of queries for `rows`, where each first decided (`decided`: rows x block booleans);
        `positions`: the number of queries at each column (default: `offset` + the column + 1)."""
        first = decided.argmax(axis=1)
        hit = decided[np.arange(len(rows)), first]
        at = offset + first + 1 if positions is None else positions[np.arange(len(rows)), first]
        self.at[rows[hit]] = at[hit]
        self.sign[rows[hit]] = signs[np.arange(len(rows)), first][hit]


class InterleavingBoundary:
    """For each number d of decisive queries, the least |wins - losses| at which the service's interleaving test
    decides (`interleaving_log_ratio` >= log(1 / ALPHA)), found by calling it. For a fixed d the log ratio grows
    with |wins - losses| (lgamma is convex), so the least margin is the boundary."""

    def __init__(self) -> None:
        self._margins = [NEVER]  # d = 0 never decides
        self._array = np.asarray(self._margins, dtype=np.int64)

    def _decides(self, decisive: int, margin: int) -> bool:
        return interleaving_log_ratio((decisive + margin) // 2, (decisive - margin) // 2) >= THRESHOLD

    def upto(self, decisive: int) -> np.ndarray:
        """Margins for d = 0..decisive at least (NEVER: that d does not decide)."""
        while len(self._margins) <= decisive:
            d = len(self._margins)
            lowest = 2 - d % 2  # the least margin of d's parity that favours an arm
            margin = max(min(self._margins[-1], d), lowest)  # the boundary moves little from one d to the next
            margin += (margin - d) % 2
            while margin - 2 >= lowest and self._decides(d, margin - 2):
                margin -= 2
            while margin <= d and not self._decides(d, margin):
                margin += 2
            self._margins.append(margin if margin <= d else NEVER)
        if len(self._array) < len(self._margins):
            self._array = np.asarray(self._margins, dtype=np.int64)
        return self._array


def simulate_interleaving(win, loss, experiments: int, cap: int, rng: np.random.Generator,
                          boundary: InterleavingBoundary | None = None, stream: "ShopperStream | None" = None
                          ) -> Decisions:
    """Experiments of queries that are wins, losses or neither with these chances, each decided by the service's
    interleaving test after every query, up to `cap` queries. With a `stream` of shoppers, `win` and `loss` are
    arrays by activity bin and each query takes its shopper's."""
    boundary = boundary or InterleavingBoundary()
    decisions = Decisions.none(experiments)
    margin = np.zeros(experiments, dtype=np.int64)  # wins - losses so far
    decisive = np.zeros(experiments, dtype=np.int64)
    for offset in range(0, cap, BLOCK):
        draws = rng.random((experiments, BLOCK))[:, : min(BLOCK, cap - offset)]
        rows = np.flatnonzero(np.isinf(decisions.at))
        if not len(rows):
            break
        u = draws[rows]
        if stream is None:
            w, lo = win, loss
        else:
            bins = stream.bins_of_queries(rows, u.shape[1])
            w, lo = win[bins], loss[bins]
        step = (u < w).astype(np.int64) - ((u >= w) & (u < w + lo))
        margins = margin[rows, None] + np.cumsum(step, axis=1)
        counts = decisive[rows, None] + np.cumsum(step != 0, axis=1)
        decided = np.abs(margins) >= boundary.upto(int(counts.max()))[counts]
        decisions.record(rows, decided, np.sign(margins), offset)
        margin[rows], decisive[rows] = margins[:, -1], counts[:, -1]
    return decisions


def ab_log_ratio(n_c, total_c, squares_c, n_t, total_t, squares_t) -> tuple[np.ndarray, np.ndarray]:
    """`ab_decision`'s log ratio and difference of means (treatment - control) over arrays of the arms' Moments:
    `ab_log_ratio_units` with each search a unit of its own (as `ShopperMoments.from_json` reads saved Moments)."""
    return ab_log_ratio_units(n_c, n_c, total_c, n_c, squares_c, total_c, n_t, n_t, total_t, n_t, squares_t, total_t)


def confirm(decided: np.ndarray, arm_at: Callable[[int, int, int], PerSearch]) -> None:
    """Keep, in each row of `decided` (rows x columns), the first column where the service's own `ab_decision`
    decides on the arms `arm_at(row, column, arm)` (arm 0: the control, 1: the treatment), clearing the columns
    before it that it does not confirm (rounding could part the arrays' figures from its near the threshold)."""
    for row in np.flatnonzero(decided.any(axis=1)):
        for column in np.flatnonzero(decided[row]):
            if ab_decision(arm_at(row, column, 0), arm_at(row, column, 1)).decided:
                break
            decided[row, column] = False


def simulate_ab(clicks_control: np.ndarray, clicks_treatment: np.ndarray, experiments: int, cap: int,
                rng: np.random.Generator) -> Decisions:
    """Experiments of searches drawn to an arm at random, each with that arm's click count, decided by the
    service's A/B test after every search, up to `cap` searches. Each first decision found on the arrays is
    confirmed by `ab_decision` itself (rounding could part them near the threshold)."""
    cdf = np.cumsum(np.stack([clicks_control, clicks_treatment]), axis=1)
    decisions = Decisions.none(experiments)
    state = np.zeros((6, experiments))  # n, total, squares of the control, then of the treatment
    for offset in range(0, cap, BLOCK):
        size = min(BLOCK, cap - offset)
        in_treatment = rng.random((experiments, BLOCK))[:, :size] < 0.5
        draws = rng.random((experiments, BLOCK))[:, :size]
        rows = np.flatnonzero(np.isinf(decisions.at))
        if not len(rows):
            break
        arm = in_treatment[rows]
        clicks = np.where(arm, np.searchsorted(cdf[1], draws[rows], side="right"),
                          np.searchsorted(cdf[0], draws[rows], side="right"))
        clicks = np.minimum(clicks, cdf.shape[1] - 1).astype(np.float64)
        moments = []
        for index, member in enumerate((~arm, arm)):
            for power, column in enumerate((member.astype(np.float64), clicks * member, clicks * clicks * member)):
                moments.append(state[3 * index + power, rows, None] + np.cumsum(column, axis=1))
        log_ratio, difference = ab_log_ratio(*moments)
        decided = (log_ratio >= THRESHOLD) & (difference != 0.0)
        confirm(decided, lambda row, column, arm: Moments(
            int(moments[3 * arm][row, column]), moments[3 * arm + 1][row, column], moments[3 * arm + 2][row, column]))
        decisions.record(rows, decided, np.sign(difference), offset)
        for index, values in enumerate(moments):
            state[index, rows] = values[:, -1]
    return decisions


# ---- shoppers who differ (--shoppers) ----------------------------------------------------------------------------

ACTIVITY_BINS = 20  # equally likely bins of the shoppers' activity factor


@dataclass(frozen=True)
class Population:
    """A judged set's outcomes for shoppers who differ: one `Outcomes` per activity bin (equally likely), and the
    searches a shopper makes during an experiment (an empirical distribution)."""

    bins: tuple[Outcomes, ...]
    shoppers: Shoppers

    @property
    def searches(self) -> np.ndarray:
        return np.asarray(self.shoppers.searches, dtype=np.int64)

    @property
    def pooled(self) -> Outcomes:
        """The outcomes of one query of a shopper drawn at random (bins are independent of searches)."""
        return Outcomes(*(np.mean([getattr(o, name) for o in self.bins], axis=0)
                          for name in ("win", "loss", "aa_win", "aa_loss", "clicks_control", "clicks_treatment")))

    def column(self, name: str) -> np.ndarray:
        return np.asarray([getattr(o, name) for o in self.bins])


def population(replayed: Sequence[Replayed], model: ClickModel, shoppers: Shoppers,
               bins: int = ACTIVITY_BINS) -> Population:
    """Each activity bin's outcomes: the click model with that bin's factor."""
    factors = shoppers.factors(bins)
    return Population(tuple(outcomes(replayed, replace(model, factor=float(f))) for f in factors), shoppers)


class ShopperStream:
    """Each experiment's queries as its shoppers make them: a shopper draws an activity bin and a number of
    searches, and makes them one after another, then the next shopper comes."""

    def __init__(self, experiments: int, searches: np.ndarray, bins: int, rng: np.random.Generator) -> None:
        self.searches, self.bins, self.rng = searches, bins, rng
        self._pending = [np.empty(0, dtype=np.int64) for _ in range(experiments)]

    def bins_of_queries(self, rows: np.ndarray, size: int) -> np.ndarray:
        """The next `size` queries' activity bins of each experiment of `rows`."""
        out = np.empty((len(rows), size), dtype=np.int64)
        for index, row in enumerate(rows):
            pending = self._pending[row]
            while len(pending) < size:
                shoppers = max(size // 2, 16)
                pending = np.concatenate([pending, np.repeat(self.rng.integers(0, self.bins, shoppers),
                                                             self.rng.choice(self.searches, shoppers))])
            out[index], self._pending[row] = pending[:size], pending[size:]
        return out


def sum_distributions(per_search: np.ndarray, most: int) -> np.ndarray:
    """P(k clicks in m searches) for m = 0..most, k = 0..(len(per_search) - 1) * most: convolution powers of one
    search's distribution."""
    size = (len(per_search) - 1) * most + 1
    table = np.zeros((most + 1, size))
    table[0, 0] = 1.0
    for m in range(1, most + 1):
        table[m] = np.convolve(table[m - 1], per_search)[:size]
    return table


def ab_log_ratio_units(*sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`ab_decision`'s log ratio and difference over arrays of both arms' ShopperMoments (units, searches, total,
    searches_squares, squares, cross; the control's six, then the treatment's), computed as they compute them;
    -inf where it does not test."""
    arms = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for k, searches, total, searches_squares, squares, cross in (sums[:6], sums[6:]):
            ratio = total / searches
            var_s = (searches_squares - searches * searches / k) / (k - 1)
            var_c = (squares - total * total / k) / (k - 1)
            cov = (cross - total * searches / k) / (k - 1)
            mean_s = searches / k
            variance = np.maximum(var_c - 2.0 * ratio * cov + ratio * ratio * var_s, 0.0) / (k * mean_s ** 2) * searches
            arms.append((k, searches, ratio, variance))
        (k_c, n_c, mean_c, var_c), (k_t, n_t, mean_t, var_t) = arms
        variance = var_c / n_c + var_t / n_t
        pair_variance = var_c + var_t
        difference = mean_t - mean_c
        z = difference / np.sqrt(variance)
        spread = pair_variance / variance * AB_PRIOR_RHO
        log_ratio = -0.5 * np.log1p(spread) + spread / (1.0 + spread) * z * z / 2.0
    tested = ((np.minimum.reduce([n_c, n_t, k_c, k_t]) >= MIN_AB_SEARCHES) & (variance > 0.0)
              & (pair_variance > 0.0))
    return np.where(tested, log_ratio, -np.inf), difference


SHOPPER_BLOCK = 256  # shoppers of every experiment drawn at once


def simulate_ab_shoppers(clicks_control: np.ndarray, clicks_treatment: np.ndarray, searches: np.ndarray,
                         experiments: int, cap: int, rng: np.random.Generator) -> Decisions:
    """Experiments of shoppers drawn to an arm at random (the service's assignment), each with an activity bin
    (rows of `clicks_*`: one search's click distribution per bin) and a number of searches, decided by the
    service's A/B test over units of shoppers after each shopper's searches, up to `cap` searches. A shopper here
    is one unit; the service's units are buckets of shoppers, which have the same variance."""
    most = int(searches.max())
    cdf = np.cumsum(np.stack([[sum_distributions(row, most) for row in clicks_control],
                              [sum_distributions(row, most) for row in clicks_treatment]]), axis=-1)
    reach = int(np.flatnonzero((cdf < 1.0 - 1e-12).any(axis=(0, 1, 2))).max(initial=0)) + 2
    cdf = cdf[..., :reach]  # the counts no shopper reaches but once in 10^12 draws are left out
    bins = len(clicks_control)
    decisions = Decisions.none(experiments)
    state = np.zeros((12, experiments))  # the control's six sums, then the treatment's
    seen = np.zeros(experiments)  # searches so far
    while True:
        rows = np.flatnonzero(np.isinf(decisions.at) & (seen < cap))
        if not len(rows):
            break
        shape = (len(rows), SHOPPER_BLOCK)
        in_treatment = rng.random(shape) < 0.5
        activity = rng.integers(0, bins, shape)
        made = rng.choice(searches, shape).astype(np.int64)
        u = rng.random(shape)
        table = cdf[in_treatment.astype(np.int64), activity, made]  # rows x block x clicks
        clicks = np.minimum((table < u[..., None]).sum(axis=-1), table.shape[-1] - 1).astype(np.float64)
        made_f = made.astype(np.float64)
        sums = []
        for index, member in enumerate((~in_treatment, in_treatment)):
            columns = (member, made_f * member, clicks * member, made_f ** 2 * member, clicks ** 2 * member,
                       made_f * clicks * member)
            for offset, column in enumerate(columns):
                sums.append(state[6 * index + offset, rows, None] + np.cumsum(column, axis=1, dtype=np.float64))
        positions = seen[rows, None] + np.cumsum(made_f, axis=1)
        log_ratio, difference = ab_log_ratio_units(*sums)
        decided = (log_ratio >= THRESHOLD) & (difference != 0.0) & (positions <= cap)
        confirm(decided, lambda row, column, arm: ShopperMoments(
            int(sums[6 * arm][row, column]), *(float(sums[6 * arm + j][row, column]) for j in range(1, 6))))
        decisions.record(rows, decided, np.sign(difference), 0, positions)
        for index, values in enumerate(sums):
            state[index, rows] = values[:, -1]
        seen[rows] = positions[:, -1]
    return decisions


def fixed_horizon_shoppers(result: Population, alpha: float = ALPHA, power: float = POWER) -> dict:
    """`fixed_horizon` for shoppers who differ: interleaving's sign test on the pooled outcomes (each query's coin
    flips are its own, so a shopper's queries are independent given the shopper), and A/B's z-test over shoppers
    with the delta method's variance: per shopper of m searches and activity bin b, Var(C - R m) =
    E[m] E_b[var_b] + E[m^2] Var_b(mean_b), in searches of both arms."""
    figures = fixed_horizon(result.pooled, alpha, power)
    z_alpha, z_power = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    m = result.searches.astype(np.float64)
    variances, means = [], []
    for name in ("clicks_control", "clicks_treatment"):
        table = result.column(name)
        k = np.arange(table.shape[1])
        mean_b = table @ k
        var_b = table @ (k * k) - mean_b ** 2
        means.append(float(mean_b.mean()))
        variances.append(float(m.mean() * var_b.mean() + (m * m).mean() * mean_b.var()))
    difference = means[1] - means[0]
    ab = (math.ceil(2 * (z_alpha + z_power) ** 2 * sum(variances) / (m.mean() * difference ** 2))
          if difference else None)
    interleaving = figures["interleaving"]
    return {"interleaving": interleaving, "ab": ab,
            "ratio": round(ab / interleaving, 2) if ab is not None and interleaving else None}


# ---- figures -----------------------------------------------------------------------------------------------------

def order_statistic_interval(count: int, share: float, confidence: float = 1 - ALPHA) -> tuple[int, int]:
    """1-based ranks (low, high) of the sorted sample that bracket its `share` quantile with this confidence."""
    pmf = [math.comb(count, k) * share ** k * (1 - share) ** (count - k) for k in range(count + 1)]
    cdf = np.cumsum(pmf)
    tail = (1 - confidence) / 2
    low = int(np.searchsorted(cdf, tail, side="right"))  # P(fewer than `low` below the quantile) <= tail
    high = int(np.searchsorted(cdf, 1 - tail, side="left")) + 1
    return max(low, 1), min(high, count)


def queries_to_decide(decisions: Decisions, truth: int, cap: int, power: float = POWER) -> dict:
    """The number of queries by which `power` of the experiments decided in the direction `truth` (the cap, and
    at_least, when fewer did by then), with a 95% interval from the order statistics, and the shares that decided
    right and wrong."""
    right = np.where((decisions.sign == truth) & (truth != 0), decisions.at, np.inf)
    ordered = np.sort(right)
    count = len(ordered)
    rank = math.ceil(power * count)
    value = ordered[rank - 1]
    low, high = order_statistic_interval(count, power)

    def figure(x: float) -> int:
        return int(x) if np.isfinite(x) else cap

    return {"queries": figure(value), "at_least": not np.isfinite(value),
            "queries_95": [figure(ordered[low - 1]), figure(ordered[high - 1])],
            "decided_right": round(float(np.isfinite(right).mean()), 4),
            "decided_wrong": round(float((np.isfinite(decisions.at) & ~np.isfinite(right)).mean()), 4)}


def decided_share(decisions: Decisions) -> dict:
    """The share of (A/A) experiments that decided anything, with its 95% Wilson interval."""
    decided = int(np.isfinite(decisions.at).sum())
    low, high = wilson(decided, len(decisions.at))
    return {"rate": round(decided / len(decisions.at), 4), "rate_95": [round(low, 4), round(high, 4)],
            "decided": decided, "experiments": len(decisions.at)}


def fixed_horizon(result: Outcomes, alpha: float = ALPHA, power: float = POWER) -> dict:
    """Sample sizes of one planned look: a sign test on the decisive interleaved queries over their share, and a
    two-sample z-test on clicks per search (both arms' searches together); None where the arms do not differ."""
    z_alpha, z_power = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    decisive = result.win + result.loss
    share = result.win / decisive if decisive else 0.5
    interleaving = None
    if share != 0.5:
        pairs = ((z_alpha * 0.5 + z_power * math.sqrt(share * (1 - share))) / (share - 0.5)) ** 2
        interleaving = math.ceil(pairs / decisive)
    means, variances = [], []
    for distribution in (result.clicks_control, result.clicks_treatment):
        k = np.arange(len(distribution))
        means.append(float(distribution @ k))
        variances.append(float(distribution @ (k * k)) - means[-1] ** 2)
    difference = means[1] - means[0]
    ab = math.ceil(2 * (z_alpha + z_power) ** 2 * sum(variances) / difference ** 2) if difference else None
    return {"interleaving": interleaving, "ab": ab,
            "ratio": round(ab / interleaving, 2) if ab is not None and interleaving else None}


def simulate(result: Outcomes | Population, experiments: int = EXPERIMENTS, cap: int = MAX_QUERIES_PER_EXPERIMENT,
             seed: int = 0) -> dict:
    """The experiments' figures: queries to decide each way, their ratio, and the A/A false rates. For a
    `Population` each experiment is a stream of shoppers who differ (`ShopperStream`, `simulate_ab_shoppers`)."""
    interleaving_rng, ab_rng, aa_interleaving_rng, aa_ab_rng, stream_rng, aa_stream_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(6))
    boundary = InterleavingBoundary()
    shoppers = result if isinstance(result, Population) else None
    pooled = shoppers.pooled if shoppers else result
    means = [float(d @ np.arange(len(d))) for d in (pooled.clicks_control, pooled.clicks_treatment)]
    if shoppers is None:
        decided = simulate_interleaving(result.win, result.loss, experiments, cap, interleaving_rng, boundary)
        aa_decided = simulate_interleaving(result.aa_win, result.aa_loss, experiments, cap, aa_interleaving_rng,
                                           boundary)
        ab_decided = simulate_ab(result.clicks_control, result.clicks_treatment, experiments, cap, ab_rng)
        aa_ab_decided = simulate_ab(result.clicks_control, result.clicks_control, experiments, cap, aa_ab_rng)
    else:
        bins = len(shoppers.bins)
        decided = simulate_interleaving(
            shoppers.column("win"), shoppers.column("loss"), experiments, cap, interleaving_rng, boundary,
            ShopperStream(experiments, shoppers.searches, bins, stream_rng))
        aa_decided = simulate_interleaving(
            shoppers.column("aa_win"), shoppers.column("aa_loss"), experiments, cap, aa_interleaving_rng, boundary,
            ShopperStream(experiments, shoppers.searches, bins, aa_stream_rng))
        control, treatment = shoppers.column("clicks_control"), shoppers.column("clicks_treatment")
        ab_decided = simulate_ab_shoppers(control, treatment, shoppers.searches, experiments, cap, ab_rng)
        aa_ab_decided = simulate_ab_shoppers(control, control, shoppers.searches, experiments, cap, aa_ab_rng)
    interleaving = queries_to_decide(decided, int(np.sign(pooled.win - pooled.loss)), cap)
    ab = queries_to_decide(ab_decided, int(np.sign(means[1] - means[0])), cap)
    aa_interleaving = decided_share(aa_decided)
    aa_ab = decided_share(aa_ab_decided)
    bounded = (interleaving["at_least"], ab["at_least"])
    ratio = None if all(bounded) else round(ab["queries"] / interleaving["queries"], 2)
    return {
        "queries_to_decide_interleaving": interleaving["queries"],
        "queries_to_decide_interleaving_at_least": interleaving["at_least"],
        "queries_to_decide_ab": ab["queries"],
        "queries_to_decide_ab_at_least": ab["at_least"],
        # A/B over interleaving: a lower bound when only A/B's figure is one, an upper bound when only interleaving's is
        "ratio": ratio,
        "ratio_at_least": bounded == (False, True),
        "ratio_at_most": bounded == (True, False),
        "aa_false_rate": max(aa_interleaving["rate"], aa_ab["rate"]),
        "interleaving": {**{k: v for k, v in interleaving.items() if k not in ("queries", "at_least")},
                         "win": round(pooled.win, 5), "loss": round(pooled.loss, 5),
                         "tie_or_no_click": round(1 - pooled.win - pooled.loss, 5),
                         "treatment_share": round(pooled.win / (pooled.win + pooled.loss), 4)
                         if pooled.win + pooled.loss else None},
        "ab": {**{k: v for k, v in ab.items() if k not in ("queries", "at_least")},
               "clicks_per_search": {"control": round(means[0], 5), "treatment": round(means[1], 5)}},
        "aa": {"interleaving": {**aa_interleaving, "win": round(pooled.aa_win, 5), "loss": round(pooled.aa_loss, 5)},
               "ab": aa_ab},
        "fixed_horizon": fixed_horizon_shoppers(shoppers) if shoppers else fixed_horizon(result),
        "shoppers": shoppers.shoppers.summary() if shoppers else "alike",
        "experiments": experiments, "max_queries_per_experiment": cap, "seed": seed, "alpha": ALPHA, "power": POWER,
    }


# ---- the command -------------------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--control", default="fused", help="the control arm (default: fused, the fused order)")
    parser.add_argument("--treatment", default="default", help="the treatment arm (default: the default ranking)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--experiments", type=int, default=EXPERIMENTS,
                        help=f"simulated experiments of each kind, A/A included (at least {EXPERIMENTS})")
    parser.add_argument("--max-queries-per-experiment", type=int, default=MAX_QUERIES_PER_EXPERIMENT,
                        help="each simulated experiment's cap, in queries (A/B: searches of both arms)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eta", type=float, default=ETA, help="examination at rank r is (1/r)^eta")
    parser.add_argument("--epsilon", type=float, default=EPSILON, help="the chance of clicking an examined product "
                                                                       "of gain 0")
    parser.add_argument("--max-gain", type=float, help="the judgments' top gain (default: the highest in the split)")
    parser.add_argument("--shoppers", type=Path, metavar="EVENTS",
                        help="shoppers who differ, fitted to this purchase log (training/shoppers.py; e.g. "
                             "../shared/data/instacart/events.csv); default: every shopper alike, one search each")
    parser.add_argument("--shopper-days", type=int, default=DAYS,
                        help=f"--shoppers: the experiment's length in days, for searches per shopper ({DAYS})")
    parser.add_argument("--searches-per-order", type=int, default=1,
                        help="--shoppers: searches a shopper makes for one order (1)")
    parser.add_argument("--save-replay", type=Path, metavar="FILE", help="write the replayed rankings to FILE")
    parser.add_argument("--replay", type=Path, metavar="FILE",
                        help="simulate the rankings --save-replay wrote instead of asking a service")
    parser.add_argument("--target", help="host:port of a running service on the catalog (default: start one)")
    parser.add_argument("--reranker-version", help="the version the started service serves as its default")
    judged_set.add_options(parser)
    args = parser.parse_args(argv)
    if args.experiments < EXPERIMENTS:
        parser.error(f"--experiments: the figures need at least {EXPERIMENTS} experiments of each kind")
    if args.max_queries_per_experiment < MIN_AB_SEARCHES * 2:
        parser.error(f"--max-queries-per-experiment must be at least {MIN_AB_SEARCHES * 2}: A/B tests nothing "
                     f"before {MIN_AB_SEARCHES} searches per arm")
    if args.eta < 0 or not 0 <= args.epsilon <= 1 or (args.max_gain is not None and args.max_gain <= 0):
        parser.error("--eta must be >= 0, --epsilon within 0..1 and --max-gain positive")
    try:
        args.control_arm, args.treatment_arm = parse_arm(args.control), parse_arm(args.treatment)
    except InvalidRequest as error:
        parser.error(str(error))
    for arm in (args.control_arm, args.treatment_arm):
        if arm.reranker_version:
            parser.error(reranker_refusal(arm))
    if args.target and args.reranker_version:
        parser.error("--reranker-version sets the service this benchmark starts; with --target start yours with it")
    if args.shopper_days < 1 or args.searches_per_order < 1:
        parser.error("--shopper-days and --searches-per-order must be at least 1")
    if args.replay and (args.target or args.save_replay):
        parser.error("--replay simulates a saved replay: it takes no --target or --save-replay")
    if not args.target and not args.replay:
        judged_set.check(parser, args)
    return parser, args


def replay_identity(args: argparse.Namespace) -> dict:
    """What a saved replay must share with the run that simulates it: the arms, the catalog, judgments and split."""
    return {"control": args.control_arm.text, "treatment": args.treatment_arm.text, "catalog": str(args.catalog),
            "judgments": str(args.judgments), "split": args.split}


def save_replay(path: Path, args: argparse.Namespace, replayed: Sequence[Replayed], counts: dict,
                top_gain: float) -> None:
    payload = {**replay_identity(args), "counts": counts, "top_gain": top_gain,
               "replayed": [asdict(r) for r in replayed]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def load_replay(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[list[Replayed], dict, float]:
    """A replay --save-replay wrote, for the same arms, catalog, judgments and split (a parser error if not)."""
    try:
        payload = json.loads(args.replay.read_text())
        replayed = [Replayed(r["query"], tuple(r["control"]), tuple(r["treatment"]), dict(r["judged"]))
                    for r in payload["replayed"]]
        wanted = replay_identity(args)
        saved = {key: payload[key] for key in wanted}
        top_gain = float(payload["top_gain"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        parser.error(f"--replay {args.replay}: not a replay this benchmark wrote ({error})")
    if saved != wanted:
        differ = ", ".join(f"{key} {saved[key]!r} (asked: {wanted[key]!r})"
                           for key in wanted if saved[key] != wanted[key])
        parser.error(f"--replay {args.replay} was replayed with another {differ}")
    return replayed, payload["counts"], top_gain


def run_replay(args: argparse.Namespace, judgments: dict[str, dict[str, float]],
               catalog_ids: set[str]) -> tuple[list[Replayed], dict]:
    """The replay against --target, or against a service started on the catalog."""
    async def work(stub: ranking_pb2_grpc.RankingStub) -> tuple[list[Replayed], dict]:
        return await replay(stub, judgments, catalog_ids, args.control_arm, args.treatment_arm)

    if args.target:
        async def remote() -> tuple[list[Replayed], dict]:
            async with grpc.aio.insecure_channel(args.target) as channel:
                return await work(ranking_pb2_grpc.RankingStub(channel))
        return asyncio.run(remote())
    shop = judged_set.shop_of_args(args)
    settings = Settings.from_env(model_repository=args.model_repository, shop=shop,
                                 reranker_version=args.reranker_version)
    return run_on_catalog(settings, args.catalog, work, index_dir=ROOT / cached_index(args.catalog, shop))


HEADLINE = ("queries_to_decide_interleaving", "queries_to_decide_ab", "ratio", "aa_false_rate",
            "queries_to_decide_interleaving_at_least", "queries_to_decide_ab_at_least", "ratio_at_least",
            "ratio_at_most")


def report(args: argparse.Namespace, replayed: list[Replayed], counts: dict, model: ClickModel,
           figures: dict, seconds: dict) -> dict:
    """The JSON object: the headline figures first, then the arms, the replay, the click model and the rest."""
    result = {key: figures[key] for key in HEADLINE}
    result.update({"control": args.control_arm.text, "treatment": args.treatment_arm.text,
                   "catalog": str(args.catalog), "judgments": str(args.judgments), "split": args.split,
                   "target": args.target or "started", "queries": len(replayed), **counts,
                   "ndcg@10": ndcg_figures(replayed),
                   "click_model": {**asdict(model), "depth": DEPTH,
                                   "examination": "(1/rank)^eta (Joachims, Swaminathan and Schnabel 2017)",
                                   "attractiveness": "epsilon + (1 - epsilon) (2^gain - 1) / (2^max_gain - 1)"}})
    result.update({key: value for key, value in figures.items() if key not in HEADLINE})
    result["seconds"] = seconds
    return result


def print_table(result: dict) -> None:
    ndcg, fixed = result["ndcg@10"], result["fixed_horizon"]
    print(f"{result['control']} (control) against {result['treatment']} (treatment), {result['queries']} queries of "
          f"the {result['split']} split of {result['judgments']}")
    print(f"nDCG@10 {ndcg['control']:.4f} -> {ndcg['treatment']:.4f}: {ndcg['difference']:+.4f} "
          f"[{ndcg['difference_95'][0]:+.4f}, {ndcg['difference_95'][1]:+.4f}]")
    model = result["click_model"]
    print(f"clicks: examination (1/rank)^{model['eta']}, epsilon {model['epsilon']}, top gain {model['max_gain']}; "
          f"{result['experiments']} experiments of each kind, at most {result['max_queries_per_experiment']} "
          f"queries each, seed {result['seed']}")
    rows = [("interleaving", result["queries_to_decide_interleaving"],
             result["queries_to_decide_interleaving_at_least"], result["interleaving"], fixed["interleaving"],
             result["aa"]["interleaving"]),
            ("A/B", result["queries_to_decide_ab"], result["queries_to_decide_ab_at_least"], result["ab"], fixed["ab"],
             result["aa"]["ab"])]
    print(f"{'':<13} {'queries to decide (80%)':>24} {'95%':>18} {'right':>6} {'wrong':>6} {'fixed horizon':>14} "
          f"{'A/A decided':>12}")
    for name, queries, at_least, figures, planned, aa in rows:
        bound = f"{queries}{'+' if at_least else ''}"
        interval = f"[{figures['queries_95'][0]}, {figures['queries_95'][1]}]"
        print(f"{name:<13} {bound:>24} {interval:>18} {figures['decided_right']:>6.3f} "
              f"{figures['decided_wrong']:>6.3f} "
              f"{planned if planned is not None else '-':>14} {aa['rate']:>12.3f}")
    ratio = result["ratio"]
    qualifier = " (at least)" if result["ratio_at_least"] else " (at most)" if result["ratio_at_most"] else ""
    print(f"A/B over interleaving: {ratio if ratio is not None else '-'}{qualifier}; fixed horizon: "
          f"{fixed['ratio'] if fixed['ratio'] is not None else '-'}; A/A false rate {result['aa_false_rate']:.3f}")


def main(argv: Sequence[str] | None = None) -> None:
    parser, args = parse_args(argv)
    started = time.perf_counter()
    if args.replay:
        replayed, counts, top_gain = load_replay(parser, args)
        top_gain = args.max_gain or top_gain
    else:
        judgments, catalog_ids = judged_set.load(args)
        replayed, counts = run_replay(args, judgments, catalog_ids)
        top_gain = args.max_gain or max(gain for judged in judgments.values() for gain in judged.values())
        if args.save_replay:
            save_replay(args.save_replay, args, replayed, counts, top_gain)
    replay_s = time.perf_counter() - started
    if not replayed:
        parser.error("no judged query of the split measures anything (none has a judged product of positive gain)")
    model = ClickModel(args.eta, args.epsilon, top_gain)
    started = time.perf_counter()
    try:
        shoppers = fit(args.shoppers, args.shopper_days, args.searches_per_order) if args.shoppers else None
    except InvalidRequest as error:
        parser.error(f"--shoppers: {error}")
    simulated = population(replayed, model, shoppers) if shoppers else outcomes(replayed, model)
    figures = simulate(simulated, args.experiments, args.max_queries_per_experiment, args.seed)
    seconds = {"replay": round(replay_s, 1), "simulation": round(time.perf_counter() - started, 1)}
    result = report(args, replayed, counts, model, figures, seconds)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(result)


if __name__ == "__main__":
    main()
