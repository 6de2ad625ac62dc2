"""benchmarks/interleaving_sim.py without a service: the click model, each query's exact outcomes, the simulated
experiments (decided exactly where the service's tests decide) and the JSON object, on tiny synthetic rankings."""

from __future__ import annotations

import itertools
import json
import math
import random

import numpy as np
import pytest

from benchmarks import interleaving_sim as sim
from orchestrator.experiments.arms import parse_arm
from orchestrator.experiments.interleave import credit, team_draft
from core.errors import InvalidRequest
from orchestrator.experiments.stats import (ALPHA, InterleavingTally, Moments, ShopperMoments, ab_decision,
                                            interleaving_log_ratio)

MODEL = sim.ClickModel(eta=1.0, epsilon=0.1, max_gain=2.0)


def query(control, treatment, judged, name="q") -> sim.Replayed:
    return sim.Replayed(name, tuple(control), tuple(treatment), judged)


def synthetic(count: int = 30, seed: int = 0) -> list[sim.Replayed]:
    """Queries whose treatment sorts its products by gain (with noise) and whose control shuffles them."""
    rng = random.Random(seed)
    replayed = []
    for number in range(count):
        products = [f"q{number}-p{index}" for index in range(15)]
        judged = {product: float(rng.choice((0, 0, 1, 2))) for product in products}
        control = rng.sample(products, 10)
        treatment = sorted(products, key=lambda p: -judged[p] + rng.random() * 1.5)[:10]
        replayed.append(query(control, treatment, judged, f"q{number}"))
    return replayed


def test_click_model_examines_by_rank_and_is_drawn_to_gain():
    probabilities = MODEL.click_probabilities([2.0, 0.0, 1.0, 5.0])
    assert probabilities == pytest.approx([1.0, 0.5 * 0.1, (0.1 + 0.9 * 1 / 3) / 3, 1 / 4])  # gains clip at the top
    steep = sim.ClickModel(eta=2.0, epsilon=0.0, max_gain=3.0)
    assert steep.click_probabilities([3.0, 3.0]) == pytest.approx([1, 1 / 4])


def test_click_count_distribution_is_the_sum_of_independent_clicks():
    probabilities = [0.9, 0.3, 0.5]
    expected = np.zeros(sim.DEPTH + 1)
    for clicks in itertools.product((0, 1), repeat=3):
        expected[sum(clicks)] += math.prod(p if c else 1 - p for p, c in zip(probabilities, clicks))
    assert sim.click_count_distribution(probabilities) == pytest.approx(expected)


def test_drafts_are_every_team_draft_equally_likely():
    control, treatment = list("abcdefghij"), list("jihgfedcba")
    shown = sim.drafts(control, treatment)
    assert len(shown) == 32
    rng = random.Random(3)
    for _ in range(50):
        assert team_draft(control, treatment, sim.DEPTH, rng) in shown


def test_interleaving_chances_agree_with_team_draft_and_credit_drawn_at_random():
    replayed = query(["a", "b", "c", "d", "e", "f"], ["d", "a", "g", "h", "b", "i"],
                     {"a": 1.0, "b": 0.0, "c": 2.0, "d": 2.0, "g": 1.0, "h": 0.0})
    win, loss = sim.interleaving_chances(replayed, MODEL)
    rng, draws, outcomes = random.Random(7), 20_000, []
    for _ in range(draws):
        shown = team_draft(replayed.control, replayed.treatment, sim.DEPTH, rng)
        probabilities = MODEL.click_probabilities(replayed.gains([product for product, _ in shown]))
        clicked = [position for position, p in enumerate(probabilities, 1) if rng.random() < p]
        outcomes.append(credit([team for _, team in shown], clicked))
    spread = 4 * math.sqrt(0.25 / draws)
    assert outcomes.count(1) / draws == pytest.approx(win, abs=spread)
    assert outcomes.count(-1) / draws == pytest.approx(loss, abs=spread)


def test_a_treatment_ranking_the_relevant_product_first_wins_more_often():
    products = [f"p{index}" for index in range(10)]
    judged = {"p9": 2.0}
    last, first = products, ["p9", *products[:9]]
    win, loss = sim.interleaving_chances(query(last, first, judged), MODEL)
    assert win > loss + 0.2
    win, loss = sim.interleaving_chances(query(first, last, judged), MODEL)
    assert loss > win + 0.2
    result = sim.outcomes([query(last, first, judged)], MODEL)
    assert result.aa_win == pytest.approx(result.aa_loss)  # the control against itself: a fair coin
    ks = np.arange(sim.DEPTH + 1)
    assert result.clicks_treatment @ ks > result.clicks_control @ ks


def test_the_interleaving_boundary_is_where_the_services_test_decides():
    margins = sim.InterleavingBoundary().upto(120)
    for decisive in range(121):
        deciding = [m for m in range(1, decisive + 1) if (decisive - m) % 2 == 0
                    and interleaving_log_ratio((decisive + m) // 2, (decisive - m) // 2) >= math.log(1 / ALPHA)]
        assert margins[decisive] == (min(deciding) if deciding else sim.NEVER)


def test_simulated_interleaving_decides_exactly_where_the_services_tally_does():
    experiments, cap, win, loss = 6, sim.BLOCK + 500, 0.33, 0.27
    decisions = sim.simulate_interleaving(win, loss, experiments, cap, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    draws = np.concatenate([rng.random((experiments, sim.BLOCK)) for _ in range(2)], axis=1)[:, :cap]
    for row in range(experiments):
        tally, at, sign = InterleavingTally(), np.inf, 0
        for position, u in enumerate(draws[row], 1):
            if u < win + loss:
                tally.add(1 if u < win else -1)
            decision = tally.decision()
            if decision.decided:
                at, sign = position, 1 if decision.outcome == "treatment better" else -1
                break
        assert (decisions.at[row], decisions.sign[row]) == (at, sign)
    assert np.isfinite(decisions.at).sum() >= 3  # the check compared decisions, not only their absence


def test_simulated_ab_decides_exactly_where_the_services_test_does():
    clicks_control = np.array([0.5, 0.3, 0.2] + [0.0] * 8)
    clicks_treatment = np.array([0.4, 0.35, 0.25] + [0.0] * 8)
    experiments, cap = 4, sim.BLOCK + 1000
    decisions = sim.simulate_ab(clicks_control, clicks_treatment, experiments, cap, np.random.default_rng(2))
    rng = np.random.default_rng(2)
    arms, draws = [], []
    for _ in range(2):
        arms.append(rng.random((experiments, sim.BLOCK)) < 0.5)
        draws.append(rng.random((experiments, sim.BLOCK)))
    arms, draws = np.concatenate(arms, axis=1)[:, :cap], np.concatenate(draws, axis=1)[:, :cap]
    cdfs = np.cumsum([clicks_control, clicks_treatment], axis=1)
    for row in range(experiments):
        tallies, at, sign = (Moments(), Moments()), np.inf, 0
        for position, (arm, u) in enumerate(zip(arms[row], draws[row]), 1):
            tallies[int(arm)].add(float(min(np.searchsorted(cdfs[int(arm)], u, side="right"), 10)))
            decision = ab_decision(*tallies)
            if decision.decided:
                at, sign = position, 1 if decision.outcome == "treatment better" else -1
                break
        assert (decisions.at[row], decisions.sign[row]) == (at, sign)
    assert np.isfinite(decisions.at).sum() >= 2


def test_ab_log_ratio_is_the_services():
    rng = np.random.default_rng(0)
    for _ in range(50):
        arms = []
        for _ in range(2):
            values = rng.integers(0, 4, size=int(rng.integers(100, 400))).astype(float)
            arms.append(Moments(len(values), values.sum(), (values * values).sum()))
        log_ratio, _ = sim.ab_log_ratio(*(np.array([getattr(arm, field)], dtype=float)
                                          for arm in arms for field in ("n", "total", "squares")))
        assert log_ratio[0] == pytest.approx(ab_decision(*arms).log_ratio, rel=1e-12)


def test_aa_experiments_rarely_decide_and_differing_arms_decide_right():
    result = sim.outcomes(synthetic(), MODEL)
    figures = sim.simulate(result, experiments=200, cap=3000, seed=1)
    assert figures["aa"]["interleaving"]["rate"] <= 0.1
    assert figures["aa"]["ab"]["rate"] <= 0.1
    assert figures["aa_false_rate"] == max(figures["aa"]["interleaving"]["rate"], figures["aa"]["ab"]["rate"])
    assert figures["interleaving"]["decided_right"] >= 0.8 and not figures["queries_to_decide_interleaving_at_least"]
    assert figures["queries_to_decide_interleaving"] < figures["queries_to_decide_ab"]
    assert figures == sim.simulate(result, experiments=200, cap=3000, seed=1)  # deterministic for a seed


def test_queries_to_decide_is_a_lower_bound_when_too_few_decide_right():
    decisions = sim.Decisions(np.array([10.0, 20.0, np.inf, 30.0, 40.0]), np.array([1, 1, 0, -1, 1], dtype=np.int8))
    figure = sim.queries_to_decide(decisions, truth=1, cap=100)
    assert (figure["queries"], figure["at_least"]) == (100, True)  # 3 of 5 right: not 80% by the cap
    assert figure["decided_right"] == 0.6 and figure["decided_wrong"] == 0.2
    decisions = sim.Decisions(np.array([10.0, 20.0, 50.0, 30.0, 40.0]), np.ones(5, dtype=np.int8))
    assert sim.queries_to_decide(decisions, truth=1, cap=100)["queries"] == 40


def test_fixed_horizon_follows_the_power_formulas():
    clicks = np.zeros(sim.DEPTH + 1)
    result = sim.Outcomes(0.3, 0.2, 0.25, 0.25, np.array([0.5, 0.5, *clicks[2:]]), np.array([0.4, 0.6, *clicks[2:]]))
    planned = sim.fixed_horizon(result)
    decisive = ((1.959964 * 0.5 + 0.841621 * math.sqrt(0.24)) / 0.1) ** 2
    assert planned["interleaving"] == math.ceil(decisive / 0.5)
    assert planned["ab"] == math.ceil(2 * (1.959964 + 0.841621) ** 2 * (0.25 + 0.24) / 0.01)
    assert sim.fixed_horizon(sim.Outcomes(0.2, 0.2, 0.2, 0.2, clicks + 1 / 11, clicks + 1 / 11))["ratio"] is None


def test_search_request_asks_for_the_arm_as_an_anonymous_shopper():
    request = sim.search_request(parse_arm("no-cross-encoder,no-personalization"), "drill")
    assert (request.query, request.top_k, request.user_id) == ("drill", 10, "")
    assert request.skip_cross_encoder and request.skip_personalization and not request.skip_rerank
    assert sim.search_request(parse_arm("fused"), "drill").skip_rerank
    assert dict(sim.search_request(parse_arm("weights=bm25:1+dense:0.5"), "drill").combination_weights) == {
        "bm25": 1.0, "dense": 0.5}


def test_a_reranker_version_arm_is_refused_with_what_to_do_instead(capsys):
    with pytest.raises(SystemExit):
        sim.parse_args(["--target", "localhost:1", "--treatment", "reranker=3"])
    assert "--reranker-version 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sim.parse_args(["--target", "localhost:1", "--control", "bogus"])
    assert "unknown part" in capsys.readouterr().err


def test_the_json_object_has_the_issues_keys():
    _, args = sim.parse_args(["--target", "localhost:1", "--json"])
    replayed = synthetic(12)
    figures = sim.simulate(sim.outcomes(replayed, MODEL), experiments=200, cap=1000, seed=0)
    result = sim.report(args, replayed, {"skipped_queries": 0}, MODEL, figures, {"replay": 0.0, "simulation": 0.0})
    assert list(result)[:4] == ["queries_to_decide_interleaving", "queries_to_decide_ab", "ratio", "aa_false_rate"]
    for key in ("control", "treatment", "queries", "ndcg@10", "click_model", "experiments", "seed", "fixed_horizon",
                "queries_to_decide_ab_at_least", "aa"):
        assert key in result
    assert (result["control"], result["treatment"], result["queries"]) == ("fused", "default", 12)
    assert set(result["ndcg@10"]) == {"control", "treatment", "difference", "difference_95"}
    json.loads(json.dumps(result, allow_nan=False))  # plain JSON: no NaN or Infinity
    sim.print_table(result)


# ---- shoppers who differ ------------------------------------------------------------------------------------------

def shoppers(variance: float = 0.3, searches=(1, 2, 3)) -> sim.Shoppers:
    return sim.Shoppers(variance, tuple(searches), "test")


def test_a_shoppers_factor_scales_the_click_chances_up_to_one():
    base = MODEL.click_probabilities([2.0, 1.0, 0.0])
    assert sim.replace(MODEL, factor=0.5).click_probabilities([2.0, 1.0, 0.0]) == pytest.approx(base * 0.5)
    steep = sim.replace(MODEL, factor=3.0)
    assert steep.click_probabilities([2.0, 1.0, 0.0]) == pytest.approx(np.minimum(base * 3, 1))


def test_sum_distributions_are_the_convolution_powers_of_one_search():
    one = np.array([0.5, 0.3, 0.2])
    table = sim.sum_distributions(one, 3)
    assert table[0][0] == 1.0 and table[1][:3] == pytest.approx(one)
    assert table[2][:5] == pytest.approx(np.convolve(one, one))
    assert table.sum(axis=1) == pytest.approx(np.ones(4))


def test_the_shopper_stream_gives_each_shopper_a_run_of_queries_in_one_bin():
    searches = np.array([3])
    stream = sim.ShopperStream(2, searches, 5, np.random.default_rng(0))
    first, second = stream.bins_of_queries(np.array([0, 1]), 7), stream.bins_of_queries(np.array([0]), 5)
    row = np.concatenate([first[0], second[0]])
    assert all(len(set(row[start:start + 3])) == 1 for start in range(0, 12, 3))  # runs of 3, across the blocks
    assert set(np.unique(np.concatenate([first.ravel(), second.ravel()]))) <= set(range(5))


def test_ab_log_ratio_over_shopper_units_is_the_services():
    rng = np.random.default_rng(1)
    for _ in range(30):
        arms = []
        for _ in range(2):
            arm = ShopperMoments()
            for _ in range(int(rng.integers(100, 300))):
                made = int(rng.integers(1, 5))
                arm.change((0, 0), (made, float(rng.poisson(0.8 * made * rng.gamma(2.0, 0.5)))))
            arms.append(arm)
        fields = ("units", "searches", "total", "searches_squares", "squares", "cross")
        log_ratio, _ = sim.ab_log_ratio_units(*(np.array([getattr(arm, f)], dtype=float)
                                                for arm in arms for f in fields))
        assert log_ratio[0] == pytest.approx(ab_decision(*arms).log_ratio, rel=1e-9)


def test_shoppers_alike_with_one_search_each_give_the_per_search_figures():
    result = sim.outcomes(synthetic(), MODEL)
    alike = sim.Population((result,), shoppers(0.0, (1,)))
    assert sim.fixed_horizon_shoppers(alike) == sim.fixed_horizon(result)
    pooled = alike.pooled
    assert (pooled.win, pooled.loss, pooled.aa_win, pooled.aa_loss) == (result.win, result.loss, result.aa_win,
                                                                         result.aa_loss)
    assert pooled.clicks_treatment == pytest.approx(result.clicks_treatment)


def test_shoppers_who_differ_keep_aa_experiments_honest_and_make_ab_need_more_searches():
    replayed = synthetic()
    alike = sim.simulate(sim.outcomes(replayed, MODEL), experiments=200, cap=5000, seed=2)
    differ = sim.simulate(sim.population(replayed, MODEL, shoppers(0.5, (1, 2, 3, 8)), bins=8),
                          experiments=200, cap=5000, seed=2)
    assert differ["aa"]["ab"]["rate"] <= 0.1 and differ["aa"]["interleaving"]["rate"] <= 0.1
    assert differ["shoppers"]["activity_variance"] == 0.5 and alike["shoppers"] == "alike"
    # Shoppers who differ and come back make A/B's variance per search larger; interleaving compares within a query.
    assert differ["fixed_horizon"]["ab"] > 1.5 * alike["fixed_horizon"]["ab"]
    assert differ["queries_to_decide_ab"] > alike["queries_to_decide_ab"]


def test_shoppers_are_fitted_from_a_purchase_log(tmp_path):
    log = tmp_path / "events.csv"
    rows = ["user_id,order_id,order_number,day,product_id,event"]
    for user, items in (("a", 2), ("b", 2), ("c", 2)):
        for order, day in enumerate((0, 3, 20)):
            rows += [f"{user},{user}{order},{order},{day},p{item},purchase" for item in range(items)]
    log.write_text("\n".join(rows) + "\n")
    same = sim.fit(log, days=14)
    assert same.activity_variance == 0.0  # every shopper buys 2 items an order
    assert set(same.searches) == {1, 2} and same.summary()["searches_per_shopper"]["max"] == 2
    assert set(sim.fit(log, days=14, searches_per_order=3).searches) == {3, 6}
    rows += [f"d,d{order},{order},{order},p{item},purchase" for order in range(4) for item in range(20)]
    log.write_text("\n".join(rows) + "\n")
    assert sim.fit(log).activity_variance > 0.5
    assert np.mean(sim.fit(log).factors(20)) == pytest.approx(1.0)


def test_a_purchase_log_that_cannot_be_used_is_refused_with_the_reason(tmp_path):
    with pytest.raises(InvalidRequest, match="cannot read"):
        sim.fit(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,product_id\n1,2\n")
    with pytest.raises(InvalidRequest, match="no column day, order_id"):
        sim.fit(bad)


def test_a_saved_replay_is_simulated_again_for_the_same_arms_only(tmp_path, capsys):
    path = tmp_path / "replay.json"
    _, args = sim.parse_args(["--target", "localhost:1", "--save-replay", str(path)])
    replayed = synthetic(5)
    sim.save_replay(path, args, replayed, {"skipped_queries": 1}, 2.0)
    parser, again = sim.parse_args(["--replay", str(path)])
    assert sim.load_replay(parser, again) == (replayed, {"skipped_queries": 1}, 2.0)
    parser, other = sim.parse_args(["--replay", str(path), "--treatment", "no-cross-encoder"])
    with pytest.raises(SystemExit):
        sim.load_replay(parser, other)
    assert "treatment 'default' (asked: 'no-cross-encoder')" in capsys.readouterr().err
