"""orchestrator.experiments.controller (start, assign, join, the saved state, the decision) and the rollout
controller's interleaved mode, whose quality guard is an experiment of that controller."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

import orchestrator.experiments.controller as controller_module
from core.errors import ConfigError, ExperimentError, InvalidRequest, RolloutError
from core.settings import Settings
from orchestrator.experiments.controller import ExperimentController
from orchestrator.experiments.interleave import CONTROL, TREATMENT
from orchestrator.experiments.stats import BETTER, UNDECIDED, WORSE
from orchestrator.rollout.controller import RolloutController
from orchestrator.rollout.versions import VersionLoader
from orchestrator.search import SearchQuery
from tests.unit.orchestrator.test_rollout_controller import CONFIG, FakeTriton

C, T = CONTROL, TREATMENT
PRODUCTS = ["p1", "p2", "p3", "p4"]
TEAMS = [C, T, T, C]  # the team that placed each of PRODUCTS


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def interleaving(name: str = "exp", share: float = 1.0, **options) -> ExperimentController:
    """A controller (no state file) running an interleaving experiment of `fused` against the default ranking."""
    controller = ExperimentController(None, **options)
    controller.start(name, "default", "fused", "interleave", share)
    return controller


def serve(controller: ExperimentController, request_id: str, products=PRODUCTS, arms=TEAMS, user: str = "") -> None:
    """An answer in the running experiment was shown."""
    assignment = controller.assign(user, request_id)
    assert assignment is not None, "the test's share takes every search"
    controller.served(request_id, assignment, list(products), list(arms))


def tally(controller: ExperimentController, name: str = "exp") -> tuple[int, int, int]:
    figures = controller.status(name)[0]["interleaving"]
    return figures["wins"], figures["losses"], figures["ties"]


# ------------------------------------------------------------------------------------------------ start and stop

@pytest.mark.parametrize("arguments, named", [
    ({"name": ""}, "an experiment's name"),
    ({"name": "two words"}, "an experiment's name"),
    ({"name": "a/b"}, "an experiment's name"),
    ({"name": "x" * 65}, "an experiment's name"),
    ({"method": "bandit"}, "method must be one of interleave, ab"),
    ({"share": 0.0}, "share must lie in (0, 1]"),
    ({"share": 1.5}, "share must lie in (0, 1]"),
    ({"share": -0.1}, "share must lie in (0, 1]"),
    ({"share": float("nan")}, "share must lie in (0, 1]"),
    ({"treatment": "bogus"}, "unknown part 'bogus'"),
    ({"control": "reranker=new"}, "a reranker version is a number"),
    ({"treatment": "default"}, "the same arm"),
    ({"control": "FUSED ", "treatment": "fused"}, "the same arm"),
])
def test_start_refuses_a_malformed_experiment_and_records_nothing(arguments, named):
    controller = ExperimentController(None)
    values = {"name": "exp", "control": "default", "treatment": "fused", "method": "interleave", "share": 0.5,
              **arguments}
    with pytest.raises(InvalidRequest) as raised:
        controller.start(**values)
    assert named in str(raised.value)
    assert controller.experiments == {} and controller.running is None


def test_the_longest_name_and_every_allowed_character_are_taken():
    controller = ExperimentController(None)
    name = "Aa0._-" + "x" * 58
    experiment = controller.start(name, "default", "no-cross-encoder", "ab", 1.0)
    assert controller.running is experiment and experiment.name == name and len(name) == 64


def test_one_experiment_runs_at_a_time_and_a_name_is_never_reused():
    controller = interleaving("first")
    with pytest.raises(ExperimentError, match="experiment 'first' is running: stop it first"):
        controller.start("second", "default", "no-cross-encoder", "ab", 0.5)
    assert list(controller.experiments) == ["first"]
    stopped = controller.stop("first")
    assert not stopped.running and controller.running is None
    with pytest.raises(ExperimentError, match="stopped already"):
        controller.stop("first")
    with pytest.raises(ExperimentError, match="an experiment named 'first' ran already"):
        controller.start("first", "default", "no-cross-encoder", "ab", 0.5)
    second = controller.start("second", "default", "no-cross-encoder", "ab", 0.5)
    assert controller.running is second
    assert [status["name"] for status in controller.status()] == ["first", "second"]
    with pytest.raises(ExperimentError, match="no experiment named 'third'"):
        controller.status("third")


def test_two_texts_of_the_same_arm_are_refused_as_an_a_a_experiment():
    controller = ExperimentController(None)
    with pytest.raises(InvalidRequest, match="the same arm"):
        controller.start("aa", "weights=bm25:1+dense:0.5", "weights=dense:0.5+bm25:1", "interleave", 1.0)
    with pytest.raises(InvalidRequest, match="the same arm"):
        controller.start("aa", "default", "default,default", "interleave", 1.0)


def test_only_the_last_stopped_experiments_are_kept():
    controller = ExperimentController(None)
    for number in range(controller_module.MAX_STOPPED + 5):
        controller.start(f"e{number}", "default", "fused", "interleave", 1.0)
        controller.stop(f"e{number}")
    controller.start("running", "default", "fused", "interleave", 1.0)
    names = list(controller.experiments)
    assert len(names) == controller_module.MAX_STOPPED + 1 and names[-1] == "running"
    assert names[0] == "e5"  # the oldest stopped ones went first


# ------------------------------------------------------------------------------------------------------- assign

USERS = [f"user-{number}" for number in range(2000)]


def test_assignment_is_sticky_and_takes_about_the_share_of_users():
    controller = interleaving(share=0.3)
    taken = {user for user in USERS if controller.assign(user, f"request-of-{user}") is not None}
    assert 0.25 <= len(taken) / len(USERS) <= 0.35
    # The same user, whatever the request: the same answer.
    assert {user for user in USERS if controller.assign(user, "another request") is not None} == taken
    assignment = controller.assign(next(iter(taken)), "r")
    assert assignment.experiment == "exp" and assignment.method == "interleave" and assignment.arm == ""
    assert (assignment.control.text, assignment.treatment.text) == ("default", "fused")


def test_raising_the_share_only_adds_users():
    controller = interleaving(share=0.2)
    at20 = {user for user in USERS if controller.assign(user, "") is not None}
    controller.running.share = 0.5  # what the rollout's shift does
    at50 = {user for user in USERS if controller.assign(user, "") is not None}
    assert at20 < at50 and 0.45 <= len(at50) / len(USERS) <= 0.55


def test_an_ab_user_stays_in_one_arm_and_the_arms_split_the_share():
    controller = ExperimentController(None)
    controller.start("ab", "default", "fused", "ab", 0.6)
    arms = {}
    for user in USERS:
        assignment = controller.assign(user, "r1")
        if assignment is not None:
            arms[user] = assignment.arm
            again = controller.assign(user, "r2")
            assert again.arm == assignment.arm and again.method == "ab"
    assert 0.55 <= len(arms) / len(USERS) <= 0.65
    treated = sum(arm == T for arm in arms.values()) / len(arms)
    assert set(arms.values()) == {C, T} and 0.45 <= treated <= 0.55
    # Each arm ranks the query as its own text says.
    user = next(user for user, arm in arms.items() if arm == T)
    assert controller.assign(user, "r").arm_query(SearchQuery("drill")).skip_rerank is True
    user = next(user for user, arm in arms.items() if arm == C)
    assert controller.assign(user, "r").arm_query(SearchQuery("drill")).skip_rerank is False


def test_an_anonymous_search_is_assigned_by_its_request_id():
    controller = interleaving(share=0.3)
    requests = [f"request-{number}" for number in range(2000)]
    taken = {request for request in requests if controller.assign("", request) is not None}
    assert 0.25 <= len(taken) / len(requests) <= 0.35
    assert {request for request in requests if controller.assign("", request) is not None} == taken


def test_no_assignment_when_nothing_runs_or_after_the_stop():
    controller = ExperimentController(None)
    assert controller.assign("user-1", "r1") is None
    controller.start("exp", "default", "fused", "interleave", 1.0)
    assert all(controller.assign(user, "r") is not None for user in USERS[:50])
    controller.stop("exp")
    assert all(controller.assign(user, "r") is None for user in USERS[:50])


# ---------------------------------------------------------------------------------------------- interleave join

def test_a_click_on_a_treatment_position_is_a_win_and_a_later_control_click_makes_it_a_tie():
    controller = interleaving()
    serve(controller, "r1")
    assert controller.join("r1", "p2", "click", 2) == ("exp", T, 2)
    assert tally(controller) == (1, 0, 0)
    assert controller.join("r1", "p1", "click", 1) == ("exp", C, 1)
    assert tally(controller) == (0, 0, 1)  # the same query, recounted: not a win and a tie
    assert controller.join("r1", "p1", "click", 1) == ("exp", C, 1)  # the same position again
    assert tally(controller) == (0, 0, 1)
    controller.join("r1", "p3", "cart", 3)  # a cart implies a click: treatment 2, control 1
    assert tally(controller) == (1, 0, 0)
    experiment = controller.get("exp")
    assert experiment.shown == 1 and experiment.feedback_joined == 4 and experiment.feedback_unjoined == 0


def test_each_query_counts_once_in_the_tally():
    controller = interleaving()
    for request, position in (("r1", 2), ("r2", 1), ("r3", 4), ("r4", 3)):
        serve(controller, request)
        controller.join(request, PRODUCTS[position - 1], "click", position)
    assert tally(controller) == (2, 2, 0)
    figures = controller.status("exp")[0]["interleaving"]
    assert figures["clicked"] == 4 and figures["treatment_share"] == 0.5


def test_a_position_that_does_not_show_the_product_is_corrected_from_the_answer():
    controller = interleaving()
    serve(controller, "r1")
    assert controller.join("r1", "p2", "click", 4) == ("exp", T, 2)  # p2 is at 2, p4 (control) at 4
    assert controller.join("r1", "p3", "click", 0) == ("exp", T, 3)  # no position given
    assert controller.join("r1", "p3", "click", 99) == ("exp", T, 3)  # past the answer
    assert tally(controller) == (1, 0, 0)


def test_a_product_the_answer_did_not_show_is_joined_but_credits_nobody():
    controller = interleaving()
    serve(controller, "r1")
    assert controller.join("r1", "elsewhere", "click", 2) == ("exp", "", 0)
    assert tally(controller) == (0, 0, 0)
    assert controller.get("exp").feedback_joined == 1
    controller.join("r1", "p1", "click", 1)  # the answer's clicks still count
    assert tally(controller) == (0, 1, 0)


def test_views_are_joined_but_credit_nobody():
    controller = interleaving()
    serve(controller, "r1")
    assert controller.join("r1", "p2", "view", 2) == ("exp", T, 2)
    assert tally(controller) == (0, 0, 0) and controller.get("exp").feedback_joined == 1
    controller.join("r1", "p2", "click", 2)  # a view did not take the position's click
    assert tally(controller) == (1, 0, 0)


def test_feedback_naming_an_unknown_request_counts_as_unjoined_while_an_experiment_runs():
    controller = ExperimentController(None)
    assert controller.join("nowhere", "p1", "click", 3) == ("", "", 3)  # nothing runs: nothing to count
    controller.start("exp", "default", "fused", "interleave", 1.0)
    assert controller.join("nowhere", "p1", "click", 3) == ("", "", 3)
    assert controller.join("", "p1", "click", 3) == ("", "", 3)  # names no request: not feedback on an answer
    experiment = controller.get("exp")
    assert experiment.feedback_unjoined == 1 and experiment.feedback_joined == 0
    assert tally(controller) == (0, 0, 0)


def test_an_answer_is_joinable_for_the_join_window_only():
    clock = Clock()
    controller = interleaving(monotonic=clock, join_window_s=60.0)
    serve(controller, "early")
    serve(controller, "late")
    clock.now += 59.0
    assert controller.join("early", "p2", "click", 2) == ("exp", T, 2)
    clock.now += 1.0  # 60 s after both were shown
    assert controller.join("late", "p2", "click", 2) == ("", "", 2)
    assert controller.join("early", "p1", "click", 1) == ("", "", 1)
    experiment = controller.get("exp")
    assert tally(controller) == (1, 0, 0) and experiment.feedback_unjoined == 2 and experiment.feedback_joined == 1


def test_a_jump_of_the_wall_clock_neither_ends_nor_extends_the_join_window():
    wall, monotonic = Clock(), Clock(50.0)
    controller = interleaving(clock=wall, monotonic=monotonic, join_window_s=60.0)
    serve(controller, "before")
    wall.now += 7200.0  # the wall clock steps 2 h ahead (NTP, a VM resumed): the window has not passed
    assert controller.join("before", "p2", "click", 2) == ("exp", T, 2)
    wall.now -= 7200.0 * 2  # and 2 h behind the true time: it does not last longer either
    monotonic.now += 60.0
    assert controller.join("before", "p1", "click", 1) == ("", "", 1)
    experiment = controller.get("exp")
    assert experiment.feedback_joined == 1 and experiment.feedback_unjoined == 1
    assert experiment.started == 1_000_000.0  # what is saved and shown stays in wall time


def test_only_the_newest_answers_wait_past_max_waiting():
    controller = interleaving(max_waiting=3)
    for number in range(5):
        serve(controller, f"r{number}")
    assert controller.join("r1", "p2", "click", 2)[0] == ""  # pushed out
    assert controller.join("r2", "p2", "click", 2)[0] == "exp"
    assert controller.get("exp").shown == 5


def test_feedback_on_an_answer_of_a_stopped_experiment_credits_nothing():
    controller = interleaving()
    serve(controller, "r1")
    controller.stop("exp")
    assert controller.join("r1", "p2", "click", 2) == ("", "", 2)
    assert tally(controller) == (0, 0, 0)
    controller.start("next", "default", "no-cross-encoder", "interleave", 1.0)
    controller.join("r1", "p2", "click", 2)  # another experiment's answer: not this one's either
    assert controller.get("next").feedback_unjoined == 1 and tally(controller, "next") == (0, 0, 0)


def test_an_answer_outside_a_running_experiment_is_not_kept():
    controller = interleaving()
    assignment = controller.assign("u", "r1")
    controller.stop("exp")
    controller.served("r1", assignment, PRODUCTS, TEAMS)
    assert controller.get("exp").shown == 0


def test_the_interleaving_figures_count_the_answers_shown():
    controller = interleaving()
    for number in range(3):
        serve(controller, f"r{number}")
    status = controller.status("exp")[0]
    assert status["shown"] == 3
    assert status["interleaving"]["shown"] == 3


# ------------------------------------------------------------------------------------------------------ A/B join

def ab_controller() -> tuple[ExperimentController, str, str]:
    """An A/B experiment on every search, and a user in each arm (control, treatment)."""
    controller = ExperimentController(None)
    controller.start("ab", "default", "fused", "ab", 1.0)
    users = {controller.assign(user, "").arm: user for user in USERS[:50]}
    return controller, users[C], users[T]


TWELVE = [f"p{number}" for number in range(1, 13)]


def ab_searches(controller: ExperimentController, users, prefix: str = "r", clicks=lambda number, arm: 1) -> None:
    """One search by each of `users` in the running A/B experiment, ranked by their arm, whose top `clicks(number,
    arm)` products are clicked (number: the user's place in `users`)."""
    for number, user in enumerate(users):
        arm = controller.assign(user, "").arm
        serve(controller, f"{prefix}{number}", TWELVE, [arm] * 12, user=user)
        for position in range(1, clicks(number, arm) + 1):
            controller.join(f"{prefix}{number}", f"p{position}", "click", position)


def test_ab_counts_clicks_in_the_top_10_once_per_position_and_every_purchase():
    controller, control_user, treatment_user = ab_controller()
    serve(controller, "c1", TWELVE, [C] * 12, user=control_user)
    serve(controller, "c2", TWELVE, [C] * 12, user=control_user)
    serve(controller, "t1", TWELVE, [T] * 12, user=treatment_user)
    assert controller.join("c1", "p1", "click", 1) == ("ab", C, 1)
    controller.join("c1", "p3", "click", 3)
    controller.join("c1", "p1", "click", 1)  # the same position again
    controller.join("c1", "p11", "click", 11)  # below the top 10
    controller.join("c1", "p3", "purchase", 3)  # clicked already: a purchase, no more clicks
    controller.join("c1", "p5", "purchase", 5)  # a purchase implies its click
    controller.join("c1", "p7", "view", 7)
    controller.join("t1", "p2", "click", 2)
    arms = controller.status("ab")[0]["arms"]
    assert controller.status("ab")[0]["interleaving"] is None
    assert arms[C]["spec"] == "default" and arms[T]["spec"] == "fused"
    assert arms[C]["searches"] == 2 and arms[T]["searches"] == 1
    assert arms[C]["clicks_per_search"] == pytest.approx(3 / 2)  # c1: positions 1, 3 and 5; c2: none
    assert arms[C]["purchases_per_search"] == pytest.approx(2 / 2)
    assert arms[T]["clicks_per_search"] == pytest.approx(1.0) and arms[T]["purchases_per_search"] == 0.0
    experiment = controller.get("ab")
    assert experiment.shown == 3 and experiment.feedback_joined == 8


def test_ab_decides_for_the_arm_with_more_clicks_per_search():
    controller = ExperimentController(None)
    controller.start("ab", "default", "fused", "ab", 1.0)
    ab_searches(controller, USERS[:800], clicks=lambda number, arm: (number % 4 == 0) if arm == C else 1 + number % 3)
    status = controller.status("ab")[0]
    assert status["arms"][T]["clicks_per_search"] > status["arms"][C]["clicks_per_search"]
    assert status["decision"] == BETTER


def test_ab_counts_a_shopper_once_however_many_searches_they_make():
    """The unit of an A/B test is the shopper it assigns: one shopper per arm, however many searches and however
    far apart their clicks, says nothing about the arms (the same searches from 800 shoppers decide, above)."""
    controller, control_user, treatment_user = ab_controller()
    for number in range(400):
        serve(controller, f"c{number}", TWELVE, [C] * 12, user=control_user)
        serve(controller, f"t{number}", TWELVE, [T] * 12, user=treatment_user)
        for position in range(1, 1 + number % 3 + 1):
            controller.join(f"t{number}", f"p{position}", "click", position)
    status = controller.status("ab")[0]
    assert status["arms"][C]["searches"] == status["arms"][T]["searches"] == 400
    assert status["arms"][C]["shopper_buckets"] == status["arms"][T]["shopper_buckets"] == 1
    assert status["arms"][T]["clicks_per_search"] == pytest.approx(2.0, abs=0.01)
    assert status["decision"] == UNDECIDED


# -------------------------------------------------------------------------------------------------- the decision

@pytest.mark.parametrize("position, outcome", [(2, BETTER), (1, WORSE)])
def test_a_hundred_one_sided_queries_decide_the_experiment(position, outcome):
    controller = interleaving()
    for number in range(100):
        serve(controller, f"r{number}")
        controller.join(f"r{number}", PRODUCTS[position - 1], "click", position)
    status = controller.status("exp")[0]
    assert status["decision"] == outcome and status["log_ratio"] >= status["threshold"]


def test_an_even_record_decides_nothing():
    controller = interleaving()
    for number in range(100):
        serve(controller, f"r{number}")
        position = 2 if number % 2 else 1
        controller.join(f"r{number}", PRODUCTS[position - 1], "click", position)
    assert tally(controller) == (50, 50, 0) and controller.status("exp")[0]["decision"] == UNDECIDED


# ----------------------------------------------------------------------------------------------------- the state

def test_a_restart_goes_on_with_the_running_experiment_and_its_figures(tmp_path):
    path = tmp_path / "state" / "experiments.json"
    clock = Clock()

    async def first_life():
        controller = ExperimentController(path, clock=clock).open()
        controller.start("exp", "reranker=1", "reranker=2,no-personalization", "interleave", 0.5)
        served = [user for user in USERS if controller.assign(user, "") is not None][:3]
        for number, user in enumerate(served):
            serve(controller, f"r{number}", user=user)
        controller.join("r0", "p2", "click", 2)
        controller.join("r1", "p1", "click", 1)
        controller.join("r2", "p3", "click", 3)
        controller.join("gone", "p3", "click", 3)
        await controller.close()
        return controller

    async def second_life():
        controller = ExperimentController(path, clock=clock).open()
        taken = {user for user in USERS if controller.assign(user, "") is not None}
        joined = controller.join("r0", "p3", "click", 3)  # the answers waiting for feedback lived in the first only
        await controller.close()
        return controller, taken, joined

    before = asyncio.run(first_life())
    taken_before = {user for user in USERS if before.assign(user, "") is not None}
    after, taken_after, joined = asyncio.run(second_life())
    assert after.running is not None and after.running.name == "exp"
    old, new = before.status("exp")[0], after.status("exp")[0]
    assert (old["shown"], old["interleaving"]["wins"], old["interleaving"]["losses"]) == (3, 2, 1)
    kept = ("control", "treatment", "share", "started", "shown", "interleaving", "feedback_joined", "guard")
    assert {key: new[key] for key in kept} == {key: old[key] for key in kept}
    assert new["feedback_unjoined"] == old["feedback_unjoined"] + 1 == 2
    assert joined == ("", "", 3)
    assert taken_after == taken_before  # the same users are in it
    assignment = after.assign(next(iter(taken_after)), "")
    assert assignment.treatment.text == "reranker=2,no-personalization" and assignment.treatment.personalize is False


def test_an_ab_shopper_keeps_their_unit_across_a_restart(tmp_path):
    path = tmp_path / "experiments.json"

    async def life(first: bool):
        controller = ExperimentController(path).open()
        if first:
            controller.start("ab", "default", "fused", "ab", 1.0)
        ab_searches(controller, USERS[:300], prefix="a" if first else "b")
        await controller.close()
        return controller.status("ab")[0]["arms"]

    once = asyncio.run(life(True))
    twice = asyncio.run(life(False))
    for arm in (C, T):
        assert twice[arm]["searches"] == 2 * once[arm]["searches"]
        assert twice[arm]["shopper_buckets"] == once[arm]["shopper_buckets"]  # the same shoppers' units, not new ones
        assert twice[arm]["clicks_per_search"] == 1.0


def test_the_saved_form_is_every_field_and_a_stopped_ab_test_keeps_its_figures_without_buckets():
    controller = ExperimentController(None)
    controller.start("ab", "default", "fused", "ab", 1.0)
    ab_searches(controller, USERS[:300])
    experiment = controller.get("ab")
    assert experiment.to_json() == dataclasses.asdict(experiment)
    running = experiment.status()["arms"]
    controller.stop("ab")
    assert all(tally.buckets == [] for tally in experiment.arms.values())
    saved = json.loads(json.dumps(experiment.to_json()))
    assert all(arm["buckets"] == [] for arm in saved["arms"].values())
    loaded = controller_module.Experiment.from_json(saved)
    assert loaded.status()["arms"] == running and loaded.to_json() == saved


def test_a_state_from_before_shopper_units_keeps_its_figures(tmp_path):
    """A/B figures saved per search (each search its own unit) load as that many one-search units."""
    path = tmp_path / "experiments.json"
    controller = ExperimentController(None)
    controller.start("ab", "default", "fused", "ab", 1.0)
    saved = controller.get("ab").to_json()
    saved["arms"] = {
        C: {"clicks": {"n": 4, "total": 2.0, "squares": 4.0}, "purchases": {"n": 4, "total": 0.0, "squares": 0.0}},
        T: {"clicks": {"n": 2, "total": 2.0, "squares": 2.0}, "purchases": {"n": 2, "total": 1.0, "squares": 1.0}}}
    path.write_text(json.dumps({"experiments": [saved]}))

    async def load():
        loaded = ExperimentController(path).open()
        await loaded.close()
        return loaded

    arms = asyncio.run(load()).status("ab")[0]["arms"]
    assert (arms[C]["searches"], arms[C]["clicks_per_search"]) == (4, 0.5)
    assert (arms[T]["searches"], arms[T]["purchases_per_search"]) == (2, 0.5)
    assert arms[C]["clicks_per_search_95"][0] < 0.5 < arms[C]["clicks_per_search_95"][1]


def test_a_stopped_experiment_stays_stopped_after_a_restart(tmp_path):
    path = tmp_path / "experiments.json"

    async def life(action):
        controller = ExperimentController(path).open()
        action(controller)
        await controller.close()
        return controller

    asyncio.run(life(lambda controller: controller.start("exp", "default", "fused", "ab", 1.0)))
    asyncio.run(life(lambda controller: controller.stop("exp")))
    restarted = asyncio.run(life(lambda controller: None))
    assert restarted.running is None and restarted.assign("user-1", "r") is None
    assert restarted.status("exp")[0]["running"] is False and restarted.status("exp")[0]["method"] == "ab"


def test_changes_are_saved_in_the_background_without_a_close(tmp_path, monkeypatch):
    monkeypatch.setattr(controller_module, "SAVE_EVERY_S", 0.01)
    path = tmp_path / "experiments.json"

    async def scenario():
        controller = ExperimentController(path).open()
        controller.start("exp", "default", "fused", "interleave", 1.0)
        serve(controller, "r1")
        controller.join("r1", "p2", "click", 2)
        for _ in range(200):
            await asyncio.sleep(0.01)
            saved = json.loads(path.read_text())["experiments"][0]
            if saved["interleaving"]["wins"] == 1:
                break
        await controller.close()
        return saved

    saved = asyncio.run(scenario())
    assert saved["shown"] == 1 and saved["interleaving"]["wins"] == 1 and saved["feedback_joined"] == 1


@pytest.mark.parametrize("content", ["{not json", '{"runs": []}', '{"experiments": [{"name": "exp"}]}',
                                     '{"experiments": [{"name": "exp", "method": "ab", "colour": "red"}]}'])
def test_a_corrupt_state_file_is_a_config_error_naming_it(tmp_path, content):
    path = tmp_path / "experiments.json"
    path.write_text(content)

    async def scenario():
        ExperimentController(path).open()

    with pytest.raises(ConfigError) as raised:
        asyncio.run(scenario())
    assert str(path) in str(raised.value)


def test_a_state_file_naming_an_arm_that_does_not_parse_is_a_config_error_naming_it(tmp_path):
    path = tmp_path / "experiments.json"
    record = {"name": "exp", "method": "interleave", "control": "default", "treatment": "reranker=two",
              "share": 1.0, "started": 1.0}
    path.write_text(json.dumps({"experiments": [record]}))

    async def scenario():
        ExperimentController(path).open()

    with pytest.raises(ConfigError, match=str(path)):
        asyncio.run(scenario())


# ------------------------------------------------------------------------- the rollout's interleaved quality guard

@pytest.fixture
def repository(tmp_path):
    """A model repository holding reranker versions 1, 2 and 3 (as in test_rollout_controller.py)."""
    folder = tmp_path / "repo" / "reranker"
    for version in ("1", "2", "3"):
        (folder / version).mkdir(parents=True)
        (folder / version / "combination.json").write_text(json.dumps({"latin": {"reranker": 1.0}}))
    (folder / "config.pbtxt").write_text(CONFIG)
    return tmp_path / "repo"


async def open_rollout(repository, tmp_path, clock=None) -> tuple[RolloutController, ExperimentController,
                                                                   FakeTriton]:
    """A rollout controller serving reranker version 1, with an experiment controller."""
    (tmp_path / "rollout.json").write_text(json.dumps({"models": {"reranker": {"stable": "1"}}}))
    experiments = ExperimentController(tmp_path / "experiments.json", **({"clock": clock} if clock else {})).open()
    triton = FakeTriton()
    settings = Settings(model_repository=repository, rollout_state=tmp_path / "rollout.json", rollout_min_requests=5)
    loader = VersionLoader(triton, repository, load_timeout_s=1.0)  # type: ignore[arg-type]
    rollout = RolloutController(loader, settings, experiments=experiments)
    await rollout.open()
    return rollout, experiments, triton


async def close_all(rollout: RolloutController, experiments: ExperimentController) -> None:
    await rollout.settled()
    await rollout.close()
    await experiments.close()


def lose(experiments: ExperimentController, queries: int, offset: int = 0) -> None:
    """Queries of the running experiment whose one click fell on the control's product."""
    for number in range(offset, offset + queries):
        assignment = experiments.assign("", f"q{number}")
        assert assignment is not None
        experiments.served(f"q{number}", assignment, PRODUCTS, TEAMS)
        experiments.join(f"q{number}", "p1", "click", 1)


def test_an_interleaved_rollout_runs_a_guard_experiment_of_stable_against_candidate(repository, tmp_path):
    async def scenario():
        rollout, experiments, triton = await open_rollout(repository, tmp_path, Clock(1234.5))
        model = await rollout.start("reranker", "2", 40, mode="interleave")
        running = experiments.running
        share = running.share
        status = rollout.status("reranker")[0]
        assert rollout.route("reranker", "anyone").version == "1"  # each arm names its version, not the route
        await rollout.shift("reranker", 70)
        shifted = experiments.get(model.experiment).share
        await close_all(rollout, experiments)
        return model, running, share, status, shifted, triton

    model, running, share, status, shifted, triton = asyncio.run(scenario())
    assert model.experiment == "rollout-reranker-2-1234" and running.name == model.experiment
    assert running.running and running.guard and running.method == "interleave" and share == 0.4
    assert (running.control, running.treatment) == ("reranker=1", "reranker=2")
    assert status["mode"] == "interleave" and status["candidate"] == "2"
    assert status["quality"]["name"] == model.experiment and status["quality"]["decision"] == UNDECIDED
    assert shifted == 0.7
    assert triton.loaded["reranker"] == {"1", "2"}
    assert json.loads((tmp_path / "rollout.json").read_text())["models"]["reranker"]["experiment"] == model.experiment


def test_the_quality_guard_rolls_back_a_candidate_shoppers_like_less(repository, tmp_path):
    async def scenario():
        rollout, experiments, triton = await open_rollout(repository, tmp_path)
        name = (await rollout.start("reranker", "2", 100, mode="interleave")).experiment
        lose(experiments, 5)
        early = rollout.tripped("reranker")  # five losses are within the noise
        lose(experiments, 25, offset=5)
        reason = rollout.tripped("reranker")
        await rollout.check_guards()
        await close_all(rollout, experiments)
        return rollout, experiments, triton, name, early, reason

    rollout, experiments, triton, name, early, reason = asyncio.run(scenario())
    assert early == ""
    assert reason.startswith("quality:") and "won 0 and lost 30" in reason and name in reason
    model = rollout.models["reranker"]
    assert model.candidate == "" and model.experiment == "" and model.stable == "1"
    assert model.history[-2]["action"] == "rollback" and model.history[-2]["detail"] == f"guard: {reason}"
    assert model.history[-1]["action"] == "unload" and triton.loaded["reranker"] == {"1"}
    stopped = experiments.get(name)
    assert not stopped.running and stopped.decision().outcome == WORSE and experiments.running is None
    assert experiments.assign("", "after") is None
    assert rollout.status("reranker")[0]["quality"] is None


def test_a_candidate_shoppers_prefer_is_not_rolled_back_and_promotion_stops_its_experiment(repository, tmp_path):
    async def scenario():
        rollout, experiments, _ = await open_rollout(repository, tmp_path)
        name = (await rollout.start("reranker", "2", 100, mode="interleave")).experiment
        for number in range(40):
            assignment = experiments.assign("", f"q{number}")
            experiments.served(f"q{number}", assignment, PRODUCTS, TEAMS)
            experiments.join(f"q{number}", "p2", "click", 2)
        decision = experiments.get(name).decision().outcome
        reason = rollout.tripped("reranker")
        await rollout.check_guards()
        candidate = rollout.models["reranker"].candidate
        await rollout.promote("reranker")
        await close_all(rollout, experiments)
        return rollout, experiments, name, decision, reason, candidate

    rollout, experiments, name, decision, reason, candidate = asyncio.run(scenario())
    assert decision == BETTER and reason == "" and candidate == "2"
    assert rollout.models["reranker"].stable == "2" and not experiments.get(name).running


def test_a_shifted_share_reaches_the_experiment_state_file(repository, tmp_path, monkeypatch):
    monkeypatch.setattr(controller_module, "SAVE_EVERY_S", 0.01)

    async def scenario():
        rollout, experiments, _ = await open_rollout(repository, tmp_path)
        await rollout.start("reranker", "2", 40, mode="interleave")
        await rollout.shift("reranker", 70)
        await asyncio.sleep(0.2)  # twenty background saves
        saved = json.loads((tmp_path / "experiments.json").read_text())["experiments"][0]["share"]
        await close_all(rollout, experiments)
        return saved

    assert asyncio.run(scenario()) == 0.7


def test_an_interleaved_rollout_is_refused_while_another_experiment_runs(repository, tmp_path):
    async def scenario():
        rollout, experiments, triton = await open_rollout(repository, tmp_path)
        experiments.start("by-hand", "default", "fused", "interleave", 0.5)
        loads = list(triton.loads)
        with pytest.raises(RolloutError, match="experiment 'by-hand' is running"):
            await rollout.start("reranker", "2", 50, mode="interleave")
        await close_all(rollout, experiments)
        return rollout, experiments, triton, loads

    rollout, experiments, triton, loads = asyncio.run(scenario())
    assert triton.loads == loads  # refused before the candidate was loaded
    assert rollout.models["reranker"].candidate == "" and list(experiments.experiments) == ["by-hand"]
    assert experiments.running.name == "by-hand"


def test_an_interleaved_rollout_needs_an_experiment_controller(repository, tmp_path):
    async def scenario():
        (tmp_path / "rollout.json").write_text(json.dumps({"models": {"reranker": {"stable": "1"}}}))
        settings = Settings(model_repository=repository, rollout_state=tmp_path / "rollout.json")
        loader = VersionLoader(FakeTriton(), repository, load_timeout_s=1.0)  # type: ignore[arg-type]
        rollout = RolloutController(loader, settings)
        await rollout.open()
        try:
            with pytest.raises(RolloutError, match="needs the experiment controller"):
                await rollout.start("reranker", "2", 50, mode="interleave")
        finally:
            await rollout.close()

    asyncio.run(scenario())
