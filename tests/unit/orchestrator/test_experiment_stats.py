"""The interleaving draft, its credit, and the sequential tests that decide experiments."""

from __future__ import annotations

import math
import random
from dataclasses import asdict

import numpy as np
import pytest

from orchestrator.experiments.interleave import CONTROL, TREATMENT, credit, team_draft
from orchestrator.experiments.stats import (BETTER, UNDECIDED, WORSE, ArmTally, InterleavingTally, Moments,
                                            ShopperMoments, ab_decision, interleaving_log_ratio, normal_log_ratio,
                                            wilson)


def test_team_draft_takes_each_rankings_best_unseen_product_in_turns():
    control, treatment = ["a", "b", "c", "d"], ["b", "e", "a", "f"]
    for seed in range(20):
        shown = team_draft(control, treatment, 4, random.Random(seed))
        products = [product for product, _ in shown]
        assert len(products) == len(set(products)) == 4
        teams = [team for _, team in shown]
        # after every pair of picks the teams have picked as many
        assert teams[:2].count(CONTROL) == 1 and teams[2:4].count(CONTROL) == 1
        for product, team in shown:  # each pick is that team's best product not shown before it
            ranking = control if team == CONTROL else treatment
            before = set(products[:products.index(product)])
            assert product == next(item for item in ranking if item not in before)


def test_team_draft_fills_from_the_other_ranking_when_one_runs_out():
    shown = team_draft(["a"], ["b", "c", "d"], 4, random.Random(1))
    assert sorted(product for product, _ in shown) == ["a", "b", "c", "d"]
    assert team_draft([], [], 3, random.Random(1)) == []


def test_team_draft_of_identical_rankings_keeps_their_order():
    ranking = ["a", "b", "c", "d", "e"]
    assert [product for product, _ in team_draft(ranking, ranking, 5, random.Random(3))] == ranking


def test_credit_goes_to_the_team_with_more_clicks():
    teams = [CONTROL, TREATMENT, TREATMENT, CONTROL]
    assert credit(teams, [2]) == 1
    assert credit(teams, [1, 4, 2]) == -1
    assert credit(teams, [1, 2]) == 0
    assert credit(teams, []) == 0
    assert credit(teams, [2, 2, 1]) == 0  # a product clicked twice counts once
    assert credit(teams, [9, 0, -1]) == 0  # positions not shown are ignored


def test_interleaving_ratio_grows_with_a_one_sided_record_and_stays_low_when_even():
    assert interleaving_log_ratio(0, 0) == pytest.approx(0.0)
    assert interleaving_log_ratio(50, 50) < 0
    assert interleaving_log_ratio(80, 20) > math.log(20)
    assert interleaving_log_ratio(20, 80) == pytest.approx(interleaving_log_ratio(80, 20))


def test_interleaving_tally_decides_for_the_side_that_wins_and_recounts_a_changed_query():
    tally = InterleavingTally()
    for _ in range(80):
        tally.add(+1)
    for _ in range(20):
        tally.add(-1)
    assert tally.decision().outcome == BETTER
    tally.add(-1, was=+1)  # a later click turned a win into a loss
    assert (tally.wins, tally.losses) == (79, 21)
    figures = tally.figures()
    assert figures["clicked"] == 100 and figures["decision"] == BETTER
    low, high = figures["treatment_share_95"]
    assert low < 0.79 < high
    flipped = InterleavingTally(wins=21, losses=79)
    assert flipped.decision().outcome == WORSE
    assert InterleavingTally(wins=10, losses=8, ties=5).decision().outcome == UNDECIDED


def test_a_and_a_interleaving_rarely_decides_however_often_it_is_looked_at():
    rng = np.random.default_rng(7)
    runs, steps = 400, 3000
    outcomes = rng.choice([-1, 1], size=(runs, steps))
    wins = np.cumsum(outcomes > 0, axis=1)
    losses = np.arange(1, steps + 1) - wins
    decided = 0
    for run in range(runs):
        ratios = [interleaving_log_ratio(int(w), int(l)) for w, l in zip(wins[run, ::10], losses[run, ::10])]
        decided += max(ratios) >= math.log(20)
    assert decided / runs <= 0.05


def test_wilson_interval_holds_the_share_and_stays_in_bounds():
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(5, 10)
    assert 0.2 < low < 0.5 < high < 0.8
    assert wilson(10, 10)[1] == pytest.approx(1.0)


def test_moments_follow_a_changed_value():
    moments = Moments()
    for value in (0.0, 0.0, 0.0):
        moments.add(value)
    moments.change(0.0, 2.0)
    assert moments.mean == pytest.approx(2 / 3)
    assert moments.variance == pytest.approx(np.var([0.0, 0.0, 2.0], ddof=1))


def _arm(values) -> Moments:
    moments = Moments()
    for value in values:
        moments.add(float(value))
    return moments


def test_ab_decision_waits_for_enough_searches_then_sees_a_clear_difference():
    rng = np.random.default_rng(3)
    assert ab_decision(_arm(rng.poisson(0.5, 50)), _arm(rng.poisson(1.5, 50))).outcome == UNDECIDED
    control, treatment = _arm(rng.poisson(0.5, 2000)), _arm(rng.poisson(0.7, 2000))
    assert ab_decision(control, treatment).outcome == BETTER
    assert ab_decision(treatment, control).outcome == WORSE
    assert ab_decision(_arm([0] * 500), _arm([0] * 500)).outcome == UNDECIDED  # no clicks: no variance


def test_normal_ratio_is_small_for_a_small_z():
    assert normal_log_ratio(0.0, 1000) < 0
    assert normal_log_ratio(1.0, 1000) < math.log(20)
    assert normal_log_ratio(6.0, 1000) > math.log(20)


def test_arm_tally_reports_per_search_figures():
    arm = ArmTally.empty()
    for bucket in range(4):
        arm.add_search(bucket)
    arm.add_click(0)
    arm.add_click(0)
    figures = arm.figures()
    assert figures["searches"] == 4 and figures["clicks_per_search"] == pytest.approx(0.5)
    assert figures["shopper_buckets"] == 4 and figures["purchases_per_search"] == 0.0


def _shoppers(rng, count, searches, clicks_per_search, heterogeneity):
    """Clicks of each of `count` shoppers' `searches` searches (rows: shoppers): Poisson, at a rate that differs
    between shoppers by a gamma factor of mean 1 and variance `heterogeneity` (0: all alike)."""
    factor = rng.gamma(1 / heterogeneity, heterogeneity, count) if heterogeneity else np.ones(count)
    return rng.poisson(clicks_per_search * factor[:, None], (count, searches)).astype(float)


def _shopper_arm(searches, clicks) -> ShopperMoments:
    arm = ShopperMoments()
    for s, c in zip(searches, clicks):
        arm.change((0, 0), (float(s), float(c)))
    return arm


def _by_shopper(per_search: np.ndarray) -> ShopperMoments:
    return _shopper_arm(np.full(len(per_search), per_search.shape[1]), per_search.sum(axis=1))


def test_shopper_moments_of_one_search_units_are_the_per_search_moments():
    values = np.random.default_rng(4).poisson(0.8, 300).astype(float)
    shopper, search = _shopper_arm(np.ones(300), values), _arm(values)
    assert (shopper.n, shopper.units) == (search.n, search.units) == (300, 300)
    assert shopper.mean == pytest.approx(search.mean)
    assert shopper.variance == pytest.approx(search.variance)
    assert shopper.interval() == pytest.approx(search.interval())


def test_shopper_moments_follow_a_changed_unit_and_give_the_delta_method_variance():
    rng = np.random.default_rng(5)
    searches, clicks = rng.integers(1, 8, 200), rng.poisson(2.0, 200)
    arm = _shopper_arm(np.ones(200), np.zeros(200))
    for unit, (s, c) in enumerate(zip(searches, clicks)):  # grow each unit from (1, 0) to its values
        arm.change((1.0, 0.0), (float(s), float(c)))
    assert arm.units == 200 and arm.n == searches.sum()
    ratio = clicks.sum() / searches.sum()
    assert arm.mean == pytest.approx(ratio)
    linearized = (clicks - ratio * searches) / searches.mean()  # the delta method's per-unit influence
    assert arm.variance / arm.n == pytest.approx(linearized.var(ddof=1) / 200)


def test_shopper_units_keep_an_aa_test_honest_when_shoppers_differ():
    """Shoppers who click more do so in each of their 10 searches. Counted per search, a fixed-look 5% test of
    two identical arms decides far more often than 5%; counted per shopper, about 5%."""
    rng = np.random.default_rng(6)
    per_search = per_shopper = 0
    runs = 400
    for _ in range(runs):
        arms = [_shoppers(rng, 200, 10, 0.8, heterogeneity=0.5) for _ in range(2)]
        by_search = [_arm(arm.ravel()) for arm in arms]
        by_shopper = [_by_shopper(arm) for arm in arms]
        for tallies, counter in ((by_search, "search"), (by_shopper, "shopper")):
            control, treatment = tallies
            spread = math.sqrt(control.variance / control.n + treatment.variance / treatment.n)
            z = (treatment.mean - control.mean) / spread
            if abs(z) > 1.96:
                if counter == "search":
                    per_search += 1
                else:
                    per_shopper += 1
    assert wilson(per_shopper, runs)[0] <= 0.05 <= wilson(per_shopper, runs)[1] + 0.02
    assert wilson(per_search, runs)[0] > 0.15


def test_ab_decision_waits_for_enough_shoppers():
    one_each = [_shopper_arm([500], [100]), _shopper_arm([500], [900])]
    assert one_each[0].n == 500 and ab_decision(*one_each).outcome == UNDECIDED
    rng = np.random.default_rng(7)
    many = [_by_shopper(_shoppers(rng, 1000, 3, rate, heterogeneity=0.3)) for rate in (0.5, 0.7)]
    assert ab_decision(*many).outcome == BETTER


def test_a_saved_per_search_tally_loads_as_one_search_units():
    loaded = ShopperMoments.from_json({"n": 5, "total": 3.0, "squares": 5.0})
    search = Moments(5, 3.0, 5.0)
    assert (loaded.units, loaded.n, loaded.mean) == (5, 5, search.mean)
    assert loaded.variance == pytest.approx(search.variance)
    assert ShopperMoments.from_json(asdict(loaded)) == loaded
