"""orchestrator.rollout.guards and .state: rank-biased overlap, sliding windows, the persisted state file."""

from __future__ import annotations

import json
import math

import pytest

from core.errors import ConfigError
from orchestrator.rollout.guards import AgreementWindow, SlidingWindow, rank_biased_overlap
from orchestrator.rollout.state import ModelRollout, StateFile


def test_rbo_is_one_for_identical_rankings_and_zero_for_disjoint_ones():
    assert rank_biased_overlap([1, 2, 3, 4], [1, 2, 3, 4]) == pytest.approx(1.0)
    assert rank_biased_overlap([1, 2, 3], [4, 5, 6]) == 0.0
    assert rank_biased_overlap([], []) == 1.0


def test_rbo_weighs_the_top_most():
    top_swapped = rank_biased_overlap([2, 1, 3, 4, 5], [1, 2, 3, 4, 5])
    bottom_swapped = rank_biased_overlap([1, 2, 3, 5, 4], [1, 2, 3, 4, 5])
    assert 0.0 < top_swapped < bottom_swapped < 1.0
    # Same set, different order: the extrapolation credits the full overlap at the cut.
    assert rank_biased_overlap([3, 2, 1], [1, 2, 3]) > rank_biased_overlap([3, 2, 9], [1, 2, 3])


def test_rbo_by_hand():
    # p = 0.5, depth 2: overlaps X1 = 0, X2 = 2 -> (1-p) * (0/1 + p * 2/2) + p^2 * 2/2 = 0.25 + 0.25
    assert rank_biased_overlap(["a", "b"], ["b", "a"], p=0.5) == pytest.approx(0.5)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_sliding_window_forgets_what_is_older_than_its_span():
    clock = Clock()
    window = SlidingWindow(10.0, clock=clock)
    assert math.isnan(window.stats().p99_ms) and window.stats().requests == 0
    for latency in range(1, 101):
        window.add(ok=latency % 10 != 0, latency_ms=float(latency))
    stats = window.stats()
    assert (stats.requests, stats.errors, stats.p99_ms) == (100, 10, 99.0)
    assert stats.error_rate == pytest.approx(0.1)
    clock.now = 5.0
    window.add(ok=True, latency_ms=500.0)
    clock.now = 10.5
    assert window.stats().requests == 1 and window.stats().p99_ms == 500.0


def test_agreement_window_means_the_recent_values_and_counts_skips():
    clock = Clock()
    window = AgreementWindow(10.0, clock=clock)
    assert window.mean()[1] == 0
    window.add(0.2)
    clock.now = 20.0
    window.add(0.8)
    window.add(0.6)
    assert window.mean() == (pytest.approx(0.7), 2)


def test_state_file_round_trips_and_replaces_atomically(tmp_path):
    state = StateFile(tmp_path / "state" / "rollout.json")
    assert state.load() == {}
    rollout = ModelRollout(stable="1", candidate="2", mode="canary", percent=10)
    rollout.record("start", "2", "canary 10%")
    state.save({"reranker": rollout})
    loaded = state.load()["reranker"]
    assert (loaded.stable, loaded.candidate, loaded.mode, loaded.percent) == ("1", "2", "canary", 10)
    assert loaded.history[0]["action"] == "start"
    assert not list((tmp_path / "state").glob("*.partial"))


@pytest.mark.parametrize("content", ["{not json", json.dumps({"models": {"reranker": {"stable": "1", "bogus": 1}}}),
                                     json.dumps({"models": {"reranker": {"stable": "1", "candidate": "2", "mode": "x"}}})])
def test_a_broken_state_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "rollout.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="fix or remove it"):
        StateFile(path).load()
